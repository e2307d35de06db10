"""Waiters' names: a call held back for a spent budget waits under one, which holds its turn.

A waiter's turn is when its name was made (a task's hook, at its first try): the same on every
budget the waiter waits for and across the task's deferrals, so the budgets' queues never hold
two waiters in two orders (each would wait for the other).
"""

from __future__ import annotations

import time
import uuid


def waiter_name() -> str:
    """A new waiter's name, holding its turn among a budget's waiters: when it was made."""
    return f"waiter-{time.time():.3f}-{uuid.uuid4().hex[:12]}"


def turn_of(waiter: str, otherwise: float) -> float:
    """A waiter's turn, from its name (:func:`waiter_name`); ``otherwise`` for a name without one."""
    parts = waiter.split("-")
    if len(parts) == 3 and parts[1].replace(".", "", 1).isdigit():
        return float(parts[1])
    return otherwise
