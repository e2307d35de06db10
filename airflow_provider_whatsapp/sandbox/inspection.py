"""What tests and benchmarks read of a running sandbox (numbers, requests, rate-limit counters),
and the hand that moves a number's review and status, as methods of
:class:`~airflow_provider_whatsapp.sandbox.server.GraphSandbox`."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from typing import Any

from airflow_provider_whatsapp.sandbox.clock import SandboxClock
from airflow_provider_whatsapp.sandbox.rate_limits import WABA_THROTTLED, RateLimits, Rejection
from airflow_provider_whatsapp.sandbox.state import PhoneNumber, ReceivedRequest, SandboxState, SchemaViolation


class SandboxInspection:
    """The reading side of :class:`~airflow_provider_whatsapp.sandbox.server.GraphSandbox`.

    Every method takes the sandbox's lock, so it can be called while requests are served.
    """

    clock: SandboxClock
    _lock: threading.RLock
    _state: SandboxState
    _limits: RateLimits

    def _number(self, number_id: str) -> PhoneNumber:
        number = self._state.numbers.get(number_id)
        if number is None:
            raise KeyError(f"no phone number {number_id!r} in the sandbox")
        number.refresh(self.clock.now())
        return number

    def numbers(self, waba_id: str | None = None) -> list[dict[str, Any]]:
        """Copies of the numbers (Graph fields plus ``waba_id``, ``cc``, ``phone_number``, ``migrate``).

        :param waba_id: only this WABA's; all WABAs when ``None``.
        """
        with self._lock:
            now = self.clock.now()
            result = []
            for number in self._state.numbers.values():
                if waba_id is None or number.waba_id == waba_id:
                    number.refresh(now)
                    result.append(json.loads(json.dumps(number.node)))
            return result

    def number(self, number_id: str) -> dict[str, Any]:
        """A copy of one number; ``KeyError`` if unknown."""
        with self._lock:
            node: dict[str, Any] = json.loads(json.dumps(self._number(number_id).node))
            return node

    def register_calls(self, number_id: str) -> int:
        """How many register/deregister calls the number has spent (10 per 72 h are allowed)."""
        with self._lock:
            return len(self._number(number_id).register_calls)

    def last_code(self, number_id: str) -> str | None:
        """The last verification code "sent" to a number, or ``None``."""
        with self._lock:
            return self._number(number_id).last_code

    def approve_name(self, number_id: str) -> None:
        """Approve the display name now."""
        self.set_fields(number_id, name_status="APPROVED")

    def decline_name(self, number_id: str) -> None:
        """Decline the display name."""
        self.set_fields(number_id, name_status="DECLINED")

    def set_fields(self, number_id: str, **fields: Any) -> None:
        """Override node fields, e.g. ``status="BANNED"``; cancels pending automatic transitions of them."""
        with self._lock:
            number = self._number(number_id)
            number.node.update(fields)
            if "status" in fields:
                number.connect_at = None
            if "name_status" in fields:
                number.name_approve_at = None

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The Graph requests received so far (control endpoints excluded), oldest first."""
        with self._lock:
            return list(self._state.requests)

    def requests_to(self, method: str | None = None, path: str | None = None) -> list[ReceivedRequest]:
        """Received requests with this method and whose path matches the regex ``path`` (``re.search``)."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or re.search(path, r.path))
        ]

    def reset_requests(self) -> None:
        """Forget the received requests."""
        with self._lock:
            self._state.requests.clear()

    @property
    def schema_violations(self) -> list[SchemaViolation]:
        """Every schema violation received, in order."""
        with self._lock:
            return list(self._state.violations)

    # ----------------------------------------------------------------------------- rate limits

    def rate_limit_for(self, waba_id: str) -> int | None:
        """The calls per window ``waba_id`` may make; ``None`` for no limit."""
        with self._lock:
            return self._limits.limit_for(waba_id)

    @property
    def rate_window_origin(self) -> float:
        """Sandbox-clock time at which rate-limit window 0 started; windows follow back to back."""
        return self._limits.origin

    def rate_window_anchor(self, waba_id: str) -> float:
        """Sandbox-clock time at which window 0 of ``waba_id``'s budget started (``rate_window_from_first_call``)."""
        with self._lock:
            return self._limits.anchor(waba_id)

    @property
    def rate_window_start(self) -> float:
        """Sandbox-clock time at which the current rate-limit window started."""
        with self._lock:
            return self._limits.window_start(self._limits.current_window())

    @property
    def rate_limit_rejections(self) -> list[Rejection]:
        """Every call a rate limit refused (80008 or 4), oldest first."""
        with self._lock:
            return list(self._limits.rejections)

    @property
    def rejected_calls(self) -> int:
        """Calls refused by a rate limit, the WABAs' (80008) and the app's (4) together."""
        return len(self.rate_limit_rejections)

    @property
    def rejected_call_times(self) -> list[float]:
        """Sandbox-clock times of the calls refused by a rate limit."""
        return [rejection.time for rejection in self.rate_limit_rejections]

    def rejected_calls_by_waba(self) -> dict[str, int]:
        """Calls refused with 80008, per WABA."""
        return dict(Counter(r.waba_id for r in self.rate_limit_rejections if r.code == WABA_THROTTLED and r.waba_id))

    @property
    def rejected_calls_per_window(self) -> dict[tuple[str, int], int]:
        """Calls refused with 80008, per ``(waba_id, window index)``."""
        rejections = self.rate_limit_rejections
        return dict(Counter((r.waba_id, r.window) for r in rejections if r.code == WABA_THROTTLED and r.waba_id))

    @property
    def app_rejected_calls(self) -> int:
        """Calls refused with code 4, the app's budget being spent."""
        return sum(1 for rejection in self.rate_limit_rejections if rejection.code != WABA_THROTTLED)

    @property
    def calls_per_window(self) -> dict[tuple[str, int], int]:
        """Calls served per ``(waba_id, window index)``; none ever exceeds that WABA's budget."""
        with self._lock:
            return dict(self._limits.calls_per_window)

    @property
    def app_calls_per_window(self) -> dict[int, int]:
        """Calls served per window index, every WABA and none together."""
        with self._lock:
            return dict(self._limits.app_calls_per_window)

    def calls_by_waba(self) -> dict[str, int]:
        """Calls served per WABA, all windows together."""
        totals: Counter[str] = Counter()
        for (waba_id, _), count in self.calls_per_window.items():
            totals[waba_id] += count
        return dict(totals)
