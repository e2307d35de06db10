"""Graph's rate limits as the sandbox keeps them, and the usage headers that report them.

Two budgets, both counted in fixed windows on the sandbox clock (every window starts at
``origin + k * window``):

* the business-use-case budget, one per WABA: every call about a WABA (``/{waba_id}/...``, or
  ``/{phone_number_id}/...`` of one of its numbers) counts against that WABA only. Past it Graph
  answers **80008**, and ``X-Business-Use-Case-Usage`` (keyed by that WABA's ID) says 100 % and
  how many whole minutes remain until access is regained;
* the app's platform budget: every counted call, whatever it is about. Past it Graph answers
  code **4** and ``X-App-Usage`` says 100 %.

A refused call is not applied and does not consume either budget: a client that waits the
announced time is served. Calls about no WABA (``debug_token``, unknown IDs) carry no
``X-Business-Use-Case-Usage``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from airflow_provider_whatsapp.sandbox.answers import SandboxErrorAnswer
from airflow_provider_whatsapp.sandbox.clock import SandboxClock

# Graph's default business-use-case budget per WABA per hour; without a limit the percentages in
# the usage headers are reported against it.
NOMINAL_LIMIT = 200
# Without a limit the headers never pass this percentage: clients start slowing down well below
# 100 %, and an unlimited sandbox must never tell a well-behaved client to do so.
UNLIMITED_USAGE_CAP = 50
MANAGEMENT_USAGE = "whatsapp_business_management"
# Register and deregister answers report their usage under this type, as Graph does.
MESSAGING_USAGE = "whatsapp"
WABA_THROTTLED = 80008
APP_THROTTLED = 4

Headers = list[tuple[str, str]]


def checked_limit(name: str, limit: int | None) -> int | None:
    """``limit`` if it is ``None`` or a whole number of at least 1; else ``ValueError`` naming it."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{name} must be a whole number of calls, at least 1 (or None for no limit)")
    return limit


@dataclass(frozen=True)
class Rejection:
    """A call refused by a rate limit.

    :param time: sandbox-clock time of the call.
    :param window: the index of its window.
    :param waba_id: the WABA the call was about; ``None`` for calls about no WABA.
    :param code: ``80008`` (the WABA's budget was spent) or ``4`` (the app's).
    """

    time: float
    window: int
    waba_id: str | None
    code: int


