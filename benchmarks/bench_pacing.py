"""Benchmark 2, rate-limit pacing: onboard numbers (create + read back) under a call limit.

The sandbox enforces ``limit`` calls per fixed window of ``window`` seconds (Graph's hourly limit,
scaled down so a run takes about a minute). Two clients onboard the same numbers, each against a
fresh sandbox, starting at a window boundary:

* our hook, whose policy time constants are scaled by the same factor as the window
  (``slowdown_wait`` 1 s and ``exhausted_wait`` 60 s per real hour);
* what an ``HttpOperator`` user writes: ``HttpHook.run_with_advanced_retry`` with tenacity,
  retrying on HTTP 429 or Graph codes 4/17/32/613/80007 with exponential backoff from 1 minute
  up to one window (again scaled), at most 10 attempts per call.

The floor is what the limit allows: every full window but the last spent waiting, plus the last
window's calls at the client's unthrottled speed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import WABA_ID, Result, SandboxProcess, airflow_environment, emit, median

NAME = "2. rate-limit pacing"
TARGET = 1.10
REAL_WINDOW = 3600.0
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80007})


class Throttled(Exception):
    """Graph said "rate limit": the baseline's cue to back off and retry."""


def _wait_for_window_start(sandbox: SandboxProcess, window: float) -> float:
    stats = sandbox.stats()
    elapsed = stats["clock_now"] - stats["window_origin"]
    boundary = stats["window_origin"] + (math.floor(elapsed / window) + 1) * window
    # The sandbox clock is this machine's monotonic clock (no advance in benchmarks).
    time.sleep(max(0.0, boundary - time.monotonic()) + 0.002)
    return boundary


def _ours(sandbox: SandboxProcess, window: float) -> Callable[[str, str], str]:
    from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

    scale = window / REAL_WINDOW
    policy = GraphRetryPolicy(slowdown_wait=1.0 * scale, exhausted_wait=60.0 * scale, backoff_initial=1.0 * scale)
    hook = WhatsAppBusinessHook(retry_policy=policy)

    def onboard(cc: str, number: str) -> str:
        if not number:  # warm-up: connection, imports, settings
            return str(hook.call("GET", WABA_ID, params={"fields": "id"})["id"])
        node_id = str(hook.create_phone_number(WABA_ID, cc, number, verified_name="Bench Co")["id"])
        read = hook.get_phone_number(node_id, fields="id,display_phone_number")
        if read.get("id") != node_id or not str(read.get("display_phone_number", "")).endswith(number[-4:]):
            raise AssertionError(f"read back {read!r} for {node_id}")
        return node_id

    return onboard


def _http_operator_style(sandbox: SandboxProcess, window: float) -> Callable[[str, str], str]:
    import tenacity
    from airflow.providers.http.hooks.http import HttpHook

    scale = window / REAL_WINDOW
    headers = {"Authorization": f"Bearer {sandbox.token}", "Accept": "application/json"}
    retry_args = {
        "retry": tenacity.retry_if_exception_type(Throttled),
        "wait": tenacity.wait_exponential(multiplier=60.0 * scale, min=60.0 * scale, max=window),
        "stop": tenacity.stop_after_attempt(10),
        "reraise": True,
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
        onboard = make(sandbox, window)
        onboard("1", "")
        start = _wait_for_window_start(sandbox, window)
        ids: list[str] = []
        failures: list[str] = []
        pair_seconds: list[float] = []
        for index in range(numbers):
            number = f"555{index:07d}"
            began = time.monotonic()
            try:
                ids.append(onboard("1", number))
            except Exception as error:  # the figure counts them; the check below fails the run
                failures.append(f"{number}: {type(error).__name__}: {str(error)[:200]}")
            pair_seconds.append(time.monotonic() - began)
        wall = time.monotonic() - start
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
    return {
        "wall": wall,
        "floor": floor,
        "rejected": len(rejected),
        "failures": failures,
        "numbers": len(stats["numbers"]),
    }


def run(quick: bool = False) -> Result:
    result = Result(NAME)
    numbers, limit, window = (20, 15, 1.0) if quick else (300, 60, 6.0)
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
            f"{label}: calls rejected (80007)",
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
        f"{numbers} numbers = {2 * numbers} calls; limit {limit} calls per {window:g} s window "
        f"(Graph's hour scaled by {window / REAL_WINDOW:.5f})"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    emit(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
