"""One Graph call from start to end, as plain code with no HTTP client: the exchange core.

:class:`GraphExchange` decides everything about a call — how long to hold it back for the rate
limits of its WABA and app, what the answer means, which usage to record, whether and when to try
again, when to look up a POST that may already have been applied. It does no I/O: it *yields*
what it needs done (:class:`Sleep`, :class:`Send`, :class:`Reconcile`) and is sent back what
happened. The sync hook (``requests``, ``time.sleep``) and the async hook (``httpx``,
``asyncio.sleep``) are two small drivers of the same exchange, so they cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, NamedTuple, Protocol

from airflow_provider_whatsapp.exceptions import (
    APP_THROTTLE_CODE,
    GraphAPIError,
    GraphConnectionError,
    GraphResponseError,
    GraphThrottledError,
    GraphTransientError,
    is_business_throttle,
)
from airflow_provider_whatsapp.hooks.graph import GraphRequest, GraphRetryPolicy, parse_response
from airflow_provider_whatsapp.hooks.usage import (
    USAGE_STORE,
    CallScope,
    ConnectionKey,
    UsageReport,
    UsageStore,
    parse_usage_headers,
)

# The steps and the response are tuples, not dataclasses: several are built on every call, and a
# frozen dataclass's ``__init__`` costs several times as much.


class Sleep(NamedTuple):
    """Wait this many seconds, then send the exchange ``None``."""

    seconds: float


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


class ExchangeLog(Protocol):
    """What the exchange needs of a logger (a hook's ``log``, or any ``logging.Logger``)."""

    def info(self, msg: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any, **kwargs: Any) -> Any: ...


Action = Sleep | Send | Reconcile
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
    :param usage_store: the process's usage store.
    :param clock: monotonic clock, in seconds.
    """

    __slots__ = (
        "accept_after_uncertain",
        "clock",
        "connection",
        "log",
        "policy",
        "reconciles",
        "request",
        "scope",
        "usage_store",
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
        usage_store: UsageStore = USAGE_STORE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request = request
        self.policy = policy
        self.connection = connection
        self.scope = scope
        self.log = log
        self.reconciles = reconciles
        self.accept_after_uncertain = accept_after_uncertain
        self.usage_store = usage_store
        self.clock = clock

    @property
    def _label(self) -> str:
        return f"{self.request.method} {self.request.path}"

    def pacing_wait(self) -> float:
        """How long the call must be held back for the budgets it spends (its app's, its WABA's)."""
        threshold = self.policy.usage_threshold
        held = [
            reading
            for reading in self.usage_store.readings(self.connection, self.scope)
            if reading.percent >= threshold
        ]
        if not held:
            return 0.0
        now = self.clock()
        wait, percent = max((self.policy.pacing_wait(reading, now), reading.percent) for reading in held)
        if wait > 0:
            waba = self.usage_store.waba_of(self.connection, self.scope)
            self.log.info(
                "Rate-limit usage at %.0f%% (threshold %.0f%%, WABA %s): holding Graph call %s for %.2fs",
                percent,
                threshold,
                waba or "unknown",
                self._label,
                wait,
            )
        return wait

    def steps(self) -> ExchangeSteps:
        """The call's steps: yields actions, is sent what happened, returns Graph's JSON object."""
        uncertain = False
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            if uncertain and self.reconciles:
                found = yield Reconcile()
                if isinstance(found, dict):
                    self.log.info("Graph call %s had been applied before the failure; not sent again", self._label)
                    return found
            pause = self.pacing_wait()
            if pause > 0:
                yield Sleep(pause)
            reply = yield Send(self.request)
            try:
                return self._outcome(reply)
            except GraphAPIError as error:
                if uncertain and self.accept_after_uncertain is not None and self.accept_after_uncertain(error):
                    self.log.info("Graph call %s had been applied before the failure", self._label)
                    return {"success": True}
                if self.request.method != "GET" and may_have_been_applied(error):
                    uncertain = True
                wait = self._retry_wait(error, attempt, waited)
                if wait is None:
                    raise
                waited += wait
                yield Sleep(wait)

    def _outcome(self, reply: Reply) -> dict[str, Any]:
        if isinstance(reply, GraphConnectionError):
            raise reply
        if not isinstance(reply, RawResponse):  # pragma: no cover - a driver bug, not Graph's
            raise TypeError(f"a Send step must be answered with a RawResponse, not {type(reply).__name__}")
        usage = parse_usage_headers(reply.headers, self.clock())
        if usage is not None:
            self.usage_store.record(self.connection, self.scope, usage)
        try:
            return parse_response(reply.status, reply.headers, reply.body, usage)
        except GraphThrottledError as error:
            self._record_throttle(error, usage)
            raise

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

    def _retry_wait(self, error: GraphAPIError, attempt: int, waited: float) -> float | None:
        """Seconds to wait before trying again, or ``None`` to give up and raise ``error``."""
        policy = self.policy
        if attempt >= policy.max_attempts or not policy.should_retry(error):
            return None
        wait = policy.wait_for(error, attempt)
        if waited + wait > policy.max_total_wait:
            self.log.warning(
                "Graph call %s failed (%s); waiting %.2fs more would pass max_total_wait (%.0fs): giving up",
                self._label,
                type(error).__name__,
                wait,
                policy.max_total_wait,
            )
            return None
        self.log.warning(
            "Graph call %s failed (%s, code=%s, subcode=%s); retrying in %.2fs (attempt %d of %d)",
            self._label,
            type(error).__name__,
            error.code,
            error.error_subcode,
            wait,
            attempt + 1,
            policy.max_attempts,
        )
        return wait
