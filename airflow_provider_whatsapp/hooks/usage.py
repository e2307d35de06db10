"""Rate-limit usage as Graph keys it, kept once per process for every hook and trigger.

Graph reports two budgets on its answers. ``X-Business-Use-Case-Usage`` is per app *per business
object*: a JSON object keyed by the WABA's ID, describing only the object the call was about.
``X-App-Usage`` is the app's platform usage across every object. A client onboarding numbers of
many WABAs with one token must therefore pace each WABA on its own, and every call by the app's
usage. The :class:`UsageStore` keeps the latest reading of each, keyed by (Graph host, connection,
object ID), and remembers which WABA each phone number belongs to, so that a call to
``/{phone_number_id}/...`` is paced by its WABA. No HTTP client and no Airflow here.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

# Percentages beyond this are not a reading but a broken header: treated as unknown.
_MAX_PERCENT = 1000.0
# A regain time beyond a day is not one Graph gives: treated as unknown.
_MAX_REGAIN_MINUTES = 24 * 60.0
_ID_RE = re.compile(r"[0-9]{1,32}")
_PERCENT_KEYS = ("call_count", "total_cputime", "total_time")


class UsageReading(NamedTuple):
    """
    One budget's usage as Graph last reported it.

    :param percent: the highest of call count, CPU time and total time, in percent of the limit.
    :param regain_seconds: how long until access is regained, when Graph said so (0 otherwise).
    :param observed_at: ``time.monotonic()`` when the answer arrived.
    :param source: where it came from: ``answer`` (a usage header of this process's answer),
        ``throttle`` (a refusal without one), or ``shared by <process>`` (another process's).
    """

    percent: float
    regain_seconds: float
    observed_at: float
    source: str = "answer"


class UsageReport(NamedTuple):
    """
    The usage headers of one answer.

    :param business: readings by business object ID (``X-Business-Use-Case-Usage``).
    :param app: the app-level reading (``X-App-Usage``), if the header was there and readable.
    """

    business: Mapping[str, UsageReading]
    app: UsageReading | None

    @property
    def regain_seconds(self) -> float:
        """The longest regain time announced for any budget of this answer."""
        readings = [*self.business.values(), *([self.app] if self.app else [])]
        return max((reading.regain_seconds for reading in readings), default=0.0)


class ConnectionKey(NamedTuple):
    """Which app's budgets a call spends: Graph host and the token's fingerprint.

    Graph counts an app's budgets by its token, not by the Airflow connection holding it: two
    connections with one token spend one budget, and one token on two hosts two. Tuples, not
    dataclasses: these keys are hashed several times on every call.
    """

    host: str
    app: str


class CallScope(NamedTuple):
    """
    What a call is about, for pacing: the WABA, the phone number, or neither (``/me``).

    :param waba_id: the WABA the call targets or the number belongs to, when known.
    :param phone_number_id: the phone number the call targets, if any.
    """

    waba_id: str | None = None
    phone_number_id: str | None = None


def _percent(value: Any) -> float | None:
    # Usage headers pass through proxies we do not control: anything unreadable is unknown.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and 0 <= number <= _MAX_PERCENT else None


def _json_object(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        # A garbled header must not cost the answer it came with.
        return {}
    return value if isinstance(value, dict) else {}


def _reading_of(entries: list[Any], now: float) -> UsageReading | None:
    percents: list[float] = []
    regain_minutes = 0.0
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        percents.extend(p for p in (_percent(entry.get(key)) for key in _PERCENT_KEYS) if p is not None)
        regain = _percent(entry.get("estimated_time_to_regain_access"))
        if regain is not None and regain <= _MAX_REGAIN_MINUTES:
            regain_minutes = max(regain_minutes, regain)
    if not percents:
        return None
    return UsageReading(percent=max(percents), regain_seconds=regain_minutes * 60.0, observed_at=now)


@functools.lru_cache(maxsize=256)
def _parse_cached(business_raw: str | None, app_raw: str | None) -> tuple[dict[str, UsageReading], UsageReading | None]:
    # Consecutive answers mostly repeat the same header text: parse each distinct text once.
    # The readings are stamped with time 0 here and re-stamped by the caller.
    business: dict[str, UsageReading] = {}
    for key, entries in _json_object(business_raw).items():
        if not _ID_RE.fullmatch(key):
            continue
        reading = _reading_of(entries if isinstance(entries, list) else [entries], 0.0)
        if reading is not None:
            business[key] = reading
    app_object = _json_object(app_raw)
    app = _reading_of([app_object], 0.0) if app_object else None
    return business, app


def parse_usage_headers(headers: Mapping[str, str], now: float | None = None) -> UsageReport | None:
    """Read ``X-Business-Use-Case-Usage`` and ``X-App-Usage``; ``None`` when neither says anything."""
    business_raw = headers.get("X-Business-Use-Case-Usage") or None
    app_raw = headers.get("X-App-Usage") or None
    if business_raw is None and app_raw is None:
        return None
    business, app = _parse_cached(business_raw, app_raw)
    if not business and app is None:
        return None
    stamp = time.monotonic() if now is None else now
    readings = [*business.values(), *([app] if app is not None else [])]
    announced = 0.0
    if any(reading.percent >= 100 and reading.regain_seconds <= 0 for reading in readings):
        # X-App-Usage carries no regain time: a budget spent without its own time regains when
        # the answer says access does (Retry-After, or the business usage's time), not at a guess.
        announced = max(retry_after_header(headers), *(reading.regain_seconds for reading in readings))
    return UsageReport(
        business={key: _stamped(reading, stamp, announced) for key, reading in business.items()},
        app=_stamped(app, stamp, announced) if app is not None else None,
    )


def retry_after_header(headers: Mapping[str, str]) -> float:
    """``Retry-After`` in seconds; 0 when absent, unreadable, not positive or over a day."""
    try:
        value = float((headers.get("Retry-After") or "").strip())
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and 0 < value <= _MAX_REGAIN_MINUTES * 60 else 0.0


def _stamped(reading: UsageReading, now: float, announced: float) -> UsageReading:
    regain = reading.regain_seconds
    if reading.percent >= 100 and regain <= 0:
        regain = announced
    return UsageReading(reading.percent, regain, now)


#: A budget: an app's (its connection) or a WABA's (connection, WABA ID).
BudgetKey = ConnectionKey | tuple[ConnectionKey, str]


class _Flow:
    """The calls a process has out on one budget, and what one call costs of it."""

    __slots__ = ("in_flight", "per_call", "unreflected")

    def __init__(self) -> None:
        # Admitted and not answered yet.
        self.in_flight = 0
        # Admitted and possibly not counted in the latest reading yet.
        self.unreflected = 0
        # Percent of the budget one call costs: until two readings tell, assume the worst.
        self.per_call = 100.0

    def reading_arrived(self, previous: UsageReading | None, reading: UsageReading) -> None:
        # Calls still out when a reading arrives may or may not be in it: count them as not.
        self.unreflected = max(0, self.in_flight - 1)
        if previous is None:
            # One call cost at most the whole first reading; Graph rounds down, so add a point.
            self.per_call = min(self.per_call, max(reading.percent, 0.0) + 1.0)
        elif reading.percent > previous.percent:
            # Readings rise by whole calls' worth, rounded down: the smallest rise, plus the
            # rounding, is at least what one call costs.
            self.per_call = min(self.per_call, reading.percent - previous.percent + 1.0)


class UsageStore:
    """
    The latest usage of every budget this process has heard of, shared by all hooks and triggers.

    Each task and each trigger builds its own hook; keeping the readings here means a fresh hook's
    first call is already paced by what the previous answer about the same WABA said, and a
    trigger paces with the tasks of its process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._business: dict[tuple[ConnectionKey, str], UsageReading] = {}
        self._app: dict[ConnectionKey, UsageReading] = {}
        self._waba_of_number: dict[tuple[ConnectionKey, str], str] = {}
        self._flow: dict[BudgetKey, _Flow] = {}

    def waba_of(self, connection: ConnectionKey, scope: CallScope) -> str | None:
        """The WABA whose budget a call of this scope spends, if known."""
        if scope.waba_id is not None:
            return scope.waba_id
        if scope.phone_number_id is None:
            return None
        return self._waba_of_number.get((connection, scope.phone_number_id))

    def learn_waba(self, connection: ConnectionKey, phone_number_id: str, waba_id: str) -> None:
        """Remember that ``phone_number_id`` belongs to ``waba_id`` (from a create, a list or the user)."""
        if _ID_RE.fullmatch(phone_number_id) and _ID_RE.fullmatch(waba_id):
            with self._lock:
                self._waba_of_number[(connection, phone_number_id)] = waba_id

    def readings(self, connection: ConnectionKey, scope: CallScope) -> list[UsageReading]:
        """The readings that pace a call of this scope: the app's, and its WABA's when known."""
        found = [self._app.get(connection)]
        waba = self.waba_of(connection, scope)
        if waba is not None:
            found.append(self._business.get((connection, waba)))
        return [reading for reading in found if reading is not None]

    def record(self, connection: ConnectionKey, scope: CallScope, report: UsageReport) -> None:
        """Keep an answer's readings; a lone business key on a number's answer names its WABA."""
        with self._lock:
            self._record(connection, scope, report)

    def _record(self, connection: ConnectionKey, scope: CallScope, report: UsageReport) -> None:
        for object_id, reading in report.business.items():
            key = (connection, object_id)
            self._flow_of(key).reading_arrived(self._business.get(key), reading)
            self._business[key] = reading
        if report.app is not None:
            self._flow_of(connection).reading_arrived(self._app.get(connection), report.app)
            self._app[connection] = report.app
        if scope.phone_number_id is not None and scope.waba_id is None and len(report.business) == 1:
            (waba,) = report.business
            self._waba_of_number[(connection, scope.phone_number_id)] = waba

    # ------------------------------------------------------------------ admission

    def budgets_of(self, connection: ConnectionKey, scope: CallScope) -> tuple[BudgetKey, ...]:
        """The budgets a call of this scope spends: its app's, and its WABA's when known."""
        waba = self.waba_of(connection, scope)
        return (connection,) if waba is None else (connection, (connection, waba))

    def has_room(self, budgets: tuple[BudgetKey, ...], threshold: float) -> bool:
        """
        Whether one more call may go out now on these budgets, given the calls already out.

        Many calls of one process (the onboarding trigger's conversations, a task's threads) may
        spend one budget at once. Graph's reading cannot count the calls still on their way, so
        each is assumed to cost what one call cost in the readings so far: the projection must
        stay within 100 %, and past ``threshold`` only one call is out at a time. A call with
        nothing else out always may go (the reading's own pacing has already held it back):
        without it no reading would ever say when access is regained.
        """
        with self._lock:
            for key in budgets:
                flow = self._flow.get(key)
                if flow is None or flow.in_flight == 0:
                    continue
                reading = self._app.get(key) if isinstance(key, ConnectionKey) else self._business.get(key)
                if reading is None or reading.percent >= threshold:
                    return False
                if reading.percent + flow.per_call * (flow.unreflected + 1) > 100.0:
                    return False
            return True

    def admit(self, budgets: tuple[BudgetKey, ...]) -> None:
        """Count a call as out on these budgets, until :meth:`settle`."""
        with self._lock:
            for key in budgets:
                flow = self._flow_of(key)
                flow.in_flight += 1
                flow.unreflected += 1

    def withdraw(self, budgets: tuple[BudgetKey, ...]) -> None:
        """A call counted as out by :meth:`admit` was not sent after all."""
        with self._lock:
            for key in budgets:
                flow = self._flow_of(key)
                flow.in_flight = max(0, flow.in_flight - 1)
                flow.unreflected = max(0, flow.unreflected - 1)

    def settle(
        self, budgets: tuple[BudgetKey, ...], connection: ConnectionKey, scope: CallScope, report: UsageReport | None
    ) -> None:
        """A call admitted on these budgets was answered (``report``: its usage headers) or failed."""
        with self._lock:
            if report is not None:
                self._record(connection, scope, report)
            for key in budgets:
                self._flow_of(key).in_flight -= 1

    def reading_of(self, key: BudgetKey) -> UsageReading | None:
        """The latest reading of one budget (an app's or a WABA's)."""
        return self._app.get(key) if isinstance(key, ConnectionKey) else self._business.get(key)

    def calls_left(self, key: BudgetKey) -> float | None:
        """How many more calls a budget takes, by its latest reading less the calls out since
        (``None`` without a reading)."""
        with self._lock:
            reading = self.reading_of(key)
            if reading is None:
                return None
            flow = self._flow.get(key)
            per_call, out = (flow.per_call, flow.unreflected) if flow is not None else (100.0, 0)
            return (100.0 - reading.percent) / max(per_call, 0.01) - out

    def per_call(self, key: BudgetKey) -> float:
        """What one call costs of a budget, in percent, as far as this process can tell (an upper bound)."""
        flow = self._flow.get(key)
        return flow.per_call if flow is not None else 100.0

    def merge_reading(self, key: BudgetKey, reading: UsageReading, per_call: float) -> bool:
        """Take another process's reading of a budget when it is newer than this process's own,
        and what it learnt one call costs in any case (a bound of the budget, not of the reading)."""
        with self._lock:
            flow = self._flow_of(key)
            flow.per_call = min(flow.per_call, max(per_call, 0.01))
            own = self.reading_of(key)
            if own is not None and own.observed_at >= reading.observed_at:
                return False
            if isinstance(key, ConnectionKey):
                self._app[key] = reading
            else:
                self._business[key] = reading
            # Its calls still out may or may not be in the other process's reading: as if not.
            flow.unreflected = flow.in_flight
            return True

    def _flow_of(self, key: BudgetKey) -> _Flow:
        flow = self._flow.get(key)
        if flow is None:
            flow = self._flow[key] = _Flow()
        return flow

    def record_exhausted(
        self, connection: ConnectionKey, object_id: str | None, regain_seconds: float, now: float | None = None
    ) -> None:
        """A throttle answer without a usage header for its budget: that budget is at 100 %."""
        reading = UsageReading(100.0, max(0.0, regain_seconds), time.monotonic() if now is None else now, "throttle")
        with self._lock:
            if object_id is None:
                self._app[connection] = reading
            else:
                self._business[(connection, object_id)] = reading

    def business_reading(self, connection: ConnectionKey, object_id: str) -> UsageReading | None:
        """The latest reading of one business object's budget."""
        return self._business.get((connection, object_id))

    def app_reading(self, connection: ConnectionKey) -> UsageReading | None:
        """The latest app-level reading of a connection."""
        return self._app.get(connection)

    def clear(self) -> None:
        """Forget everything (tests start from an empty store)."""
        with self._lock:
            self._business.clear()
            self._app.clear()
            self._waba_of_number.clear()
            self._flow.clear()


#: The one store of this process.
USAGE_STORE = UsageStore()
