"""Rate limits across the deployment: every task process and the triggerer share one view of a
WABA's budget (the Variables store), and budget waits defer rather than sleep.

Run on the shared LocalExecutor deployment, after the deployment test (file order: that test
expects the sandbox to hold only its own numbers). The scenario: the bulk DAG onboards 24 numbers
of a WABA in the triggerer while eight mapped create tasks, each in a process of its own, started
once the bulk run is sending, create numbers on the same WABA, first on a WABA without a budget
(the run's work without throttling), then on one whose budget is 30 calls a minute. The shared
store is the Variables one (``[whatsapp] budget_store = airflow`` in the deployment). The Celery
deployment's test (tests/e2e/test_celery_deployment.py) runs the same scenario with the Redis store.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from benchmarks.bench_throughput import least_time
from devtools.budget_scenario import CONTENTION, deferrals, run_scenario
from tests.e2e.shared_deployment import BUDGETS_CONN_ID, DEFER_WAIT_OVER, RATE_WINDOW, Deployment

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(1200)]

BUDGET = 30
BULK_NUMBERS = 24
CREATES = 8
RUN_TIMEOUT = 600.0


def run_on(deployment: Deployment, waba: str, series: int) -> dict[str, Any]:
    """The scenario on ``waba``: the bulk run's numbers and the mapped creates all there."""
    rows = [
        {"cc": "1", "phone_number": f"555{series}2{i:04d}", "verified_name": f"Budget Bulk {i}", "waba_id": waba}
        for i in range(BULK_NUMBERS)
    ]
    creates = [f"555{series}3{i:04d}" for i in range(CREATES)]
    outcome = run_scenario(deployment.airflow, deployment.sandbox, rows, creates, waba, BUDGETS_CONN_ID, RUN_TIMEOUT)
    outcome["calls"] = [r for r in outcome["calls"] if r.waba_id == waba]
    return {**outcome, "rows": rows, "creates": creates}


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
    free = run_on(deployment, sandbox.add_waba(name="Acme Budget Free"), 1)
    check_every_number_once(deployment, free)

    waba = sandbox.add_waba(name="Acme Budget Bound", rate_limit=BUDGET)
    rejected_before = sandbox.rejected_calls_by_waba().get(waba, 0)
    bound = run_on(deployment, waba, 2)
    check_every_number_once(deployment, bound)
    refused = sandbox.rejected_calls_by_waba().get(waba, 0) - rejected_before
    served = [r for r in bound["calls"] if r.status == 200]
    times = [r.time for r in free["calls"] if r.status == 200]
    per_call = (max(times) - min(times)) / len(times)
    least, measured = least_time(sandbox, [waba], BUDGET, RATE_WINDOW, per_call)
    deferred = deferrals(deployment.airflow, CONTENTION, bound["runs"][CONTENTION])
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