class RateLimits:
    """The budgets, what was spent of them per window, and what was refused.

    Not locked: the sandbox's lock covers it.

    :param clock: the sandbox clock the windows run on.
    :param window: the windows' length, in sandbox-clock seconds.
    :param origin: sandbox-clock time at which window 0 starts.
    :param default_limit: calls per window for each WABA without a limit of its own; ``None`` for
        no limit.
    :param waba_limits: calls per window of particular WABAs, by WABA ID.
    :param app_limit: calls per window for the whole app; ``None`` for no limit.
    :param from_first_call: each WABA's windows start at its own first call (``origin + k *
        window`` for the app's), as a budget nothing has spent starts counting when it is first
        spent; otherwise every window starts at ``origin + k * window``.
    """

    def __init__(
        self,
        clock: SandboxClock,
        window: float,
        origin: float,
        default_limit: int | None = None,
        waba_limits: dict[str, int | None] | None = None,
        app_limit: int | None = None,
        from_first_call: bool = False,
    ) -> None:
        self.clock = clock
        self.window = window
        self.origin = origin
        self.from_first_call = from_first_call
        self.anchors: dict[str, float] = {}
        self.default_limit = checked_limit("rate_limit", default_limit)
        self.app_limit = checked_limit("app_rate_limit", app_limit)
        self.waba_limits: dict[str, int | None] = {}
        for waba_id, limit in (waba_limits or {}).items():
            self.set_limit(waba_id, limit)
        self.calls_per_window: Counter[tuple[str, int]] = Counter()
        self.app_calls_per_window: Counter[int] = Counter()
        self.rejections: list[Rejection] = []

    def set_limit(self, waba_id: str, limit: int | None) -> None:
        """Give one WABA a budget of its own.

        :param waba_id: the WABA.
        :param limit: its calls per window; ``None`` for no limit.
        """
        self.waba_limits[waba_id] = checked_limit(f"the rate limit of WABA {waba_id}", limit)

    def limit_for(self, waba_id: str) -> int | None:
        """The calls per window ``waba_id`` may make; ``None`` for no limit."""
        return self.waba_limits.get(waba_id, self.default_limit)

    def anchor(self, waba_id: str | None) -> float:
        """Sandbox-clock time at which window 0 of ``waba_id``'s budget starts (``None``: the app's)."""
        if waba_id is None or not self.from_first_call:
            return self.origin
        return self.anchors.get(waba_id, self.clock.now())

    def current_window(self, waba_id: str | None = None) -> int:
        """The index of the window the sandbox clock is in now, for ``waba_id``'s budget (``None``: the app's)."""
        return int((self.clock.now() - self.anchor(waba_id)) // self.window)

    def window_start(self, index: int, waba_id: str | None = None) -> float:
        """Sandbox-clock time at which window ``index`` of ``waba_id``'s budget starts."""
        return self.anchor(waba_id) + index * self.window

    def count_call(self, waba_id: str | None, usage_type: str = MANAGEMENT_USAGE) -> None:
        """Count one call against the app and, if it is about one, against its WABA.

        :param waba_id: the WABA the call is about, or ``None``.
        :param usage_type: the ``type`` of its usage entry.
        :raises SandboxErrorAnswer: code 4 past the app's budget, 80008 past the WABA's; then
            nothing is counted and the error carries the usage headers.
        """
        if waba_id is not None and self.from_first_call:
            self.anchors.setdefault(waba_id, self.clock.now())
        app_index, index = self.current_window(), self.current_window(waba_id)
        if self.app_limit is not None and self.app_calls_per_window[app_index] >= self.app_limit:
            self.rejections.append(Rejection(self.clock.now(), app_index, waba_id, APP_THROTTLED))
            raise SandboxErrorAnswer(
                APP_THROTTLED,
                "(#4) Application request limit reached",
                is_transient=True,
                headers=self.usage_headers(waba_id, usage_type),
            )
        limit = None if waba_id is None else self.limit_for(waba_id)
        if waba_id is not None and limit is not None and self.calls_per_window[(waba_id, index)] >= limit:
            self.rejections.append(Rejection(self.clock.now(), index, waba_id, WABA_THROTTLED))
            minutes = self._minutes_to_regain(index, waba_id)
            raise SandboxErrorAnswer(
                WABA_THROTTLED,
                "(#80008) There have been too many calls to this WhatsApp Business account. Wait a bit and try again.",
                details=(
                    f"WhatsApp Business Account {waba_id} has used its {limit} calls of this window; "
                    f"access is regained in {minutes} minute{'s' if minutes != 1 else ''}."
                ),
                headers=self.usage_headers(waba_id, usage_type),
            )
        self.app_calls_per_window[app_index] += 1
        if waba_id is not None:
            self.calls_per_window[(waba_id, index)] += 1

    def usage_headers(self, waba_id: str | None, usage_type: str = MANAGEMENT_USAGE) -> Headers:
        """``X-Business-Use-Case-Usage`` for ``waba_id`` (none without one) and ``X-App-Usage``."""
        headers: Headers = []
        if waba_id is not None:
            index = self.current_window(waba_id)
            count, limit = self.calls_per_window[(waba_id, index)], self.limit_for(waba_id)
            entry = {
                "type": usage_type,
                **_usage_percentages(count, limit),
                "estimated_time_to_regain_access": self._minutes_to_regain(index, waba_id)
                if _spent(count, limit)
                else 0,
            }
            headers.append(("X-Business-Use-Case-Usage", _compact({waba_id: [entry]})))
        app = _usage_percentages(self.app_calls_per_window[self.current_window()], self.app_limit)
        headers.append(("X-App-Usage", _compact(app)))
        return headers

    def _minutes_to_regain(self, index: int, waba_id: str | None = None) -> int:
        # Graph announces whole minutes, rounded up: waiting them never lands before the reset.
        seconds = self.window_start(index + 1, waba_id) - self.clock.now()
        return max(1, math.ceil(seconds / 60.0))


def _spent(count: int, limit: int | None) -> bool:
    return limit is not None and count >= limit


def _usage_percentages(count: int, limit: int | None) -> dict[str, int]:
    # Rounded down: 100 % means the budget is spent, not that one call of it is left.
    percent = 100 * count // (limit if limit is not None else NOMINAL_LIMIT)
    if limit is None:
        percent = min(percent, UNLIMITED_USAGE_CAP)
    return {"call_count": percent, "total_cputime": math.ceil(percent / 20), "total_time": math.ceil(percent / 10)}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
