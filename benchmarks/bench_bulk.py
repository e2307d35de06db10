"""Benchmark 5, bulk DAG throughput: the bulk example DAG onboarding 200 numbers in a real
deployment (the one the deployment test starts: API server, scheduler, dag-processor and
triggerer as separate processes, LocalExecutor, PostgreSQL), against the same DAG whose tasks make
no Graph calls.

The baseline DAG has the bulk DAG's shape exactly (a task listing the numbers, a mapped task group
of create -> request code -> verify -> register passing the ID by XCom, a report) but its tasks
only hand the ID on. Both run in the same deployment, one after the other, against the same
sandbox; the figures are the run's wall time and each task's duration and queueing delay as
Airflow recorded them, and their ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, Result, emit

NAME = "5. bulk DAG throughput"
BULK = "example_whatsapp_bulk_onboarding"
BASELINE = "bench_bulk_onboarding_no_graph_calls"
# Graph's budget is counted in calls: the four state-changing calls per number are the floor.
CALLS_PER_NUMBER_TARGET = 4.05
PIN = "246810"
# Bounds the wait for one run; 200 numbers take a few minutes here.
RUN_TIMEOUT = 1800.0
# What a task of the bulk DAG loads that a plain @task does not: the hook, and its connection.
# Printed: the CPU seconds of importing airflow.sdk, then of the hook on top of it.
CPU_PROBE = (
    "import time; start = time.process_time(); import airflow.sdk; sdk = time.process_time() - start; "
    "from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook; WhatsAppBusinessHook().settings; "
    "print(sdk, time.process_time() - start - sdk)"
)

BASELINE_DAG = textwrap.dedent(
    '''
    """The bulk onboarding DAG's shape with no Graph calls: each step hands the ID on."""

    from __future__ import annotations

    from datetime import datetime
    from typing import Any

    from airflow.sdk import DAG, Param, task, task_group

    with DAG(
        dag_id="BASELINE_ID",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_tasks=16,
        params={"numbers": Param([], type="array")},
    ) as dag:

        @task
        def numbers_to_onboard(params: dict[str, Any]) -> list[dict[str, Any]]:
            return [{**number, "start": "create_phone_number"} for number in params["numbers"]]

        @task
        def starting_at(numbers: list[dict[str, Any]], step: str) -> list[dict[str, Any]]:
            keys = ("cc", "phone_number", "verified_name") if step == "create_phone_number" else ("phone_number_id",)
            return [{key: n.get(key) for key in keys} for n in numbers if n["start"] == step]

        @task
        def request_code(phone_number_id: str) -> str:
            return phone_number_id

        @task
        def verify_code(phone_number_id: str) -> str:
            return phone_number_id

        @task
        def register(phone_number_id: str) -> str:
            return phone_number_id

        @task_group(group_id="onboard")
        def onboard(cc: str, phone_number: str, verified_name: str) -> None:
            @task
            def create_phone_number(cc: str, phone_number: str, verified_name: str) -> str:
                return f"{cc}{phone_number}"

            register(verify_code(request_code(create_phone_number(cc, phone_number, verified_name))))

        @task_group(group_id="resume_at_code")
        def resume_at_code(phone_number_id: str) -> None:
            register(verify_code(request_code(phone_number_id)))

        @task_group(group_id="resume_at_register")
        def resume_at_register(phone_number_id: str) -> None:
            register(phone_number_id)

        numbers = numbers_to_onboard()
        onboarding = [
            group.expand_kwargs(starting_at.override(task_id=f"start_{group_id}")(numbers, step))
            for step, group, group_id in (
                ("create_phone_number", onboard, "onboard"),
                ("request_code", resume_at_code, "resume_at_code"),
                ("register", resume_at_register, "resume_at_register"),
            )
        ]

        @task(trigger_rule="all_done")
        def report(numbers: list[dict[str, Any]], ti: Any = None) -> dict[str, Any]:
            ids = [ti.xcom_pull(task_ids="onboard.register", map_indexes=index) for index in range(len(numbers))]
            entries = [{"outcome": "onboarded", "phone_number_id": number_id} for number_id in ids]
            return {"counts": {"onboarded": len(entries)}, "numbers": entries}

        onboarding >> report(numbers)
    '''
).replace("BASELINE_ID", BASELINE)


def _numbers(count: int) -> list[dict[str, str]]:
    return [{"cc": "1", "phone_number": f"555{index:07d}", "verified_name": f"Bench {index}"} for index in range(count)]


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _run(airflow: Any, dag_id: str, numbers: list[dict[str, str]], result: Result) -> dict[str, Any]:
    """Trigger one run, wait for it, and read back what Airflow recorded about it."""
    from tests.e2e.test_deployment import xcom

    run = airflow.trigger(dag_id, conf={"numbers": numbers})
    run_id = run["dag_run_id"]
    state = airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    result.check(state == "success", f"{dag_id} run ended {state}; logs: {airflow.where_to_look()}")
    details = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
    instances = airflow.task_instances(dag_id, run_id)
    steps = [ti for ti in instances if ti["task_id"].startswith("onboard.")]
    result.check(len(steps) == 4 * len(numbers), f"{dag_id}: {len(steps)} mapped tasks, wanted {4 * len(numbers)}")
    # The groups that resume half-onboarded numbers map over nothing on a first run: skipped.
    result.check(all(ti["state"] in ("success", "skipped") for ti in instances), f"{dag_id}: not every task succeeded")
    durations = [d for ti in steps if (d := _seconds(ti.get("start_date"), ti.get("end_date"))) is not None]
    queued = [d for ti in steps if (d := _seconds(ti.get("queued_when"), ti.get("start_date"))) is not None]
    report = xcom(airflow, dag_id, run_id, "report")
    entries = report.get("numbers", []) if isinstance(report, dict) else []
    succeeded = [entry for entry in entries if entry.get("outcome") == "onboarded"]
    result.check(len(succeeded) == len(numbers), f"{dag_id}: report lists {len(succeeded)} of {len(numbers)}")
    return {
        "wall": _seconds(details.get("start_date"), details.get("end_date")) or float("nan"),
        "task": statistics.median(durations) if durations else float("nan"),
        "queued": statistics.median(queued) if queued else float("nan"),
        "tasks": len(instances),
        "ids": [entry.get("phone_number_id") for entry in succeeded],
    }


def _round_trips(sandbox: Any, count: int) -> list[float]:
    """Seconds per Graph call to the sandbox, read from a client in this process (loopback HTTP)."""
    import time

    import requests

    number_id = sandbox.numbers()[0]["id"]
    headers = {"Authorization": f"Bearer {sandbox.token}"}
    times = []
    with requests.Session() as session:
        for _ in range(count):
            start = time.perf_counter()
            response = session.get(f"{sandbox.url}/v26.0/{number_id}", headers=headers, timeout=30)
            times.append(time.perf_counter() - start)
            response.raise_for_status()
    return times


def _hook_cpu(conn_json: str, runs: int, result: Result) -> tuple[float, float]:
    """Median CPU seconds, in fresh interpreters, of ``import airflow.sdk`` and of the hook on top."""
    home = tempfile.mkdtemp(prefix="whatsapp-bench-probe-")
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")},
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_WHATSAPP_DEFAULT": conn_json,
    }
    sdk, hook = [], []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", CPU_PROBE], env=env, capture_output=True, text=True, timeout=120)
        result.check(done.returncode == 0, f"CPU probe failed: {done.stderr[-400:]}")
        if done.returncode == 0:
            first, second = done.stdout.split()[-2:]
            sdk.append(float(first))
            hook.append(float(second))
    return statistics.median(sdk or [float("nan")]), statistics.median(hook or [float("nan")])


def run(quick: bool = False, numbers_count: int | None = None) -> Result:
    from airflow_provider_whatsapp.sandbox import GraphSandbox
    from devtools.airflow_deployment import AirflowDeployment

    result = Result(NAME)
    count = numbers_count or (5 if quick else 200)
    numbers = _numbers(count)
    dags = Path(tempfile.mkdtemp(prefix="whatsapp-bench-dags-"))
    for name in (f"{BULK}.py", "whatsapp_bulk_numbers.csv"):
        (dags / name).symlink_to(REPO / "dags" / name)
    (dags / f"{BASELINE}.py").write_text(BASELINE_DAG)
    with GraphSandbox(code_request_cooldown=0.0) as sandbox:
        env = {"AIRFLOW_CONN_WHATSAPP_DEFAULT": sandbox.airflow_conn_json(), "AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN": PIN}
        with AirflowDeployment(env=env, dags_folder=dags) as airflow:
            result.notes.append(
                f"{count} numbers, {4 * count + 9} tasks per run (4 of them skipped); LocalExecutor with parallelism "
                f"{airflow.parallelism}, max_active_tasks 16; metadata database {airflow.database}"
            )
            # The baseline first: any warm-up (DAG parsing, first connections) is charged to it.
            base = _run(airflow, BASELINE, numbers, result)
            ours = _run(airflow, BULK, numbers, result)
        ids = {n["id"] for n in sandbox.numbers()}
        graph_calls = len(sandbox.requests)
        registered = [number_id for number_id in ids if sandbox.register_calls(number_id) == 1]
        # Measured after the runs, with the deployment stopped.
        round_trips = _round_trips(sandbox, 20 if quick else 200)
        sdk_cpu, hook_cpu = _hook_cpu(sandbox.airflow_conn_json(), 1 if quick else 5, result)
        parallelism = airflow.parallelism
    result.check(len(ids) == count, f"the sandbox holds {len(ids)} numbers, wanted {count}")
    result.check(set(ours["ids"]) == ids, "the report's IDs are not the sandbox's numbers")
    result.check(len(registered) == count, f"{len(registered)} of {count} numbers registered exactly once")
    result.add(
        "wall time, bulk DAG", ours["wall"], "s", baseline="same DAG, no Graph calls", ratio=ours["wall"] / base["wall"]
    )
    result.add("wall time, baseline DAG", base["wall"], "s", baseline="same DAG, no Graph calls", ratio=1.0)
    result.add(
        "median task duration",
        ours["task"],
        "s",
        baseline="baseline's median task",
        ratio=ours["task"] / base["task"],
    )
    result.add(
        "median queued-to-start per task",
        ours["queued"],
        "s",
        baseline="baseline's",
        ratio=ours["queued"] / base["queued"],
    )
    result.add(
        "tasks per second",
        ours["tasks"] / ours["wall"],
        "tasks/s",
        baseline="baseline's",
        ratio=base["wall"] / ours["wall"],
    )
    per_number = graph_calls / count
    calls = result.add(
        "Graph calls per onboarded number",
        per_number,
        "calls/number",
        baseline="the 4 state-changing calls (create, request code, verify, register); "
        "the run adds one list read of the WABA",
        ratio=per_number / 4,
    )
    calls.target, calls.met = f"<= {CALLS_PER_NUMBER_TARGET} calls", per_number <= CALLS_PER_NUMBER_TARGET
    round_trip = statistics.median(round_trips)
    result.add("Graph call round trip to the sandbox", round_trip * 1000, "ms")
    result.add(
        "task process: CPU to import the hook and read its connection",
        hook_cpu * 1000,
        "ms",
        baseline="import airflow.sdk, which a plain @task loads too",
        ratio=hook_cpu / sdk_cpu,
    )
    result.notes.append(
        f"where a task's extra time goes: a Graph call to the sandbox took {round_trip * 1000:.1f} ms "
        f"(median of {len(round_trips)}, measured after the runs); importing the hook and reading its connection "
        f"took {hook_cpu * 1000:.0f} ms of CPU in a fresh interpreter beyond the {sdk_cpu * 1000:.0f} ms of "
        f"import airflow.sdk (median of {1 if quick else 5}, measured after the runs); during the runs "
        f"up to {parallelism} task processes, the scheduler, the API server and the database shared "
        f"{os.cpu_count()} cores"
    )
    result.notes.append(
        f"baseline: {base['wall']:.1f} s wall, median task {base['task'] * 1000:.0f} ms, "
        f"median queued-to-start {base['queued'] * 1000:.0f} ms; the Graph calls add "
        f"{(ours['task'] - base['task']) * 1000:.0f} ms to the median task"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--numbers", type=int, default=None, help="how many numbers (default 200, quick 5)")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    emit(run(args.quick, args.numbers))


if __name__ == "__main__":
    main()
