"""The provider on a distributed Airflow 3.3: CeleryExecutor on Redis, two Celery workers, two
triggerers, PostgreSQL, and the Graph sandbox serving three WABAs; faults while the DAGs run.

Driven through the REST API only: 20 runs of the onboarding DAG (its steps on the workers, its
status wait in a triggerer) and one bulk run of 60 numbers on 2 WABAs (its batch onboarded in a
triggerer), both DAGs as shipped (every task retries; the deployment's cluster policy only
shortens the retry delay). The connection and the PIN come from Airflow's local-filesystem
secrets backend. While they run:

- a Celery worker is SIGKILLed (with its tasks) after Graph applied a create of an onboarding run
  whose answer the sandbox holds back; the scheduler fails the orphaned try and the retry, on the
  other worker, adopts the number; the killed worker then comes back;
- Redis (the broker) is restarted;
- the budget store (a Redis of its own) goes down while a worker's retry runs, and comes back;
- Graph refuses connections for 20 s;
- with the bulk run's batch waiting on a create Graph applied and the 20 status sensors deferred
  on one triggerer (the other was restarted gracefully and handed its triggers over first), that
  triggerer is SIGKILLed; the other takes them over, and the batch, planned again from what Graph
  holds, continues the number its create left.

Then everything is counted by what Graph saw and what Airflow says, and a tally is printed. Every
task and trigger shares the budgets through a Redis of their own (``[whatsapp] budget_store``; a
deployment may as well use its broker's, as docs/celery.rst says): with it down, pacing goes on
from each process's own readings, with a warning, and the runs still succeed. A second test then runs the
budgets scenario of tests/e2e/test_deployment_budgets.py on the same deployment: task processes
on two workers and the bulk batch in a triggerer on one WABA's budget, deferred waits in either
triggerer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_whatsapp.sandbox import Fault, GraphSandbox
from airflow_provider_whatsapp.sandbox.state import ReceivedRequest
from devtools.airflow_deployment import wait_until
from devtools.celery_deployment import CeleryAirflowDeployment, RedisServer, can_run, write_secrets
from tests.e2e.shared_deployment import BUDGETS_CONN_ID, DEFER_WAIT_OVER, RATE_WINDOW, Deployment, dags_folder
from tests.e2e.test_deployment_budgets import check_one_budget_view
from tests.secret_search import Haystack, leaked, search_each

pytestmark = [pytest.mark.deployment, pytest.mark.distributed, pytest.mark.timeout(1800)]

ONBOARDING = "example_whatsapp_onboarding"
BULK = "example_whatsapp_bulk_onboarding"
APP_SECRET = "celery-app-secret-7e41a9c2"
PIN = "730528"
CODE = "614973"
SENSOR_RUNS = 20
BULK_NUMBERS = 60
OUTAGE_SECONDS = 20.0
# Longer than the worker's kill takes: the create's answer is still held back when it dies.
HELD_ANSWER_SECONDS = 600.0
# Per-call connection settings, as a platform team sets them in the connection's extras: a read
# timeout longer than the held answer, and hook retries that outlast a 20-second outage.
CONNECTION_EXTRAS = {"timeout": HELD_ANSWER_SECONDS + 60, "max_attempts": 10, "backoff_max": 8}
FINAL = ("success", "failed", "upstream_failed", "skipped", "removed")
# Every wait below is bounded; these are generous for two cores shared with other test runs.
LONG_WAIT = 900
# What a process logs when the shared budget store cannot be reached (hooks/budgets.py).
STORE_DOWN = "The shared budgets in Redis could not be"


@pytest.fixture(scope="module")
def distributed_deployment() -> Iterator[tuple[CeleryAirflowDeployment, GraphSandbox, RedisServer]]:
    """The deployment both tests of this module run on, the faults test first, with its budget store."""
    reason = can_run()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the distributed deployment cannot run: {reason}")
        pytest.skip(reason)
    with GraphSandbox(
        app_secret=APP_SECRET,
        fixed_code=CODE,
        connect_delay=3600.0,
        code_request_cooldown=0.0,
        wabas=3,
        rate_window=RATE_WINDOW,
        rate_window_from_first_call=True,
    ) as sandbox:
        airflow = CeleryAirflowDeployment(dags_folder=dags_folder())
        connections = {
            "whatsapp_default": json.loads(sandbox.airflow_conn_json(CONNECTION_EXTRAS)),
            BUDGETS_CONN_ID: json.loads(
                sandbox.airflow_conn_json({**CONNECTION_EXTRAS, "defer_wait_over": DEFER_WAIT_OVER})
            ),
        }
        airflow.extra_env.update(write_secrets(airflow.home / "secrets", connections, {"whatsapp_two_step_pin": PIN}))
        # Every task and trigger shares the budgets through a Redis apart from the broker's, so
        # that the faults test can take the store away for a minute without stopping Celery.
        store = RedisServer(airflow.home / "budget-store")
        airflow.extra_env["AIRFLOW__WHATSAPP__BUDGET_STORE"] = store.url
        store.start()
        try:
            with airflow:
                print(f"\ndistributed deployment up: {airflow.describe()}, budget store {store.url}")
                yield airflow, sandbox, store
        except BaseException:
            print(f"\nThe distributed test failed; where to look: {airflow.where_to_look()}", file=sys.stderr)
            raise
        finally:
            store.stop()


def ti_path(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
    return path if map_index < 0 else f"{path}/{map_index}"


def held_create(sandbox: GraphSandbox, waba_id: str) -> ReceivedRequest | None:
    """The create on ``waba_id`` that Graph applied and whose answer the sandbox holds back."""
    for request in sandbox.requests_to("POST", rf"^/{waba_id}/phone_numbers$"):
        if request.fault == "delay" and request.status == 200:
            return request
    return None


def applied(sandbox: GraphSandbox, method: str, path: str) -> Counter[str]:
    """How many requests to ``path`` (a regex) Graph applied, by what they name (a number or an ID)."""
    counts: Counter[str] = Counter()
    for request in sandbox.requests_to(method, path):
        if request.status == 200:
            counts[request.body.get("phone_number") or request.path.split("/")[1]] += 1
    return counts


def triggers_on(airflow: CeleryAirflowDeployment, waiting: list[str]) -> Counter[int | None]:
    """How many of the deferred tasks (task instance paths) wait on each triggerer job (``None``: not deferred)."""
    owners: Counter[int | None] = Counter()
    for path in waiting:
        ti = airflow.api("GET", path)
        if ti["state"] in FINAL:
            raise AssertionError(f"{path} ended {ti['state']} before its wait was over")
        deferred = ti["state"] == "deferred" and ti.get("trigger")
        owners[ti["trigger"]["triggerer_id"] if deferred else None] += 1
    return owners


def job_of(airflow: CeleryAirflowDeployment, hostname: str, not_job: int | None = None) -> int | None:
    found = [job for job, host in airflow.alive_triggerers().items() if host == hostname and job != not_job]
    return found[0] if found else None


def all_on(airflow: CeleryAirflowDeployment, sensors: list[str], hostname: str, not_job: int | None = None) -> int:
    """The job of ``hostname`` once every sensor waits on it; 0 until then."""
    job = job_of(airflow, hostname, not_job)
    return job if job is not None and triggers_on(airflow, sensors) == Counter({job: len(sensors)}) else 0


def finished_tries(airflow: CeleryAirflowDeployment, dag_id: str, run_id: str, task_id: str, index: int) -> Any:
    """Every try of a task instance, once it has ended for good (``None`` until then)."""
    path = ti_path(dag_id, run_id, task_id, index)
    if airflow.api("GET", path)["state"] not in FINAL:
        return None
    tries: list[dict[str, Any]] = airflow.api("GET", f"{path}/tries")["task_instances"]
    return sorted(tries, key=lambda attempt: int(attempt["try_number"]))


def texts_to_search(airflow: CeleryAirflowDeployment, task_instances: list[dict[str, Any]]) -> Haystack:
    """Every log the deployment wrote (tasks, triggers, components) and every rendered field."""
    haystack = Haystack()
    for path in sorted(airflow.home.rglob("*.log")):
        if "pgdata" not in path.parts:
            haystack.add(str(path), path.read_text(errors="replace"))
    for ti in task_instances:
        haystack.add(f"{ti['dag_id']} {ti['task_id']} rendered", json.dumps(ti.get("rendered_fields"), default=str))
    return haystack


def store_warnings(airflow: CeleryAirflowDeployment) -> list[Path]:
    """The task and component logs in which a process said it could not reach the budget store."""
    logs = [*(airflow.home / "logs").rglob("*.log"), *(airflow.log_path(c) for c in airflow.component_commands())]
    return [path for path in logs if path.is_file() and STORE_DOWN in path.read_text(errors="replace")]


def test_celery_deployment_survives_faults(
    distributed_deployment: tuple[CeleryAirflowDeployment, GraphSandbox, RedisServer],
    distributed_tally: dict[str, Any],
) -> None:
    started = time.monotonic()
    faults: list[str] = []
    airflow, sandbox, store = distributed_deployment
    wabas = sandbox.waba_ids
    bulk_numbers = [
        {"cc": "1", "phone_number": f"555030{i:04d}", "verified_name": f"Acme Celery {i}",
         "waba_id": wabas[1 + i % 2]}
        for i in range(BULK_NUMBERS)
    ]  # fmt: skip
    singles = [f"555040{i:04d}" for i in range(SENSOR_RUNS)]
    # A create on each path is applied, then its answer held back: the windows in which its
    # worker (an onboarding run, on the connection's WABA) and its triggerer (the bulk batch,
    # on the second WABA) die.
    for waba_id in (wabas[0], wabas[1]):
        sandbox.inject(Fault.delay(HELD_ANSWER_SECONDS), method="POST", path=rf"^/{waba_id}/phone_numbers$")
    bulk = airflow.trigger(BULK, {"numbers": bulk_numbers})["dag_run_id"]
    sensors = [
        airflow.trigger(ONBOARDING, {"cc": "1", "phone_number": number, "verified_name": "Acme Single"})["dag_run_id"]
        for number in singles
    ]

    # 1. A worker dies after Graph applied a create, before the task heard back.
    held: ReceivedRequest = wait_until(
        lambda: held_create(sandbox, wabas[0]), LONG_WAIT, "an onboarding run's create applied and held back"
    )
    victim = sensors[singles.index(held.body["phone_number"])]
    create = "create_phone_number"
    running = wait_until(
        lambda: (ti := airflow.api("GET", ti_path(ONBOARDING, victim, create)))["state"] == "running" and ti,
        LONG_WAIT,
        f"{victim} {create} to run",
    )
    killed_worker = running["hostname"]
    airflow.kill(killed_worker)
    faults.append(f"SIGKILL {killed_worker} with {create} of {victim} waiting on an applied create")

    # 2. The broker restarts while the runs go on; the budget store goes down until the killed
    # try's retry is done.
    airflow.redis.restart()
    faults.append("restart Redis")
    store.stop()
    store_down = time.monotonic()

    # 3. Graph is unreachable.
    sandbox.refuse_connections(OUTAGE_SECONDS)
    faults.append(f"Graph refuses connections for {OUTAGE_SECONDS:.0f}s")

    # The killed try fails by its missing heartbeat; the retry, on the other worker, adopts the
    # number. Then the killed worker comes back, as an orchestrator would bring it.
    tries = wait_until(
        lambda: finished_tries(airflow, ONBOARDING, victim, create, -1), LONG_WAIT, f"{victim} {create} retried"
    )
    store.start()
    faults.append(f"the budget store down for {time.monotonic() - store_down:.0f}s")
    airflow.start_component(killed_worker)

    # 4. The bulk batch (waiting on its held create) and twenty sensors deferred on one
    # triggerer; it dies; the other takes them over.
    bulk_held: ReceivedRequest = wait_until(
        lambda: held_create(sandbox, wabas[1]), LONG_WAIT, "the batch's create applied and held back"
    )
    batch = ti_path(BULK, bulk, "onboard", 0)
    sensor_waits = [ti_path(ONBOARDING, run_id, "wait_connected") for run_id in sensors]
    waiting = [*sensor_waits, batch]
    wait_until(lambda: triggers_on(airflow, waiting)[None] == 0, LONG_WAIT, "the batch and all sensors to defer")
    old_second = job_of(airflow, "triggerer-2")
    if airflow.api("GET", batch)["trigger"]["triggerer_id"] == old_second:
        # The batch moves with the restart below and plans again from Graph, continuing its
        # held number at request_code: that answer is held too, so the batch is still there
        # to be killed with triggerer-1.
        [held_number] = [n for n in sandbox.numbers(wabas[1]) if n["phone_number"] == bulk_held.body["phone_number"]]
        sandbox.inject(Fault.delay(HELD_ANSWER_SECONDS), method="POST", path=rf"^/{held_number['id']}/request_code$")
    airflow.stop_component("triggerer-2")  # a rolling restart: its triggers go to triggerer-1
    first_job = wait_until(
        lambda: all_on(airflow, waiting, "triggerer-1"), LONG_WAIT, "triggerer-1 to hold every trigger"
    )
    airflow.start_component("triggerer-2")
    wait_until(lambda: job_of(airflow, "triggerer-2", not_job=old_second), 300, "triggerer-2 back")
    on_first = triggers_on(airflow, waiting)
    batch_reads = len(sandbox.requests_to("GET", rf"^/{wabas[1]}/phone_numbers$"))
    airflow.kill("triggerer-1")
    faults.append(f"SIGKILL triggerer-1 with the bulk batch and {len(sensor_waits)} status sensors deferred on it")
    # The sensors wait on triggerer-2; the batch, planned again there, may have finished already.
    taken_over = wait_until(
        lambda: all_on(airflow, sensor_waits, "triggerer-2", not_job=old_second),
        LONG_WAIT,
        "triggerer-2 to take over",
    )
    for number in sandbox.numbers(wabas[0]):
        if number["phone_number"] in singles:
            sandbox.set_fields(number["id"], status="CONNECTED")

    states = {run_id: airflow.wait_for_run(ONBOARDING, run_id, LONG_WAIT) for run_id in sensors}
    states[bulk] = airflow.wait_for_run(BULK, bulk, LONG_WAIT)
    runs = {BULK: [bulk], ONBOARDING: sensors}
    task_instances = [
        ti for dag_id, ids in runs.items() for run_id in ids for ti in airflow.task_instances(dag_id, run_id)
    ]

    # What Graph saw.
    numbers = sandbox.numbers()
    inputs = Counter([(n["waba_id"], n["phone_number"]) for n in bulk_numbers])
    inputs.update((wabas[0], number) for number in singles)
    held_by_graph = Counter((n["waba_id"], n["phone_number"]) for n in numbers)
    creates = applied(sandbox, "POST", r"^/\d+/phone_numbers$")
    registers = applied(sandbox, "POST", r"^/\d+/register$")
    verifies = applied(sandbox, "POST", r"^/\d+/verify_code$")
    failed_for_good = [
        f"{ti['dag_id']} {ti['task_id']}[{ti['map_index']}] {ti['state']}"
        for ti in task_instances
        if ti["state"] in ("failed", "upstream_failed")
    ]
    haystack = texts_to_search(airflow, task_instances)
    for number in numbers:
        haystack.know(number["id"], number["display_phone_number"])
    secrets = {"token": sandbox.token, "app secret": APP_SECRET, "PIN": PIN, "code": CODE}
    found = leaked(search_each(haystack, secrets))
    tally = {
        "faults injected": len(faults),
        "numbers created": len(numbers),
        "duplicates": sum(count - 1 for count in held_by_graph.values() if count > 1),
        "created twice": sum(1 for count in creates.values() if count > 1),
        "registered twice": sum(1 for count in registers.values() if count > 1),
        "tasks failed for good": len(failed_for_good),
        "secrets found in logs and rendered fields": sum(len(places) for places in found.values()),
        "logs warning of the store down": len(warned := store_warnings(airflow)),
    }
    distributed_tally.update({"faults": "; ".join(faults), **tally})
    distributed_tally["test took (s)"] = round(time.monotonic() - started)
    print(f"faults: {'; '.join(faults)}")
    print(f"tally: {json.dumps(tally)}")
    print(f"distributed deployment test took {time.monotonic() - started:.0f}s")

    assert set(states.values()) == {"success"}, states
    assert failed_for_good == [], failed_for_good
    assert held_by_graph == inputs, "every input number exists exactly once, on its WABA"
    assert set(creates.values()) == {1} and len(creates) == len(inputs), creates
    assert set(registers.values()) == {1} and len(registers) == len(inputs), registers
    assert set(verifies.values()) == {1} and len(verifies) == len(inputs), verifies
    assert found == {}, found
    # The store's outage was met (and said so), and cost no run.
    assert warned, f"no log says {STORE_DOWN!r}"
    # The killed try ran on the killed worker; the retry, on the other, adopted the number
    # the killed try created (its create was the only one Graph applied for that number).
    assert tries[0]["hostname"] == killed_worker and tries[0]["state"] != "success", tries
    assert tries[-1]["state"] == "success" and tries[-1]["hostname"] not in ("", None, killed_worker), tries
    assert creates[held.body["phone_number"]] == 1
    # The batch's create whose answer its dead triggerer never heard was not sent again: the
    # batch, planned again on triggerer-2, continued that number where Graph held it.
    assert creates[bulk_held.body["phone_number"]] == 1
    # The batch and every sensor waited on triggerer-1 until it died, then on triggerer-2, and succeeded.
    assert on_first[first_job] == len(waiting) and taken_over not in (first_job, old_second), (on_first, taken_over)
    assert airflow.api("GET", batch)["state"] == "success"
    assert len(sandbox.requests_to("GET", rf"^/{wabas[1]}/phone_numbers$")) > batch_reads, "planned again"
    for run_id in sensors:
        assert airflow.api("GET", ti_path(ONBOARDING, run_id, "wait_connected"))["state"] == "success", run_id
    assert {n["status"] for n in numbers if n["phone_number"] in singles} == {"CONNECTED"}


def test_celery_budgets_shared_by_workers_and_triggerers(
    distributed_deployment: tuple[CeleryAirflowDeployment, GraphSandbox, RedisServer],
    distributed_tally: dict[str, Any],
) -> None:
    """The budgets scenario of tests/e2e/test_deployment_budgets.py on two workers and two
    triggerers, the budgets shared through Redis."""
    airflow, sandbox, _store = distributed_deployment
    check_one_budget_view(Deployment(airflow, sandbox, 0.0), "CeleryExecutor, Redis store", distributed_tally)
