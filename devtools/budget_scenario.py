"""Task processes and the triggerer on the same budgets: the scenario the budgets deployment tests
(tests/e2e/test_deployment_budgets.py, tests/e2e/test_celery_deployment.py) and benchmark 8
(benchmarks/bench_deployment_budgets.py) run on a real deployment.

The bulk DAG onboards its rows in the triggerer; once it is sending on the WABA the creates are
for, the e2e tests' contention DAG (tests/e2e/dags) creates numbers there in mapped tasks, each in
a process of its own. Both runs are waited for while the worker slot-seconds their task
instances hold are counted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_provider_whatsapp.sandbox import GraphSandbox
from devtools.airflow_deployment import AirflowDeployment, wait_until

BULK = "example_whatsapp_bulk_onboarding"
CONTENTION = "e2e_budget_contention"


def run_scenario(
    airflow: AirflowDeployment,
    sandbox: GraphSandbox,
    rows: Sequence[Mapping[str, Any]],
    creates: Sequence[str],
    creates_waba: str,
    conn_id: str,
    timeout: float,
) -> dict[str, Any]:
    """Trigger the bulk run of ``rows``, then, once it sends on ``creates_waba``, the mapped
    creates of ``creates`` there on ``conn_id``; wait for both.

    :return: the run IDs (``runs``), ``wall`` from the first trigger to the end, the worker
        ``slot_seconds``, the sandbox's ``calls`` meanwhile, the task ``instances`` of each run and
        the bulk run's ``report``.
    """
    calls_before = len(sandbox.requests)
    started = time.monotonic()
    runs = {BULK: airflow.trigger(BULK, {"numbers": list(rows)})["dag_run_id"]}
    # The task processes start once the triggerer is spending the WABA's budget: they meet a
    # budget in use, not one they open alone while the bulk run is still starting.
    wait_until(
        lambda: [r for r in sandbox.requests[calls_before:] if r.waba_id == creates_waba and r.method == "POST"],
        timeout,
        "the bulk run's first call on the WABA",
    )
    runs[CONTENTION] = airflow.trigger(
        CONTENTION, {"waba_id": creates_waba, "numbers": list(creates), "whatsapp_conn_id": conn_id}
    )["dag_run_id"]
    states, slot_seconds = airflow.wait_holding_slots(runs, timeout)
    if states != {BULK: "success", CONTENTION: "success"}:
        raise AssertionError(f"the runs ended {states}; where to look: {airflow.where_to_look()}")
    return {
        "runs": runs,
        "wall": time.monotonic() - started,
        "slot_seconds": slot_seconds,
        "calls": sandbox.requests[calls_before:],
        "instances": {dag_id: airflow.task_instances(dag_id, run_id) for dag_id, run_id in runs.items()},
        "report": airflow.return_value(BULK, runs[BULK], "report"),
    }


def deferrals(airflow: AirflowDeployment, dag_id: str, run_id: str) -> list[str]:
    """The log lines of the run's tasks saying they deferred a budget wait."""
    folder = airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    return [
        line
        for path in sorted(Path(folder).rglob("attempt=*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if "Deferring for" in line
    ]
