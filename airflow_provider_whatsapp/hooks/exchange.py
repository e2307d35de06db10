"""One Graph call from start to end, as plain code with no HTTP client: the exchange core.

:class:`GraphExchange` decides everything about a call — how long to hold it back for the rate
limits of its WABA and app, what the answer means, which usage to record, whether and when to try
again, when to look up a POST that may already have been applied. It does no I/O: it *yields*
what it needs done (:class:`Sleep`, :class:`Send`, :class:`Reconcile`) and is sent back what
happened. The sync hook (``requests``, ``time.sleep``) and the async hook (``aiohttp``,
``asyncio.sleep``) are two small drivers of the same exchange, so they cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

import tenacity

from airflow_provider_whatsapp.exceptions import (
    APP_THROTTLE_CODE,
    GraphAPIError,
    GraphConnectionError,
    GraphResponseError,
    GraphThrottledError,
    GraphTransientError,
    is_business_throttle,
)
from airflow_provider_whatsapp.hooks.calls import numbers_in
from airflow_provider_whatsapp.hooks.graph import (
    GraphRequest,
    GraphRetryPolicy,
    parse_response,
)
from airflow_provider_whatsapp.hooks.retrying import graph_retrying, next_wait
from airflow_provider_whatsapp.hooks.shared_view import Share, SharedView
from airflow_provider_whatsapp.hooks.usage import (
    USAGE_STORE,
    BudgetKey,
    CallScope,
    ConnectionKey,
    UsageReport,
    UsageStore,
    parse_usage_headers,
)

# While other calls of the process are out on a budget with little room left, a call looks again
# after this long, then twice as long each time, up to the maximum.
ADMISSION_POLL_FIRST = 0.005
ADMISSION_POLL_MAX = 0.25
# A call held back this long for its budget takes a place among the budget's waiters.
WAITER_FROM = 2.0
# A place taken this long ago is in every other process's count (they read the list before a call).
COUNTED_AFTER = 2.0

# The steps and the response are tuples, not dataclasses: several are built on every call, and a
# frozen dataclass's ``__init__`` costs several times as much.


class Sleep(NamedTuple):
    """Wait this many seconds, then send the exchange ``None``.

    ``for_budget``: the wait is for a spent or nearly spent budget, with nothing sent that may
    have been applied: a driver may end the call here and make it again later instead (an
    operator defers to the triggerer rather than hold its worker slot, for a long wait or once
    many short ones, ``held``, add up).
    """

    seconds: float
    for_budget: bool = False
    #: How long the call has been held back for its budgets already, before this wait.
    held: float = 0.0


class Send(NamedTuple):
    """Send ``request``; send back a :class:`RawResponse`, or the :class:`.GraphConnectionError` that
    :func:`~airflow_provider_whatsapp.hooks.graph.connection_error` made of the transport's failure."""

    request: GraphRequest


class Reconcile(NamedTuple):
    """Look up whether a POST that may have been applied was; send back the result, or ``None``."""


