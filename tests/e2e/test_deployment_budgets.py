"""Rate limits across the deployment: every task process and the triggerer share one view of a
WABA's budget (the Variables store, the default), and budget waits defer rather than sleep.

Run on the shared LocalExecutor deployment, after the deployment test (file order: that test
expects the sandbox to hold only its own numbers). The scenario: the bulk DAG onboards 24 numbers
of a WABA in the triggerer while eight mapped create tasks, each in a process of its own, started
once the bulk run is sending, create numbers on the same WABA, first on a WABA without a budget
(the run's work without throttling), then on one whose budget is 30 calls a minute. The shared
store is the Variables one (``[whatsapp] budget_store = airflow`` in the deployment). The Celery
deployment's test (tests/e2e/test_celery_deployment.py) runs the same scenario with the Redis store.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_throughput import least_time
from devtools.airflow_deployment import wait_until
from tests.e2e.shared_deployment import BUDGETS_CONN_ID, DEFER_WAIT_OVER, RATE_WINDOW, Deployment
from tests.e2e.test_deployment import xcom

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(1200)]

BULK = "example_whatsapp_bulk_onboarding"
CONTENTION = "e2e_budget_contention"
BUDGET = 30
BULK_NUMBERS = 24
CREATES = 8
RUN_TIMEOUT = 600.0


def run_scenario(deployment: Deployment, waba: str, series: int) -> dict[str, Any]:
    """Trigger both DAGs on ``waba`` at once; wait for both, counting the worker slot-seconds
    their task instances held."""
    airflow, sandbox = deployment.airflow, deployment.sandbox
    calls_before = len(sandbox.requests)
    rows = [
        {"cc": "1", "phone_number": f"555{series}2{i:04d}", "verified_name": f"Budget Bulk {i}", "waba_id": waba}
        for i in range(BULK_NUMBERS)
    ]
    creates = [f"555{series}3{i:04d}" for i in range(CREATES)]
    started = time.monotonic()
    runs = {BULK: airflow.trigger(BULK, {"numbers": rows})["dag_run_id"]}
    # The task processes start once the triggerer is spending the WABA's budget: they meet a
    # budget in use, not one they open alone while the bulk run is still starting.
    wait_until(
        lambda: [r for r in sandbox.requests[calls_before:] if r.waba_id == waba and r.method == "POST"],
        RUN_TIMEOUT,
        "the bulk run's first call on the WABA",
    )
    runs[CONTENTION] = airflow.trigger(
        CONTENTION, {"waba_id": waba, "numbers": creates, "whatsapp_conn_id": BUDGETS_CONN_ID}
    )["dag_run_id"]
    states, slot_seconds = airflow.wait_holding_slots(runs, RUN_TIMEOUT)
    assert states == {BULK: "success", CONTENTION: "success"}, airflow.where_to_look()
    calls = [r for r in sandbox.requests[calls_before:] if r.waba_id == waba]
    instances = {dag_id: airflow.task_instances(dag_id, run_id) for dag_id, run_id in runs.items()}
    return {
        "runs": runs,
        "wall": time.monotonic() - started,
        "slot_seconds": slot_seconds,
        "calls": calls,
        "creates": creates,
        "rows": rows,
        "instances": instances,
        "report": xcom(airflow, BULK, runs[BULK], "report"),
    }


def deferrals(deployment: Deployment, dag_id: str, run_id: str) -> list[str]:
    """The log lines of the run's tasks saying they deferred a budget wait."""
    folder = deployment.airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    return [
        line
        for path in sorted(Path(folder).rglob("attempt=*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if "Deferring for" in line
    ]


def check_every_number_once(deployment: Deployment, outcome: dict[str, Any]) -> None:
    sandbox = deployment.sandbox
    report = outcome["report"]
    assert report["counts"] == {"onboarded": BULK_NUMBERS}, report["counts"]
    onboarded = [entry["phone_number_id"] for entry in report["numbers"]]
    assert all(sandbox.register_calls(number_id) == 1 for number_id in onboarded)
    states = Counter((ti["task_id"], ti["state"], ti["try_number"]) for ti in outcome["instances"][CONTENTION])
    # Every create succeeded on its first try: a deferred budget wait spends no retry.
    assert states == {("numbers_to_create", "success", 1): 1, ("create_phone_number", "success", 1): CREATES}, states
    on_graph = Counter("".join(filter(str.isdigit, n["display_phone_number"])) for n in sandbox.numbers())
    for number in [row["phone_number"] for row in outcome["rows"]] + outcome["creates"]:
        assert on_graph[f"1{number}"] == 1, number


def test_one_budget_view_for_task_processes_and_the_triggerer(
    deployment: Deployment, distributed_tally: dict[str, Any]
) -> None:
    check_one_budget_view(deployment, "LocalExecutor, Variables store", distributed_tally)


def check_one_budget_view(deployment: Deployment, label: str, tally: dict[str, Any]) -> str:
    """Run the scenario on a WABA without a budget, then on one with, and check the second's calls
    against the budget; the figures go to the tally under ``label``, and are returned."""
    sandbox = deployment.sandbox
    free = run_scenario(deployment, sandbox.add_waba(name="Acme Budget Free"), 1)
    check_every_number_once(deployment, free)

    waba = sandbox.add_waba(name="Acme Budget Bound", rate_limit=BUDGET)
    rejected_before = sandbox.rejected_calls_by_waba().get(waba, 0)
    bound = run_scenario(deployment, waba, 2)
    check_every_number_once(deployment, bound)
    refused = sandbox.rejected_calls_by_waba().get(waba, 0) - rejected_before
    served = [r for r in bound["calls"] if r.status == 200]
    times = [r.time for r in free["calls"] if r.status == 200]
    per_call = (max(times) - min(times)) / len(times)
    least, measured = least_time(sandbox, [waba], BUDGET, RATE_WINDOW, per_call)
    deferred = deferrals(deployment, CONTENTION, bound["runs"][CONTENTION])
    figures = (
        f"budget {BUDGET} calls per {RATE_WINDOW:.0f} s: {len(served)} calls served, {refused} refused; "
        f"first to last call {measured:.1f} s, least the budget allows {least:.1f} s ({measured / least:.2f}x); "
        f"runs {bound['wall']:.1f} s wall; worker slot-seconds {bound['slot_seconds']:.1f} against "
        f"{free['slot_seconds']:.1f} without a budget ({bound['slot_seconds'] / free['slot_seconds']:.2f}x, "
        f"that run {free['wall']:.1f} s); {len(deferred)} budget waits deferred (over {DEFER_WAIT_OVER} s)"
    )
    # The time figures are shown, not asserted: on a shared machine they measure its load too.
    tally[f"budgets shared by task processes and triggerers ({label})"] = figures
    print(f"\n{figures}")
    assert refused == 0, [(r.method, r.path, r.status) for r in bound["calls"] if r.status != 200]
    assert len(served) == len(bound["calls"]), [(r.method, r.path, r.status) for r in bound["calls"] if r.status != 200]
    assert len(served) > 3 * BUDGET, "the budget did not bind"
    # The tasks that met the spent budget waited in the triggerer, not in their worker slots.
    assert deferred, "no budget wait was deferred"
    return figures
