"""Benchmark 2, rate-limit pacing: onboard numbers (create + read back) under a call limit.

The sandbox enforces ``limit`` calls per WABA per fixed window of Graph's hour and announces, as
Graph does, the time to regain access in whole minutes (rounded up). Waiting out whole hours for
real is out of the question, so the run uses the sandbox's clock: both clients "sleep" by
advancing it (``advance`` to the sandbox process), and every duration below is read on that
clock, i.e. this machine's monotonic time plus every wait. The work between waits is real. Two
clients onboard the same numbers, each against a fresh sandbox, starting at a window boundary:

* our hook with its default policy, except ``max_throttle_wait`` raised to the hour so it may
  wait as long as Graph announces;
* what an ``HttpOperator`` user writes: ``HttpHook.run_with_advanced_retry`` with tenacity,
  retrying on HTTP 429 or Graph codes 4/17/32/613/80007/80008 with exponential backoff from
  1 minute up to one window, at most 10 attempts per call.

The floor is what the limit allows: every full window but the last spent waiting, plus the last
window's calls at the client's unthrottled speed.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import WABA_ID, Result, SandboxProcess, airflow_environment, median, run_from_command_line

NAME = "2. rate-limit pacing"
TARGET = 1.10
REAL_WINDOW = 3600.0
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80007, 80008})


class Throttled(Exception):
    """Graph said "rate limit": the baseline's cue to back off and retry."""