class RawResponse(NamedTuple):
    """What the transport received."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class CallObserver(Protocol):
    """What the exchange tells of its calls, for metrics (see :mod:`~airflow_provider_whatsapp.hooks.metrics`)."""

    def sent(self, waba_id: str | None) -> None: ...

    def refused(self, waba_id: str | None, code: int | None) -> None: ...

    def waited(self, waba_id: str | None, seconds: float, kind: str) -> None: ...

    def usage(self, waba_id: str | None, percent: float) -> None: ...


class ExchangeLog(Protocol):
    """What the exchange needs of a logger (a hook's ``log``, or any ``logging.Logger``)."""

    def info(self, msg: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any, **kwargs: Any) -> Any: ...


T = TypeVar("T")

Action = Sleep | Send | Reconcile | Share
Reply = RawResponse | GraphConnectionError | dict[str, Any] | None
ExchangeSteps = Generator[Action, Reply, dict[str, Any]]


def may_have_been_applied(error: GraphAPIError) -> bool:
    """Whether a POST that failed this way may still have changed state on Graph's side."""
    if isinstance(error, GraphConnectionError):
        return error.request_sent
    if isinstance(error, GraphThrottledError):
        return False
    return isinstance(error, (GraphResponseError, GraphTransientError))


class GraphExchange:
    """
    The decisions of one Graph call, driven by a hook that sends, receives and sleeps.

    :param request: the built request.
    :param policy: retry and pacing policy.
    :param connection: whose budgets the call spends.
    :param scope: what the call is about (its WABA, its number), for per-WABA pacing.
    :param log: where retries and pacing are reported.
    :param reconciles: whether the driver can look the call's effect up (a :class:`Reconcile` step)
        before sending it again after a failure that may have been applied.
    :param accept_after_uncertain: for a POST whose effect cannot be read back: an error answered
        after a failure that may have been applied, that shows it was.
    :param numbers_of: the WABA whose phone numbers a successful answer holds (a create, a list
        page): each number's WABA is remembered, so its later calls are paced by that budget.
    :param shared: the deployment's shared view of the budgets (``None``: this process's only).
    :param observer: told of every call sent, refused and held back, and of the usage read.
    :param usage_store: the process's usage store.
    :param clock: monotonic clock, in seconds.
    :param waiter: the name under which a call held back for a spent budget takes its place among
        the budget's waiters (see :mod:`~airflow_provider_whatsapp.hooks.shared_view`); the same
        across a task's deferral. ``None``: no place is taken (the triggerer's calls never leave).
    :param holds_place: the waiter took a place before (a task back from its deferral): it is given
        up once this call goes out.
    """

    __slots__ = (
        "accept_after_uncertain",
        "clock",
        "connection",
        "holds_place",
        "log",
        "numbers_of",
        "observer",
        "policy",
        "reconciles",
        "request",
        "scope",
        "shared",
        "usage_store",
        "waiter",
    )

    def __init__(
        self,
        request: GraphRequest,
        *,
        policy: GraphRetryPolicy,
        connection: ConnectionKey,
        scope: CallScope,
        log: ExchangeLog,
        reconciles: bool = False,
        accept_after_uncertain: Callable[[GraphAPIError], bool] | None = None,
        numbers_of: str | None = None,
        shared: SharedView | None = None,
        observer: CallObserver | None = None,
        usage_store: UsageStore = USAGE_STORE,
        clock: Callable[[], float] = time.monotonic,
        waiter: str | None = None,
        holds_place: bool = False,
    ) -> None:
        self.request = request
        self.policy = policy
        self.connection = connection
        self.scope = scope
        self.log = log
        self.reconciles = reconciles
        self.accept_after_uncertain = accept_after_uncertain
        self.numbers_of = numbers_of
        self.shared = shared
        self.observer = observer
        self.usage_store = usage_store
        self.clock = clock
        self.waiter = waiter
        self.holds_place = holds_place

    @property
    def _label(self) -> str:
        return f"{self.request.method} {self.request.path}"

    def pacing_wait(self) -> float:
        """How long the call must be held back for the budgets it spends (its app's, its WABA's)."""
        threshold = self.policy.usage_threshold
        store, shared = self.usage_store, self.shared
        held = []
        for key in store.budgets_of(self.connection, self.scope):
            reading = store.reading_of(key)
            if reading is None or reading.percent < threshold:
                continue
            if reading.percent < 100 and shared is not None and shared.holds(key):
                # Under its own lease this process alone sends, one call out at a time past the
                # threshold, each admitted against what is left: slowing down would only waste
                # the window.
                continue
            held.append(reading)
        if not held:
            return 0.0
        now = self.clock()
        wait, percent, source = max(
            (self.policy.pacing_wait(reading, now), reading.percent, reading.source) for reading in held
        )
        if wait > 0:
            waba = self.usage_store.waba_of(self.connection, self.scope)
            self.log.info(
                "Rate-limit usage at %.0f%% (threshold %.0f%%, WABA %s, reading from %s): "
                "holding Graph call %s for %.2fs",
                percent,
                threshold,
                waba or "unknown",
                "this process's last answer" if source == "answer" else source,
                self._label,
                wait,
            )
            if self.observer is not None:
                self.observer.waited(waba, wait, "budget")
        return wait

    def steps(self) -> ExchangeSteps:
        """The call's steps: yields actions, is sent what happened, returns Graph's JSON object."""
        uncertain = False
        # Made at the first failure: most calls succeed at once, and pay nothing for retries.
        state: tenacity.RetryCallState | None = None
        while True:
            try:
                return (yield from self._attempt(uncertain))
            except GraphAPIError as error:
                if uncertain and self.accept_after_uncertain is not None and self.accept_after_uncertain(error):
                    self.log.info("Graph call %s had been applied before the failure", self._label)
                    return {"success": True}
                if self.request.method != "GET" and may_have_been_applied(error):
                    uncertain = True
                if state is None:
                    retrying = graph_retrying(self.policy, before_retry=self._before_retry, give_up=self._give_up)
                    state = tenacity.RetryCallState(retrying, None, (), {})
                wait = next_wait(state, error)  # raises ``error`` when it is not retried
                yield Sleep(wait, for_budget=isinstance(error, GraphThrottledError) and not uncertain)

    def _attempt(self, uncertain: bool) -> ExchangeSteps:
        """One attempt: looked up first if an earlier one may have been applied, admitted, sent, read."""
        if uncertain and self.reconciles:
            found = yield Reconcile()
            if isinstance(found, dict):
                self.log.info("Graph call %s had been applied before the failure; not sent again", self._label)
                return found
        budgets, leased, place = yield from self._admitted(restartable=not uncertain)
        if self.observer is not None:
            self.observer.sent(self.usage_store.waba_of(self.connection, self.scope))
        settled = False
        try:
            reply = yield Send(self.request)
            usage = self._usage_of(reply)
            self.usage_store.settle(budgets, self.connection, self.scope, usage)
            settled = True
        finally:
            if not settled:
                # The driver gave up on the call (cancelled, or the transport raised); a
                # lease it held runs out by itself.
                self.usage_store.settle(budgets, self.connection, self.scope, None)
        if self.observer is not None and usage is not None:
            self._observe_usage(budgets)
        if self.shared is not None:
            headers = reply.headers if isinstance(reply, RawResponse) else None
            yield from self.shared.publish(self.usage_store, budgets, leased, headers)
            if place and self.waiter:
                # Only now: until the others read this call in the budget, they count it as the place.
                yield from self.shared.unreserve(place, self.waiter)
        return self._outcome(reply, usage)

    def _admitted(
        self, restartable: bool
    ) -> Generator[Action, Reply, tuple[tuple[BudgetKey, ...], tuple[BudgetKey, ...], tuple[BudgetKey, ...]]]:
        """Hold the call back until its budgets allow it; then count it as out on them.

        Returns the budgets, those whose lease the call holds (see
        :mod:`~airflow_provider_whatsapp.hooks.shared_view`) and those on which it held a place
        among the waiters, given up once its answer is shared. ``restartable``: nothing was sent
        that may have been applied, so a long hold may end the call (see :class:`Sleep`).
        """
        store, shared = self.usage_store, self.shared
        paced_on: tuple[float, ...] | None = None
        poll = ADMISSION_POLL_FIRST
        held, slept, since = 0.0, 0.0, self.clock()
        reserved: tuple[BudgetKey, ...] = ()
        reserved_at = float("inf")
        while True:
            budgets = store.budgets_of(self.connection, self.scope)
            if shared is not None:
                # What the deployment's other processes learnt of these budgets since.
                yield from shared.pull(store, budgets)
            # Paced once per reading: a newer reading (another call's answer) is paced again.
            stamp = tuple(reading.observed_at for reading in store.readings(self.connection, self.scope))
            if stamp != paced_on:
                paced_on = stamp
                pause = self.pacing_wait()
                if pause > 0:
                    if restartable and not reserved and pause >= WAITER_FROM:
                        reserved = yield from self._take_place(budgets, pause)
                        reserved_at = self.clock()
                    yield Sleep(pause, for_budget=restartable)
                    continue
            given_up = held >= self.policy.max_throttle_wait
            beyond_waiters = given_up or shared is None or shared.leaves_waiters_room(store, budgets, self.waiter)
            if given_up or (beyond_waiters and store.has_room(budgets, self.policy.usage_threshold)):
                # Counted as out at once: asking for a lease below lets the process's other calls
                # run, and they must not take the same room.
                place = reserved or (budgets if self.holds_place else ())
                counted = self.waiter if self.holds_place or self.clock() - reserved_at >= COUNTED_AFTER else None
                needed = shared.leases_needed(store, budgets) if shared is not None else ()
                unleased = bool(counted and shared is not None and shared.goes_unleased(store, needed, counted))
                store.admit(budgets)
                if shared is None or given_up or unleased:
                    return budgets, (), place
                leased = yield from self._leases(budgets)
                if leased is not None and not shared.taken_over(leased):
                    return budgets, leased, place
                # Not held; or just taken over, to be admitted again against the last holder's count.
                store.withdraw(budgets)
                if leased is not None:
                    continue
            elif shared is not None and not beyond_waiters:
                # What is left is the waiters': a lease this process holds would keep them out.
                for key in budgets:
                    yield from shared.release(key)
            # Other calls, of this process or another, are out on a budget near its end: their
            # answers tell whether there is room for this one.
            if restartable and not reserved and held >= WAITER_FROM:
                reserved = yield from self._take_place(budgets, self.policy.defer_wait_over)
                reserved_at = self.clock()
            yield Sleep(poll, for_budget=restartable, held=held)
            # By the clock too: on a busy machine the store's round trips outlast the sleeps.
            slept += poll
            held = max(slept, self.clock() - since)
            poll = min(poll * 2, ADMISSION_POLL_MAX)

    def _take_place(
        self, budgets: tuple[BudgetKey, ...], seconds: float
    ) -> Generator[Action, Reply, tuple[BudgetKey, ...]]:
        """A place among the waiters of the budgets holding the call back, kept across a deferral."""
        if self.shared is None or not self.waiter:
            return ()
        keys = self.shared.leases_needed(self.usage_store, budgets) or budgets
        yield from self.shared.reserve(keys, self.waiter, seconds)
        return keys

    def _leases(self, budgets: tuple[BudgetKey, ...]) -> Generator[Action, Reply, tuple[BudgetKey, ...] | None]:
        """The leases of the budgets near their end, all of them; ``None`` when another process holds one."""
        assert self.shared is not None
        held: list[BudgetKey] = []
        for key in self.shared.leases_needed(self.usage_store, budgets):
            if not (yield from self.shared.claim(key)):
                for got in held:
                    yield from self.shared.release(got)
                return None
            held.append(key)
        return tuple(held)

    def _observe_usage(self, budgets: tuple[BudgetKey, ...]) -> None:
        assert self.observer is not None
        for key in budgets:
            reading = self.usage_store.reading_of(key)
            if reading is not None:
                self.observer.usage(None if isinstance(key, ConnectionKey) else key[1], reading.percent)

    def _usage_of(self, reply: Reply) -> UsageReport | None:
        if isinstance(reply, RawResponse):
            return parse_usage_headers(reply.headers, self.clock())
        return None

    def _outcome(self, reply: Reply, usage: UsageReport | None) -> dict[str, Any]:
        if isinstance(reply, GraphConnectionError):
            raise reply
        if not isinstance(reply, RawResponse):  # pragma: no cover - a driver bug, not Graph's
            raise TypeError(f"a Send step must be answered with a RawResponse, not {type(reply).__name__}")
        try:
            answer = parse_response(reply.status, reply.headers, reply.body, usage)
        except GraphThrottledError as error:
            self._record_throttle(error, usage)
            raise
        if self.numbers_of is not None:
            for phone_number_id in numbers_in(answer):
                self.usage_store.learn_waba(self.connection, phone_number_id, self.numbers_of)
        return answer

    def _record_throttle(self, error: GraphThrottledError, usage: UsageReport | None) -> None:
        # A throttle that came without the usage of its budget still tells the other calls of
        # the process (other tasks' hooks, triggers) that the budget is spent.
        regain = error.retry_after or 0.0
        if is_business_throttle(error.code):
            waba = self.usage_store.waba_of(self.connection, self.scope)
            if waba is not None and (usage is None or waba not in usage.business):
                self.usage_store.record_exhausted(self.connection, waba, regain, self.clock())
        elif error.code == APP_THROTTLE_CODE and (usage is None or usage.app is None):
            self.usage_store.record_exhausted(self.connection, None, regain, self.clock())

    def _before_retry(self, error: GraphAPIError, wait: float, attempt: int) -> None:
        self.log.warning(
            "Graph call %s failed (%s, code=%s, subcode=%s); retrying in %.2fs (attempt %d of %d)",
            self._label,
            type(error).__name__,
            error.code,
            error.error_subcode,
            wait,
            attempt + 1,
            self.policy.max_attempts,
        )
        if self.observer is not None:
            waba = self.usage_store.waba_of(self.connection, self.scope)
            throttled = isinstance(error, GraphThrottledError)
            if throttled:
                self.observer.refused(waba, error.code)
            self.observer.waited(waba, wait, "throttle" if throttled else "backoff")

    def _give_up(self, error: GraphAPIError, wait: float) -> None:
        self.log.warning(
            "Graph call %s failed (%s); waiting %.2fs more would pass max_total_wait (%.0fs): giving up",
            self._label,
            type(error).__name__,
            wait,
            self.policy.max_total_wait,
        )
