"""Numbers through the bulk example DAG against a sandbox whose per-WABA budget runs out mid-run:
no task fails, once the usage headers said 100 % no call went past the limit, and the hook waited
the regain time Graph announced.

The window is two minutes: the sandbox announces whole minutes until it ends (one or two), and the
connection's own fixed pause for a spent budget that announced nothing (``exhausted_wait``) is a few
seconds, so a hook that paused that instead would call again inside the spent window and be
refused. The budget is small enough to run out in the first window even on a loaded machine, and
large enough that the run needs only one wait."""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any

from tests.reliability.duplicates import duplicates

NUMBERS = int(os.environ.get("WHATSAPP_LOAD_NUMBERS", "20"))
LIMIT = int(os.environ.get("WHATSAPP_LOAD_LIMIT", "60"))
WINDOW = float(os.environ.get("WHATSAPP_LOAD_WINDOW", "120.0"))
# Far from any regain time Graph announces (whole minutes).
EXHAUSTED_WAIT = 5.0
PIN = "418205"
# The sandbox's clock and the hook's read the same time a few milliseconds apart.
CLOCK_SLACK = 1.0


def test_bulk_onboarding_under_a_tight_rate_limit(
    whatsapp_sandbox_factory: Any, monkeypatch: Any, run_dag: Any, tally: Counter[str]
) -> None:
    sandbox = whatsapp_sandbox_factory(
        rate_limit=LIMIT, rate_window=WINDOW, connect_delay=0.0, code_request_cooldown=0.0
    )
    # No hold between 90 and 100 %: the run waits only for the regain time announced at 100 %.
    extras = {"slowdown_wait": 0.0, "exhausted_wait": EXHAUSTED_WAIT}
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json(extras))
    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN", PIN)
    numbers = [
        {"cc": "1", "phone_number": f"555{index:07d}", "verified_name": f"Acme Load {index}"}
        for index in range(NUMBERS)
    ]
    result = run_dag("example_whatsapp_bulk_onboarding", {"numbers": numbers})

    report = result.xcom("report")
    windows = sandbox.calls_per_window
    onboarded = [n for n in sandbox.numbers() if sandbox.register_calls(n["id"]) >= 1]
    tally["load: numbers onboarded"] += len(onboarded)
    tally["load: full windows"] += sum(1 for count in windows.values() if count == LIMIT)
    tally["load: calls past the limit"] += sandbox.rejected_calls
    tally["duplicates found"] += duplicates(sandbox)

    # Nothing to resume on a first run: only the resume groups, which map over nothing, are skipped.
    failed = {
        key: state
        for key, state in result.task_states.items()
        if state != "success" and not (state == "skipped" and key[0].startswith("resume_at_"))
    }
    assert failed == {}, f"{len(failed)} tasks did not succeed: {sorted(failed.items())[:10]}"
    assert report["counts"] == {"onboarded": NUMBERS}
    assert len(sandbox.numbers()) == len(onboarded) == NUMBERS
    assert {entry["phone_number_id"] for entry in report["numbers"]} == {n["id"] for n in onboarded}
    # Four calls a number and the WABA's one list read; the report trusts the run's own answers.
    assert len(sandbox.requests) == 4 * NUMBERS + 1
    # The limit was really reached (the pacing was exercised), and never crossed.
    assert max(windows.values()) == LIMIT, windows
    assert sandbox.rejected_calls == 0, f"{sandbox.rejected_calls} calls went past the limit"
    assert duplicates(sandbox) == 0
    # The pause after the call that spent the budget is the regain time the sandbox announced in
    # its answer (whole minutes until its window ends), not the connection's fixed pause.
    origin = sandbox.rate_window_origin
    spent_window = min(index for (_waba, index), count in windows.items() if count == LIMIT)
    window_end = origin + WINDOW * (spent_window + 1)
    times = sorted(request.time for request in sandbox.requests)
    spent_at = max(time for time in times if time < window_end)
    next_at = min(time for time in times if time > spent_at)
    announced = 60.0 * math.ceil((window_end - spent_at - CLOCK_SLACK) / 60.0)
    tally["load: seconds waited for the announced regain time"] += round(next_at - spent_at)
    assert announced >= 60.0 > EXHAUSTED_WAIT
    assert next_at - spent_at >= announced - CLOCK_SLACK, (next_at - spent_at, announced)
