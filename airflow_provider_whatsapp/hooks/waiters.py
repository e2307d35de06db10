"""Waiters' names: a call held back for a spent budget waits under one, which holds its turn.

A waiter's turn is when its name was made (a task's hook, at its first try): the same on every
budget the waiter waits for and across the task's deferrals, so the budgets' queues never hold
two waiters in two orders (each would wait for the other).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

#: The most calls one waiter may hold a place for (more is a corrupt entry).
MAX_WAITING_CALLS = 100

#: A waiter's place: calls, until when, and since when (its turn).
Place = tuple[int, float, float]


def waiter_name() -> str:
    """A new waiter's name, holding its turn among a budget's waiters: when it was made."""
    return f"waiter-{time.time():.3f}-{uuid.uuid4().hex[:12]}"


def turn_of(waiter: str, otherwise: float) -> float:
    """A waiter's turn, from its name (:func:`waiter_name`); ``otherwise`` for a name without one."""
    parts = waiter.split("-")
    if len(parts) == 3 and parts[1].replace(".", "", 1).isdigit():
        return float(parts[1])
    return otherwise


def parse_places(raw: Any, now: float, longest: float, ignored: Counter[str]) -> dict[str, Place]:
    """The places of a stored waiting list that have not run out, none held further ahead than
    ``longest`` seconds; whatever cannot be read is ignored and counted in ``ignored``."""
    if raw is None:
        return {}
    places: dict[str, Place] = {}
    try:
        data = json.loads(raw)
        entries = data.items() if isinstance(data, Mapping) else ()
    except (TypeError, ValueError, RecursionError):
        entries = ()
        ignored["unreadable waiting list"] += 1
    for waiter, value in entries:
        try:
            calls, until = int(value[0]), float(value[1])
            since = float(value[2]) if len(value) > 2 else until
        except (TypeError, ValueError, IndexError, KeyError):
            ignored["unreadable waiting list"] += 1
            continue
        # A place past its time, or held further ahead than any wait may last, holds nothing.
        if 0 < calls <= MAX_WAITING_CALLS and now < until <= now + longest and math.isfinite(since):
            places[str(waiter)] = (calls, until, since)
    return places


def encode_places(places: Mapping[str, Place]) -> str:
    """A waiting list as it is stored."""
    return json.dumps({waiter: list(place) for waiter, place in places.items()})
