"""The deployment's one view of Graph's budgets, shared by every task process, worker and triggerer.

Airflow runs each task in a process of its own, on one machine or many, and each triggerer is a
process too: what one of them learns of a budget (a usage header, an 80008, a regain time) is
written here and read by the others before they call. Two kinds of record, per budget (an app's,
or a WABA's under that app):

- the latest **reading**: percent used, when access is regained (in Graph's clock when its answer
  had a ``Date``, else the writer's, and which one), when and by whom it was seen;
- a short **lease**: near the end of a budget, the one process allowed to send its next call, so
  that many processes starting at once never all send into the last few calls Graph allows;
- the **waiting**: calls that waited for the budget to be regained (a task deferred to the
  triggerer, say), each under its waiter's name and until when it holds its place. The others
  leave that much of the regained budget to them: a task that comes back from the triggerer a
  moment after the reset would otherwise find the budget spent again by a process that never left.

Backends: :class:`VariableBudgets` (Airflow Variables, which every task and trigger reaches on
every supported Airflow, through the Task SDK on Airflow 3), :class:`RedisBudgets` (for large
Celery deployments, with atomic leases) and :class:`ProcessBudgets` (nothing shared: the
process's own store only, and the default until the shared ones are proven in deployments). A
backend that cannot be reached degrades to the process's own view with a warning, never a failed
call. No Airflow context here beyond the Variable accessor the Variables backend is given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from airflow_provider_whatsapp.hooks.waiters import Place, encode_places, parse_places, turn_of

log = logging.getLogger(__name__)

#: Variables holding budgets start with this, then a hash of the connection and the budget.
VARIABLE_PREFIX = "whatsapp_budget"
#: A reading written further in the future than this (clock skew, a broken writer) is ignored.
FUTURE_TOLERANCE = 30.0
#: A reading older than this says nothing about a budget any more (Graph's windows are an hour).
MAX_READING_AGE = 3600.0
# Warnings about an unreachable store are repeated at most this often.
WARN_EVERY = 60.0
#: Times a waiter takes or gives up its place, each read back a moment later (a rival's write may undo it).
PLACE_TRIES = 6
#: The moment: twice the place's own read and write, within these bounds (seconds).
PLACE_SETTLE_MIN, PLACE_SETTLE_MAX = 0.05, 1.0
# Clocks of a deployment's machines may differ this much (a lease renewed closer to its end).
CLOCK_MARGIN = 0.5
#: A store that failed is not asked again for this long (each call goes on from its process's view).
RETRY_AFTER = 10.0

#: This process, as leases and readings name their holder and writer.
PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SharedReading(NamedTuple):
    """
    A budget's latest reading as the deployment shares it; times are ``time.time()`` seconds.

    :param percent: percent of the budget used.
    :param regain_at: when access is regained (0: not announced), in the clock of ``clock``.
    :param observed_at: when the answer carrying the reading arrived, in the writer's clock.
    :param clock: ``graph`` when ``regain_at`` is Graph's own time (its answer's ``Date``), so
        that a reader on another machine needs no clock of the writer's; ``writer`` otherwise.
    :param per_call: percent of the budget one call costs, as the writer estimated it.
    :param writer: the process that wrote it.
    :param graph_offset: the writer's clock minus Graph's, as it measured it (0: not known), for a
        reader that has not measured its own yet.
    """

    percent: float
    regain_at: float
    observed_at: float
    clock: str
    per_call: float
    writer: str
    graph_offset: float = 0.0

    def to_json(self) -> str:
        return json.dumps(self._asdict(), separators=(",", ":"))


def parse_reading(raw: Any, now: float) -> SharedReading | None:
    """A stored reading, checked; ``None`` for anything corrupt, from the future, or too old to matter."""
    try:
        data = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        if not isinstance(data, Mapping):
            return None
        values = [float(data[name]) for name in ("percent", "regain_at", "observed_at", "per_call")]
        values.append(float(data.get("graph_offset", 0.0)))
        clock, writer = str(data["clock"]), str(data["writer"])
    except (KeyError, TypeError, ValueError, RecursionError, AttributeError):
        return None
    percent, regain_at, observed_at, per_call, graph_offset = values
    if not all(math.isfinite(value) for value in values) or clock not in ("graph", "writer"):
        return None
    if not 0 <= percent <= 1000 or not 0 <= per_call <= 100 or regain_at < 0:
        return None
    if observed_at > now + FUTURE_TOLERANCE or now - observed_at > MAX_READING_AGE:
        return None
    if abs(graph_offset) > MAX_READING_AGE * 24:
        graph_offset = 0.0
    return SharedReading(percent, regain_at, observed_at, clock, per_call, writer, graph_offset)


def budget_name(host: str, app: str, waba_id: str | None) -> str:
    """The store's name of a budget: the app's (host and token fingerprint) hashed, and the WABA, or ``app``.

    Two connections with the same token and different hosts are different apps' budgets, and two
    with one token on one host the same; the hash keeps the host out of the Variable's key.
    """
    connection = hashlib.sha256(f"{host}\n{app}".encode()).hexdigest()[:16]
    return f"{VARIABLE_PREFIX}.{connection}.{waba_id or 'app'}"


class SharedBudgets(Protocol):
    """A deployment-wide view of budgets, by :func:`budget_name`."""

    #: Entries read that were ignored (corrupt, from the future, too old), by reason.
    ignored: Counter[str]
    #: What the store is, for log lines.
    description: str

    def read(self, name: str) -> SharedReading | None: ...

    def write(self, name: str, reading: SharedReading) -> None: ...

    def claim(self, name: str, seconds: float) -> bool:
        """Whether this process may send its next call on the budget (a lease of ``seconds``)."""
        ...

    def release(self, name: str) -> None: ...

    def waiting(self, name: str) -> dict[str, int]:
        """The calls waiting for the budget, by waiter (places not run out), first come first."""
        ...

    def reserve(self, name: str, waiter: str, calls: int, seconds: float) -> None:
        """Hold ``calls`` of the budget for ``waiter`` for ``seconds`` (replacing its earlier place)."""
        ...

    def unreserve(self, name: str, waiter: str) -> None: ...


class _Guarded:
    """What every backend shares: a store that cannot be reached is the process's own view, with a warning."""

    description = "budgets"

    def __init__(self) -> None:
        self.ignored: Counter[str] = Counter()
        self.failures = 0
        self._warned_at = -math.inf
        self._down_until = -math.inf
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        """Whether the store failed a moment ago: it is not asked again until ``RETRY_AFTER`` passed."""
        return time.monotonic() < self._down_until

    def _unreachable(self, what: str, error: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        # Not asked again for a while: each call would otherwise wait for the same failure.
        self._down_until = now + RETRY_AFTER
        with self._lock:
            if now - self._warned_at < WARN_EVERY:
                return
            self._warned_at = now
        log.warning(
            "The shared %s could not be %s (%s: %s); pacing goes on from this process's own readings",
            self.description,
            what,
            type(error).__name__,
            error,
        )

    def read(self, name: str) -> SharedReading | None:
        """The latest reading shared of a budget; ``None`` when there is none, it cannot be used,
        or the store cannot be reached."""
        if self.down:
            return None
        try:
            raw = self._get(name)
        except Exception as error:  # each store's own connection and timeout errors
            self._unreachable("read", error)
            return None
        if raw is None:
            return None
        reading = parse_reading(raw, time.time())
        if reading is None:
            self.ignored["unreadable, from the future or too old"] += 1
        return reading

    def write(self, name: str, reading: SharedReading) -> None:
        """Share a budget's reading (nothing, when the store cannot be reached)."""
        if self.down:
            return
        try:
            self._set(name, reading.to_json())
        except Exception as error:
            self._unreachable("written", error)

    def waiting(self, name: str) -> dict[str, int]:
        if self.down:
            return {}
        try:
            places = self._places(name, time.time())
        except Exception as error:
            self._unreachable("read", error)
            return {}
        # In the order the places were taken: the first waiter is served first.
        queue = sorted(places.items(), key=lambda item: (item[1][2], item[0]))
        return {waiter: calls for waiter, (calls, _, _) in queue}

    def reserve(self, name: str, waiter: str, calls: int, seconds: float) -> None:
        self._change_places(name, waiter, (calls, seconds))

    def unreserve(self, name: str, waiter: str) -> None:
        self._change_places(name, waiter, None)

    def _change_places(self, name: str, waiter: str, place: tuple[int, float] | None) -> None:
        # Read, changed, written back. Another waiter's read-modify-write at the same moment may
        # undo this one's: the change is read back once the others' writes have landed, and made
        # again when it was undone (a lost place costs its waiter its turn for a window; a place
        # given up that came back holds the others back for a waiter gone until it runs out).
        if self.down:
            return
        try:
            for _ in range(PLACE_TRIES):
                began, now = time.monotonic(), time.time()
                places = self._places(name, now)
                if place is None and waiter not in places:
                    return
                if place is None:
                    places.pop(waiter)
                else:
                    # Its turn, one on all its budgets (see hooks/waiters.py).
                    calls, seconds = place
                    places[waiter] = (calls, now + seconds, turn_of(waiter, places.get(waiter, (0, 0, now))[2]))
                self._set(f"{name}.waiting", encode_places(places))
                # A rival's read-modify-write takes about as long as this one did.
                self._pause(settle := min(PLACE_SETTLE_MAX, max(PLACE_SETTLE_MIN, 2 * (time.monotonic() - began))))
                if (waiter in self._places(name, time.time())) == (place is not None):
                    return
                # Undone: tried again a random moment later, so that the rivals' tries spread out.
                self._pause(random.uniform(0.0, settle))
        except Exception as error:
            self._unreachable("written", error)

    def _places(self, name: str, now: float) -> dict[str, Place]:
        """The places that have not run out: calls, until when, and since when (the turn)."""
        return parse_places(self._get(f"{name}.waiting"), now, MAX_READING_AGE, self.ignored)

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def _get(self, name: str) -> Any:
        raise NotImplementedError

    def _set(self, name: str, text: str) -> None:
        raise NotImplementedError


class ProcessBudgets(_Guarded):
    """Nothing shared: every process paces from its own readings only."""

    description = "budgets (none)"

    def _get(self, name: str) -> Any:
        return None

    def _set(self, name: str, text: str) -> None:
        return None

    def claim(self, name: str, seconds: float) -> bool:
        return True

    def release(self, name: str) -> None:
        return None


class VariableAccess(Protocol):
    """Airflow's ``Variable`` (``get`` with a default, ``set``), as common-compat gives it."""

    def get(self, key: str, default: Any, /) -> Any: ...

    def set(self, key: str, value: Any) -> Any: ...


class VariableBudgets(_Guarded):
    """
    Budgets in Airflow Variables: reachable from every task and trigger, on every supported Airflow.

    Variables have no compare-and-set, so a lease is taken as in Fischer's mutual exclusion: read
    free, written within ``slowest_write`` seconds of the read (a slower claim gives up; what it
    wrote runs out by itself), read back ``settle`` seconds later: a rival that read it free
    before this write landed wrote its own before this read back, so two overlapping claims never
    both read their own name. A holder renews its lease while it is held: nobody reads it free.

    :param variables: Airflow's ``Variable`` (or anything with its ``get`` and ``set``).
    :param slowest_write: seconds a claim's read and write may take together; a slower claim fails.
    :param settle: seconds between writing a lease and reading it back (longer than
        ``slowest_write``; by default a quarter longer).
    :param sleep: waits ``settle``, and before a waiter's place is read back (tests pass their own).
    :param holder: who this process is, as leases name their holder.
    """

    description = "budgets in Airflow Variables"

    def __init__(
        self,
        variables: VariableAccess,
        slowest_write: float = 1.0,
        settle: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        holder: str = PROCESS_ID,
    ) -> None:
        super().__init__()
        self.variables = variables
        self.slowest_write = slowest_write
        self.settle = slowest_write * 1.25 if settle is None else settle
        if self.settle <= slowest_write:
            raise ValueError(f"settle ({self.settle}) must be longer than slowest_write ({slowest_write})")
        self.sleep = sleep
        self.holder = holder

    def _get(self, name: str) -> Any:
        return self.variables.get(name, None)

    def _set(self, name: str, text: str) -> None:
        self.variables.set(name, text)

    def _pause(self, seconds: float) -> None:
        self.sleep(seconds)

    def claim(self, name: str, seconds: float) -> bool:
        if self.down:
            return True
        lease = f"{name}.lease"
        try:
            asked = time.monotonic()
            holder, until = _lease_of(self.variables.get(lease, None), time.time())
            if holder not in (None, self.holder):
                return False
            self.variables.set(lease, json.dumps({"holder": self.holder, "until": time.time() + seconds}))
            if holder == self.holder:
                # Renewed: held all along, as long as the write landed before the lease ran out.
                return time.time() < until - CLOCK_MARGIN
            if time.monotonic() - asked > self.slowest_write:
                # A rival may have read it free, and written, after the read back below.
                return False
            self.sleep(self.settle)
            return _lease_of(self.variables.get(lease, None), time.time())[0] == self.holder
        except Exception as error:
            self._unreachable("asked for a lease", error)
            return True

    def release(self, name: str) -> None:
        if self.down:
            return
        lease = f"{name}.lease"
        try:
            if _lease_of(self.variables.get(lease, None), time.time())[0] == self.holder:
                self.variables.set(lease, json.dumps({"holder": self.holder, "until": 0}))
        except Exception as error:
            self._unreachable("handed a lease back", error)


class RedisBudgets(_Guarded):
    """
    Budgets in Redis, which a Celery deployment already runs for its broker: one round trip a
    read or a write, and a lease that is one atomic ``SET NX PX``.

    :param url: the Redis URL (``redis://host:port/db``); needs the ``redis`` package.
    :param timeout: seconds for each command.
    :param holder: who this process is, as leases name their holder.
    """

    description = "budgets in Redis"

    def __init__(self, url: str, timeout: float = 1.0, holder: str = PROCESS_ID) -> None:
        super().__init__()
        import redis

        self.holder = holder
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url=<hidden>)"

    def _get(self, name: str) -> Any:
        return self.client.get(name)

    def _set(self, name: str, text: str) -> None:
        self.client.set(name, text, ex=int(MAX_READING_AGE))

    def claim(self, name: str, seconds: float) -> bool:
        if self.down:
            return True
        try:
            lease = f"{name}.lease"
            milliseconds = max(1, int(seconds * 1000))
            if self.client.set(lease, self.holder, nx=True, px=milliseconds):
                return True
            # Held already: by this process, it is renewed (in one step, so that a lease that
            # lapsed and was taken by another in between is not renewed for it).
            return bool(self.client.eval(_RENEW_OWN_LEASE, 1, lease, self.holder, milliseconds))
        except Exception as error:
            self._unreachable("asked for a lease", error)
            return True

    def release(self, name: str) -> None:
        if self.down:
            return
        try:
            lease = f"{name}.lease"
            if self.client.get(lease) == self.holder.encode():
                self.client.delete(lease)
        except Exception as error:
            self._unreachable("handed a lease back", error)


_RENEW_OWN_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def _lease_of(raw: Any, now: float) -> tuple[str | None, float]:
    """A stored lease's holder and until when, while it has not run out; ``(None, 0)`` otherwise."""
    try:
        data = json.loads(raw) if isinstance(raw, (str, bytes)) else None
        if isinstance(data, Mapping) and (until := float(data["until"])) > now:
            return str(data["holder"]), until
    except (KeyError, TypeError, ValueError, RecursionError):
        pass
    return None, 0.0