class SandboxTime:
    """Time as the sandbox process counts it: this machine's monotonic clock (which the child
    shares) plus every advance; sleeping advances the sandbox's clock instead of waiting."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.sandbox = sandbox
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.offset = float(self.sandbox.command(f"advance {seconds!r}")["offset"])

    def to_window_start(self, window: float) -> float:
        """Advance to the start of the next window and return that moment."""
        stats = self.sandbox.stats()
        self.sleep(stats["window_start"] + window - stats["clock_now"])
        return self.now()


def _ours(sandbox: SandboxProcess, clock: SandboxTime, window: float) -> Callable[[str, str], str]:
    from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

    hook = WhatsAppBusinessHook(retry_policy=GraphRetryPolicy(max_throttle_wait=window), sleep=clock.sleep)

    def onboard(cc: str, number: str) -> str:
        if not number:  # warm-up: connection, imports, settings
            return str(hook.call("GET", WABA_ID, params={"fields": "id"})["id"])
        node_id = str(hook.create_phone_number(WABA_ID, cc, number, verified_name="Bench Co")["id"])
        read = hook.get_phone_number(node_id, fields="id,display_phone_number")
        if read.get("id") != node_id or not str(read.get("display_phone_number", "")).endswith(number[-4:]):
            raise AssertionError(f"read back {read!r} for {node_id}")
        return node_id

    return onboard


def _http_operator_style(sandbox: SandboxProcess, clock: SandboxTime, window: float) -> Callable[[str, str], str]:
    import tenacity
    from airflow.providers.http.hooks.http import HttpHook

    headers = {"Authorization": f"Bearer {sandbox.token}", "Accept": "application/json"}
    retry_args = {
        "retry": tenacity.retry_if_exception_type(Throttled),
        "wait": tenacity.wait_exponential(multiplier=60.0, min=60.0, max=window),
        "stop": tenacity.stop_after_attempt(10),
        "reraise": True,
        "sleep": clock.sleep,
    }

    def send(method: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        hook = HttpHook(method=method, http_conn_id="http_sandbox")
        response = hook.run(endpoint, headers=headers, extra_options={"check_response": False}, **kwargs)
        payload = response.json()
        error = payload.get("error") if isinstance(payload, dict) else None
        if response.status_code == 429 or (isinstance(error, dict) and error.get("code") in THROTTLE_CODES):
            raise Throttled(str(error))
        response.raise_for_status()
        return payload  # type: ignore[no-any-return]

    def onboard(cc: str, number: str) -> str:
        if not number:  # warm-up: imports, connection lookup
            return str(send("GET", f"v26.0/{WABA_ID}", data={"fields": "id"})["id"])
        body = {"cc": cc, "phone_number": number, "verified_name": "Bench Co"}
        created = tenacity.Retrying(**retry_args)(send, "POST", f"v26.0/{WABA_ID}/phone_numbers", json=body)
        node_id = str(created["id"])
        read = tenacity.Retrying(**retry_args)(
            send, "GET", f"v26.0/{node_id}", data={"fields": "id,display_phone_number"}
        )
        if read.get("id") != node_id or not str(read.get("display_phone_number", "")).endswith(number[-4:]):
            raise AssertionError(f"read back {read!r} for {node_id}")
        return node_id

    return onboard


def _one(
    result: Result, label: str, make: Callable[..., Callable[[str, str], str]], numbers: int, limit: int, window: float
) -> dict[str, Any]:
    with SandboxProcess(rate_limit=limit, rate_window=window) as sandbox:
        airflow_environment(sandbox.conn_json)
        os.environ["AIRFLOW_CONN_HTTP_SANDBOX"] = json.dumps({"conn_type": "http", "host": sandbox.url})
        clock = SandboxTime(sandbox)
        onboard = make(sandbox, clock, window)
        onboard("1", "")
        start = clock.to_window_start(window)
        ids: list[str] = []
        failures: list[str] = []
        pair_seconds: list[float] = []
        for index in range(numbers):
            number = f"555{index:07d}"
            began = clock.now()
            try:
                ids.append(onboard("1", number))
            except Exception as error:  # the figure counts them; the check below fails the run
                failures.append(f"{number}: {type(error).__name__}: {str(error)[:200]}")
            pair_seconds.append(clock.now() - began)
        wall = clock.now() - start
        stats = sandbox.stats()
    calls = 2 * numbers
    windows = math.ceil(calls / limit)
    # Unthrottled time per call (create + read back), from the run's own first window.
    per_pair = median(pair_seconds[: max(1, limit // 2 - 1)])
    floor = (windows - 1) * window + (calls - (windows - 1) * limit) / 2 * per_pair
    rejected = stats["rejected_call_times"]
    over = [count for _, _, count in stats["calls_per_window"] if count > limit]
    result.check(len(set(ids)) == numbers - len(failures), f"{label}: duplicate ids")
    sandbox_numbers = {(n["cc"], n["phone_number"]) for n in stats["numbers"]}
    result.check(len(sandbox_numbers) == len(stats["numbers"]), f"{label}: the sandbox holds a number twice")
    result.check(not over, f"{label}: a window served more than {limit} calls")
    # The sandbox counts refused calls per WABA; every refusal must be one of the WABA's (80008).
    result.check(sum(stats["rejected_calls_by_waba"].values()) == len(rejected), f"{label}: refused by the app limit")
    return {
        "wall": wall,
        "floor": floor,
        "rejected": len(rejected),
        "failures": failures,
        "numbers": len(stats["numbers"]),
    }


def run(quick: bool = False) -> Result:
    result = Result(NAME)
    numbers, limit, window = (20, 15, REAL_WINDOW) if quick else (300, 60, REAL_WINDOW)
    airflow_environment()
    runs = {
        "our hook": _one(result, "our hook", _ours, numbers, limit, window),
        "HttpHook + tenacity": _one(result, "HttpHook + tenacity", _http_operator_style, numbers, limit, window),
    }
    for label, measured in runs.items():
        ratio = measured["wall"] / measured["floor"]
        ours = label == "our hook"
        result.add(
            f"{label}: wall time",
            measured["wall"],
            "s",
            baseline=f"minimum the limit allows ({measured['floor']:.1f} s)",
            ratio=ratio,
            target=f"<= {TARGET}x minimum" if ours else "",
            met=ratio <= TARGET if ours else None,
        )
        result.add(
            f"{label}: calls rejected (80008)",
            measured["rejected"],
            "calls",
            target="0" if ours else "",
            met=measured["rejected"] == 0 if ours else None,
        )
        result.add(
            f"{label}: failed onboardings",
            len(measured["failures"]),
            "numbers",
            target="0" if ours else "",
            met=not measured["failures"] if ours else None,
        )
        if ours:
            result.check(not measured["failures"], f"our hook failed: {measured['failures'][:3]}")
            result.check(measured["numbers"] == numbers, f"our hook left {measured['numbers']} numbers, not {numbers}")
        else:
            result.notes.append(f"{label}: first failures: {measured['failures'][:2]}" if measured["failures"] else "")
    result.notes = [note for note in result.notes if note]
    result.notes.append(
        f"{numbers} numbers = {2 * numbers} calls; limit {limit} calls per {window:g} s window; "
        "regain times in whole minutes; durations on the sandbox clock (waits advance it)"
    )
    return result


if __name__ == "__main__":
    run_from_command_line(run, __doc__)
