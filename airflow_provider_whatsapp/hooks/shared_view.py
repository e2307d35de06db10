"""How each call takes part in the deployment's shared view of its budgets.

Before a call, the readings other processes shared of its budgets are read (before every call
near a budget's end, at most once per ``refresh`` seconds before) and merged into the process's
store when newer than its own; near the end of a budget, the call waits for the budget's lease, so
that one process sends at a time. The lease is the process's, not the call's: every call of the
process goes under it until it runs out (renewed while its calls go on), so the store is asked
for it a few times a minute, not several times a call. After a call, a reading worth telling
(spent; near the end, at most every two seconds; past three quarters, when it moved on; back in a
new window) is written for the others; a spent budget's lease, or one no longer near its end, is
handed back.
A call that waits for a spent budget takes a place among its waiters, under a name that outlives
the task process (an operator deferred to the triggerer comes back as another process); the
others leave that many calls of the regained budget to the waiters until they come back or their
place runs out.
The exchange core yields these as :class:`Share` steps, and each hook's driver carries them out
against the backend (:mod:`~airflow_provider_whatsapp.hooks.budgets`): no I/O here.

Clocks: a regain time is shared as an absolute time in Graph's own clock (its answer's ``Date``)
when there is one, so a reader on another machine converts it with its own offset to Graph's
clock, measured from its own answers; otherwise in the writer's clock.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Generator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from airflow_provider_whatsapp.hooks.budgets import PROCESS_ID, SharedBudgets, SharedReading, budget_name
from airflow_provider_whatsapp.hooks.usage import BudgetKey, ConnectionKey, UsageReading, UsageStore
from airflow_provider_whatsapp.hooks.waiters import turn_of

#: Calls of a budget near its end that a waiter's call sent without the lease leaves to the calls
#: under it (a reading shared by a call sent at the same moment may miss this one).
UNLEASED_MARGIN_CALLS = 4

#: A reading at or past this percent is shared with the others (and below it, a change of window).
SHARE_FROM_PERCENT = 75.0
#: ...again once it moved this many points on, or once per refresh.
SHARE_STEP = 5.0
#: So many calls could be sent at once across a deployment; a budget with fewer than this left
#: (by its per-call cost) is sent into one call at a time, under its lease.
LEASE_HEADROOM_CALLS = 16
#: How long a process holds a budget's lease once it has it; a process that stops calling (or
#: dies) holds the others back no longer than this.
LEASE_SECONDS = 10.0
# Renewed this long before it runs out, so that a call never goes out under a lease that lapses
# and a store without compare-and-set renews it before anyone may read it free.
LEASE_RENEW_BEFORE = 3.0
# Graph's Date header has whole seconds, and clocks drift: a shared regain time is waited this
# much longer.
REGAIN_MARGIN = 1.0
#: How long a waiter's place outlasts the wait it was taken for: time enough for a deferred task
#: to come back from the triggerer, short enough that a waiter that never does holds little back.
WAITING_GRACE = 20.0
# Near a budget's end, its waiting list is read at most this often (or each ``refresh``, if shorter).
WAITING_REFRESH = 0.5
# A step against the store slower than this is logged: it holds the call back without a word
# otherwise (a lease's claim waits its settle on top).
SLOW_SHARE = 2.0

log = logging.getLogger(__name__)
_OFFSET_SAMPLES = 16


class Share(NamedTuple):
    """
    A step against the shared budgets; the driver sends back what the backend answered.

    :param op: ``read`` (answered with a :class:`.SharedReading` or ``None``), ``claim`` (answered
        ``True`` when this process holds the lease), ``waiting`` (answered with the calls waiting,
        by waiter), ``write``, ``release``, ``reserve`` or ``unreserve`` (answered ``None``).
    :param name: the budget's name (:func:`~airflow_provider_whatsapp.hooks.budgets.budget_name`).
    :param reading: what ``write`` writes.
    :param seconds: how long a ``claim``'s lease, or a ``reserve``'s place, lasts.
    :param waiter: whose place ``reserve`` takes or ``unreserve`` gives up.
    """

    op: str
    name: str
    reading: SharedReading | None = None
    seconds: float = 0.0
    waiter: str = ""


def run_share(backend: SharedBudgets, share: Share) -> Any:
    """Carry out one :class:`Share` step against a backend (the drivers call this); a slow one is logged."""
    started = time.monotonic()
    try:
        return _carry_out(backend, share)
    finally:
        took = time.monotonic() - started
        if took >= SLOW_SHARE:
            log.info("The shared %s took %.1fs to %s %s", backend.description, took, share.op, share.name)


def _carry_out(backend: SharedBudgets, share: Share) -> Any:
    if share.op == "read":
        return backend.read(share.name)
    if share.op == "claim":
        return backend.claim(share.name, share.seconds)
    if share.op == "waiting":
        return backend.waiting(share.name)
    if share.op == "reserve":
        backend.reserve(share.name, share.waiter, 1, share.seconds)
        return None
    if share.op == "unreserve":
        backend.unreserve(share.name, share.waiter)
        return None
    if share.op == "write":
        assert share.reading is not None
        backend.write(share.name, share.reading)
        return None
    backend.release(share.name)
    return None


def graph_time_of(headers: Mapping[str, str]) -> float | None:
    """Graph's own time of an answer (its ``Date`` header), or ``None``."""
    raw = headers.get("Date")
    if not raw:
        return None
    try:
        return parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class SharedView:
    """
    A process's part in the deployment's shared budgets, for one backend.

    :param backend: where the deployment's budgets are kept.
    :param refresh: seconds between two reads of a budget not near its end.
    :param lease_seconds: how long this process holds a lease once it has it (renewed while its
        calls go on).
    """

    def __init__(self, backend: SharedBudgets, refresh: float = 1.0, lease_seconds: float = LEASE_SECONDS) -> None:
        self.backend = backend
        # Who this process is to the others (a test gives two views in one process two names).
        self.process_id: str = getattr(backend, "holder", PROCESS_ID)
        self.refresh = refresh
        self.lease_seconds = lease_seconds
        self._read_at: dict[BudgetKey, float] = {}
        self._written: dict[BudgetKey, tuple[float, float]] = {}
        # The least a call costs of each budget as the store last told it, or this process did.
        self._per_call_shared: dict[BudgetKey, float] = {}
        self._merged: dict[BudgetKey, tuple[str, float]] = {}
        # The leases this process holds: until when (monotonic).
        self._holding: dict[BudgetKey, float] = {}
        self._offsets: deque[float] = deque(maxlen=_OFFSET_SAMPLES)
        # The calls waiting for each budget near its end, by waiter, and when that was read.
        self._waiting: dict[BudgetKey, dict[str, int]] = {}
        self._waiting_read_at: dict[BudgetKey, float] = {}
        # Leases just taken over from another process, whose budgets are read before a call.
        self._taken_over: set[BudgetKey] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.backend).__name__})"

    @staticmethod
    def name_of(key: BudgetKey) -> str:
        connection, waba = (key, None) if isinstance(key, ConnectionKey) else key
        return budget_name(connection.host, connection.app, waba)

    def pull(self, store: UsageStore, budgets: tuple[BudgetKey, ...]) -> Generator[Share, Any, None]:
        """Read what the others shared of the budgets due, and merge it into the store.

        A budget near its end (see :meth:`leases_needed`) is read before every call; any other at
        most once per ``refresh`` seconds; none whose lease this process holds, since under it no
        other process sends on that budget, but once right after taking the lease over.
        """
        now = time.monotonic()
        near_end = set(self.leases_needed(store, budgets))
        for key in budgets:
            taken_over = key in self._taken_over
            self._taken_over.discard(key)
            if self.holds(key, now) and not taken_over:
                # Under this process's own lease nobody else sends: there is no news to read.
                continue
            if key not in near_end and not taken_over and now - self._read_at.get(key, -1e9) < self.refresh:
                continue
            self._read_at[key] = now
            shared = yield Share("read", self.name_of(key))
            if not isinstance(shared, SharedReading) or shared.writer == self.process_id:
                continue
            # The same entry read again is no news (converting it again would make it look newer).
            seen = (shared.writer, shared.observed_at)
            if self._merged.get(key) != seen:
                self._merged[key] = seen
                self._per_call_shared[key] = min(self._per_call_shared.get(key, 100.0), shared.per_call)
                store.merge_reading(key, self._local(shared), shared.per_call)
        # After the readings: a process's first call learns from them that a budget is near its end.
        for key in self.leases_needed(store, budgets):
            if now - self._waiting_read_at.get(key, -1e9) >= min(self.refresh, WAITING_REFRESH):
                # Read under this process's own lease too: its waiters are the others' calls.
                self._waiting_read_at[key] = now
                waiting = yield Share("waiting", self.name_of(key))
                self._waiting[key] = dict(waiting) if isinstance(waiting, Mapping) else {}

    def waiting_for(self, key: BudgetKey, waiter: str | None) -> int:
        """The calls of a budget that go to waiters before ``waiter``'s, as last read: every
        waiter's for a call that holds no place, those ahead in the queue for one that does.

        Read only near the budget's end, so a count may be stale away from it, where the calls
        left outnumber it. Waiters never hold each other back: each waits only for those ahead.
        """
        # By turn, not by place: a waiter whose place on this budget was lost is still behind
        # the waiters before its turn only, as on its other budgets.
        own = turn_of(waiter, math.inf) if waiter else math.inf
        ahead = 0
        for name, calls in self._waiting.get(key, {}).items():
            if name == waiter or turn_of(name, -math.inf) >= own:
                break
            ahead += calls
        return ahead

    def leaves_waiters_room(self, store: UsageStore, budgets: tuple[BudgetKey, ...], waiter: str | None) -> bool:
        """Whether a call leaves the budgets' waiters (other calls that waited for them) their calls."""
        for key in budgets:
            waiting = self.waiting_for(key, waiter)
            reading, left = store.reading_of(key), store.calls_left(key)
            # A spent budget's regain wait held the call back already; its answer tells the new window.
            if waiting and reading is not None and reading.percent < 100 and left is not None and left - waiting < 1:
                return False
        return True

    def goes_unleased(self, store: UsageStore, keys: tuple[BudgetKey, ...], waiter: str) -> bool:
        """Whether a waiter's call may go out without the leases of ``keys``, budgets near their end.

        Only for a waiter whose place the others have counted (the caller knows it took it a while
        ago): they leave its call to it, so the lease, which serialises the deployment's calls one
        handoff at a time, guards nothing the count does not. It goes when its budgets, less the
        calls of the waiters ahead of it and a margin, still take it; a spent budget whose regain
        passed (its pacing let the call through) takes a whole window.
        """
        for key in keys:
            reading, left = store.reading_of(key), store.calls_left(key)
            if waiter not in self._waiting.get(key, {}) or reading is None or left is None:
                return False
            if reading.percent >= 100:
                left += reading.percent / max(store.per_call(key), 0.01)
            if left - self.waiting_for(key, waiter) - UNLEASED_MARGIN_CALLS < 1:
                return False
        return True

    def reserve(self, keys: tuple[BudgetKey, ...], waiter: str, seconds: float) -> Generator[Share, Any, None]:
        """Take a place among the budgets' waiters for one call, for ``seconds`` and then some."""
        for key in keys:
            yield Share("reserve", self.name_of(key), seconds=seconds + WAITING_GRACE, waiter=waiter)

    def unreserve(self, keys: tuple[BudgetKey, ...], waiter: str) -> Generator[Share, Any, None]:
        """Give the place up: the call it was held for goes out now."""
        for key in keys:
            yield Share("unreserve", self.name_of(key), waiter=waiter)
            places = self._waiting.get(key)
            if places is not None:
                places.pop(waiter, None)

    def leases_needed(self, store: UsageStore, budgets: tuple[BudgetKey, ...]) -> tuple[BudgetKey, ...]:
        """The budgets so near their end that this call must hold their lease to be sent."""
        needed = []
        for key in budgets:
            reading = store.reading_of(key)
            if reading is None:
                continue
            left = (100.0 - reading.percent) / max(store.per_call(key), 0.01)
            if left < LEASE_HEADROOM_CALLS:
                needed.append(key)
        return tuple(needed)

    def holds(self, key: BudgetKey, now: float | None = None) -> bool:
        """Whether this process holds the budget's lease, for long enough to send a call under it."""
        until = self._holding.get(key)
        return until is not None and until - (time.monotonic() if now is None else now) > LEASE_RENEW_BEFORE

    def claim(self, key: BudgetKey) -> Generator[Share, Any, bool]:
        """Whether this process holds the budget's lease for its next call (asked of the store
        only when it does not hold it already, or soon will not)."""
        if self.holds(key):
            return True
        asked = time.monotonic()
        got = bool((yield Share("claim", self.name_of(key), seconds=self.lease_seconds)))
        if got and self._holding.get(key, -1e9) <= asked:
            # Taken over, not renewed: the last holder's calls since this process last read the
            # budget are in the store, not yet in this process's count.
            self._taken_over.add(key)
        if got:
            self._holding[key] = asked + self.lease_seconds
        else:
            self._holding.pop(key, None)
        return got

    def taken_over(self, keys: tuple[BudgetKey, ...]) -> bool:
        """Whether any of these leases was just taken over, and its budget not read since."""
        return any(key in self._taken_over for key in keys)

    def release_all(self) -> Generator[Share, Any, None]:
        """Hand back every lease this process holds (its work is done: nobody waits out its lease)."""
        for key in list(self._holding):
            yield from self.release(key)

    def release(self, key: BudgetKey) -> Generator[Share, Any, None]:
        """Hand the budget's lease back (when this process held it)."""
        if self._holding.pop(key, None) is not None:
            yield Share("release", self.name_of(key))

    def publish(
        self,
        store: UsageStore,
        budgets: tuple[BudgetKey, ...],
        leased: tuple[BudgetKey, ...],
        headers: Mapping[str, str] | None,
    ) -> Generator[Share, Any, None]:
        """Tell the others what this answer said of its budgets; hand back the leases of budgets
        spent (nobody sends until they are regained) or no longer near their end."""
        graph_time = graph_time_of(headers) if headers is not None else None
        if graph_time is not None:
            self._offsets.append(time.time() - graph_time)
        near_end = set(self.leases_needed(store, budgets))
        now = time.monotonic()
        for key in budgets:
            reading = store.reading_of(key)
            per_call = store.per_call(key)
            # What one call costs, once learnt, saves every process that starts later from
            # taking its first reading's whole percent for one call's cost (a budget near its end).
            learnt = per_call < self._per_call_shared.get(key, 100.0)
            if reading is None or not (learnt or self._worth_writing(key, reading, key in near_end, now)):
                continue
            self._written[key] = (reading.percent, now)
            self._per_call_shared[key] = per_call
            yield Share("write", self.name_of(key), reading=self._shared(store, key, reading, graph_time))
        for key in leased:
            reading = store.reading_of(key)
            spent = reading is not None and (reading.percent >= 100 or reading.regain_seconds > 0)
            if key not in near_end or spent:
                yield from self.release(key)

    def _worth_writing(self, key: BudgetKey, reading: UsageReading, near_end: bool, now: float) -> bool:
        """Whether the others' view of a budget would be wrong without this reading."""
        if reading.regain_seconds > 0:
            return True
        last_percent, last_at = self._written.get(key, (0.0, -1e9))
        if near_end:
            # Each of the last calls: whoever takes the lease over next starts from the count.
            return True
        if reading.percent >= SHARE_FROM_PERCENT:
            # Past three quarters: when it moved on, or at most once per refresh while it stays.
            return abs(reading.percent - last_percent) >= SHARE_STEP or now - last_at >= self.refresh
        # Back below, in a new window, after a reading past it was shared.
        return last_percent >= SHARE_FROM_PERCENT

    def _offset(self) -> float | None:
        """This process's clock minus Graph's, from its own answers (``None`` until it has seen one)."""
        return statistics.median(self._offsets) if self._offsets else None

    def _shared(
        self, store: UsageStore, key: BudgetKey, reading: UsageReading, graph_time: float | None
    ) -> SharedReading:
        now_epoch, now_mono = time.time(), time.monotonic()
        observed = now_epoch - (now_mono - reading.observed_at)
        if reading.regain_seconds > 0 and graph_time is not None:
            regain_at, clock = graph_time + reading.regain_seconds, "graph"
        elif reading.regain_seconds > 0:
            regain_at, clock = observed + reading.regain_seconds, "writer"
        else:
            regain_at, clock = 0.0, "writer"
        offset = self._offset()
        return SharedReading(
            reading.percent, regain_at, observed, clock, store.per_call(key), self.process_id, offset or 0.0
        )

    def _local(self, shared: SharedReading) -> UsageReading:
        """Another process's reading, in this process's monotonic clock."""
        now_epoch, now_mono = time.time(), time.monotonic()
        observed_at = now_mono - max(0.0, now_epoch - shared.observed_at)
        regain = 0.0
        if shared.regain_at > 0:
            shift = 0.0
            if shared.clock == "graph":
                # This process's own offset to Graph; before it has one, the writer's (its clock
                # is then taken for this one's, as with a time in the writer's clock).
                own = self._offset()
                shift = own if own is not None else shared.graph_offset
            regain_epoch = shared.regain_at + shift + REGAIN_MARGIN
            # Counted from when it was observed, as the store keeps regain times.
            regain = max(0.0, regain_epoch - shared.observed_at)
        return UsageReading(shared.percent, regain, observed_at, f"shared by {shared.writer}")
