"""The provider in a real Airflow 3.3 deployment: scheduler, dag-processor, triggerer and API
server as separate processes, LocalExecutor, PostgreSQL, and the Graph sandbox. Everything is
checked through the Airflow REST API (and the CLI for the connection test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_whatsapp.hooks.whatsapp_async import ONBOARDING_USER_AGENT, TRIGGER_USER_AGENT
from devtools.airflow_deployment import AirflowDeployment, wait_until
from tests.e2e.artifacts import deployment_haystack
from tests.e2e.shared_deployment import APP_SECRET, CODE, PIN, Deployment
from tests.secret_search import leaked, search_each

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(900)]

ONBOARDING = "example_whatsapp_onboarding"
BULK = "example_whatsapp_bulk_onboarding"
TRIGGER = "airflow_provider_whatsapp.triggers.phone_numbers.PhoneNumberStatusTrigger"


def test_runs_on_postgresql(deployment: Deployment) -> None:
    assert deployment.airflow.database == "postgresql", "PostgreSQL could not start here; ran on SQLite"


def deferred_trigger(airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    """The trigger a deferred task waits on, as the REST API shows it while the task waits."""

    def trigger() -> dict[str, Any] | None:
        ti = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        if ti["state"] in ("success", "failed", "upstream_failed", "skipped"):
            raise AssertionError(f"{task_id} ended {ti['state']} without deferring")
        found: dict[str, Any] | None = ti.get("trigger") if ti["state"] == "deferred" else None
        return found

    found: dict[str, Any] = wait_until(trigger, 300, f"{task_id} to defer")
    return found


def trigger_log(airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
    """What the triggerer has logged so far for the task's trigger (a JSON file per triggerer job,
    beside the task's log); a line still being written is left for the next read."""
    task_logs = airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    lines = [
        line
        for path in sorted(task_logs.glob("attempt=1.log.trigger.*.log"))
        for line in path.read_text(errors="replace").splitlines(keepends=True)
    ]
    return [json.loads(line) for line in lines if line.endswith("\n") and line.strip()]


def scheduler_finished_lines(airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> list[str]:
    """The scheduler's log lines saying it handled an attempt of the task ending (one per exit)."""
    marker = f"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={run_id},"
    text = airflow.log_path("scheduler").read_text(errors="replace")
    return [line for line in text.splitlines() if marker in line]


def pending_reads(entries: list[dict[str, Any]], number_id: str) -> list[str]:
    """The trigger's own log lines (its class is the logger) saying it read the number PENDING."""
    return [
        entry["event"]
        for entry in entries
        if entry.get("logger") == TRIGGER
        and entry["event"].startswith(f"Phone number {number_id}: ")
        and "status=PENDING" in entry["event"]
    ]


def test_onboarding_runs_through_scheduler_workers_and_triggerer(deployment: Deployment) -> None:
    airflow, sandbox = deployment.airflow, deployment.sandbox
    run = airflow.trigger(ONBOARDING, {"cc": "1", "phone_number": "5550170001", "verified_name": "Acme E2E"})
    run_id = run["dag_run_id"]
    deployment.runs[ONBOARDING] = run_id
    # The number stays PENDING until the sensor has deferred, its trigger has logged reading it,
    # and the scheduler has handled the deferring attempt's exit: Airflow 3.3 fails a resumed task
    # whose trigger fired before that (https://github.com/apache/airflow/issues/72716).
    trigger = deferred_trigger(airflow, ONBOARDING, run_id, "wait_connected")
    [pending] = sandbox.numbers()
    wait_until(
        lambda: pending_reads(trigger_log(airflow, ONBOARDING, run_id, "wait_connected"), pending["id"]),
        300,
        "the trigger to read the number PENDING",
    )
    exit_seen = wait_until(
        lambda: scheduler_finished_lines(airflow, ONBOARDING, run_id, "wait_connected"),
        300,
        "the scheduler to handle the deferring attempt's exit",
    )
    assert "state=deferred" in exit_seen[0], exit_seen
    sandbox.set_fields(pending["id"], status="CONNECTED")
    state = airflow.wait_for_run(ONBOARDING, run_id, timeout=300)
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(ONBOARDING, run_id)}
    assert state == "success", f"{states}; {airflow.where_to_look()}"
    assert states == {
        "create_phone_number": "success",
        "resume_point": "success",
        "request_code": "success",
        "code_source": "success",
        "enter_code": "skipped",
        "verify_code": "success",
        "register": "success",
        "wait_connected": "success",
        "summary": "success",
    }, states

    new_id = airflow.return_value(ONBOARDING, run_id, "create_phone_number")
    assert str(new_id) == pending["id"]
    for task_id in ("request_code", "verify_code", "register"):
        assert str(airflow.return_value(ONBOARDING, run_id, task_id)) == str(new_id), task_id
    assert airflow.return_value(ONBOARDING, run_id, "wait_connected")["status"] == "CONNECTED"
    assert airflow.return_value(ONBOARDING, run_id, "summary")["id"] == str(new_id)
    [number] = sandbox.numbers()
    assert number["id"] == str(new_id) and number["status"] == "CONNECTED"

    # The sensor deferred to our trigger; the triggerer ran that trigger (by its ID) for this
    # number: it read PENDING, then fired success with the number's node, and completed.
    assert trigger["classpath"] == TRIGGER, trigger
    name = f"{ONBOARDING}/{run_id}/wait_connected/-1/1 (ID {trigger['id']})"
    entries = trigger_log(airflow, ONBOARDING, run_id, "wait_connected")
    events = [entry["event"] for entry in entries]
    assert f"trigger {name} starting" in events, events
    assert pending_reads(entries, new_id), events
    [fired] = [entry for entry in entries if entry["event"] == "Trigger fired event" and entry.get("name") == name]
    assert "'status': 'success'" in fired["result"] and f"'id': '{new_id}'" in fired["result"], fired
    assert [entry for entry in entries if entry["event"] == "trigger completed" and entry.get("name") == name], events
    # Every read of the trigger came from the triggerer (the trigger's User-Agent): the shared list
    # read of the number's WABA, never a read of the number alone (its WABA lists it).
    trigger_reads = [r for r in sandbox.requests if r.headers.get("User-Agent") == TRIGGER_USER_AGENT]
    waba_list = ("GET", f"/{sandbox.default_waba_id}/phone_numbers")
    assert len(trigger_reads) >= 2 and {(r.method, r.path) for r in trigger_reads} == {waba_list}, trigger_reads


def test_bulk_onboarding_of_200_numbers_in_the_triggerer(deployment: Deployment) -> None:
    airflow, sandbox = deployment.airflow, deployment.sandbox
    second = sandbox.add_waba(name="Acme Bulk Second")
    numbers: list[dict[str, str]] = [
        {"cc": "1", "phone_number": f"5550180{i:03d}", "verified_name": f"Acme Bulk {i}"} for i in range(100)
    ]
    numbers += [
        {"cc": "1", "phone_number": f"5550181{i:03d}", "verified_name": f"Acme Bulk B{i}", "waba_id": second}
        for i in range(100)
    ]
    numbers.insert(7, {"cc": "+44", "phone_number": "7700900123", "verified_name": "Bad cc"})
    before, calls_before = len(sandbox.numbers()), len(sandbox.requests)
    # Batches of whole WABAs: the connection's WABA (and the bad row, which names none), then the second.
    run_id = airflow.trigger(BULK, {"numbers": numbers, "batch_size": 101})["dag_run_id"]
    deployment.runs[BULK] = run_id
    state = airflow.wait_for_run(BULK, run_id, timeout=600)
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in airflow.task_instances(BULK, run_id)}
    # Four task instances for 201 rows: the bad row is an outcome of its batch, not a failed task.
    assert states == {
        ("batches_to_onboard", -1): "success",
        ("onboard", 0): "success",
        ("onboard", 1): "success",
        ("report", -1): "success",
    }, states
    assert state == "success", airflow.where_to_look()
    report = airflow.return_value(BULK, run_id, "report")
    assert report["counts"] == {"onboarded": 200, "not created": 1}, report["counts"]
    assert report["unfinished"] == 0
    failure = report["numbers"][7]
    assert failure["number"] == "cc=+44 phone_number=7700900123"
    assert failure["outcome"] == "not created"
    assert failure["error"]["field"] == "cc"
    assert len(sandbox.numbers()) == before + 200
    assert all(
        sandbox.register_calls(entry["phone_number_id"]) == 1 for entry in report["numbers"] if entry["phone_number_id"]
    )
    # Every call came from the triggerer; four a number and one list read per batch's WABA.
    calls = sandbox.requests[calls_before:]
    assert {r.headers.get("User-Agent") for r in calls} == {ONBOARDING_USER_AGENT}
    assert len(calls) == 4 * 200 + 2, [(r.method, r.path) for r in calls if r.method == "GET"]
    lists = sorted(r.path for r in calls if r.method == "GET")
    assert lists == sorted([f"/{sandbox.default_waba_id}/phone_numbers", f"/{second}/phone_numbers"])


def test_no_secret_in_any_log_rendered_field_or_xcom(deployment: Deployment) -> None:
    airflow, sandbox = deployment.airflow, deployment.sandbox
    assert set(deployment.runs) == {ONBOARDING, BULK}, "runs the earlier tests should have made"
    secrets = {"token": sandbox.token, "app secret": APP_SECRET, "PIN": PIN, "code": CODE}
    codes = {sandbox.last_code(number["id"]) for number in sandbox.numbers()}
    assert codes == {CODE}, "every number got the fixed code"
    task_instances = [ti for dag_id, run_id in deployment.runs.items() for ti in airflow.task_instances(dag_id, run_id)]
    # Every log file (components, tasks, triggers), rendered field and XCom, and the task logs as
    # the UI serves them.
    haystack = deployment_haystack(airflow, task_instances)
    served: list[str] = []
    for ti in task_instances:
        task_path = f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}"
        params = {"map_index": ti["map_index"]} if ti["map_index"] >= 0 else {}
        for try_number in range(1, (ti.get("try_number") or 0) + 1):
            served.append(json.dumps(airflow.api("GET", f"{task_path}/logs/{try_number}", params=params)))
    haystack.add_output("task logs (REST API)", "\n".join(served))
    for number in sandbox.numbers():
        haystack.know(number["id"], number["display_phone_number"])
    assert len(haystack.parts) >= 8, sorted(haystack.parts)
    assert leaked(search_each(haystack, secrets)) == {}


def test_connection_form_served_by_the_api_server(deployment: Deployment) -> None:
    hooks = deployment.airflow.api("GET", "/ui/connections/hook_meta")
    [meta] = [hook for hook in hooks if hook["connection_type"] == "whatsapp_business"]
    assert meta["hook_class_name"] == "airflow_provider_whatsapp.hooks.whatsapp.WhatsAppBusinessHook"
    assert meta["hook_name"] == "WhatsApp Business"
    standard = meta["standard_fields"]
    assert standard["password"]["title"] == "Access token"
    assert standard["host"]["title"] == "Graph API host"
    assert standard["host"]["placeholder"]
    for hidden in ("url_schema", "port", "login"):
        assert standard[hidden]["hidden"] is True, hidden
    extras = meta["extra_fields"]
    assert set(extras) >= {"api_version", "waba_id", "app_secret", "timeout"}, extras
    assert extras["app_secret"]["schema"].get("format") == "password"


def test_airflow_connections_test(deployment: Deployment) -> None:
    airflow, sandbox = deployment.airflow, deployment.sandbox
    cli = str(Path(sys.executable).parent / "airflow")
    sandbox.reset_requests()
    good = subprocess.run(
        [cli, "connections", "test", "whatsapp_default"],
        env=airflow.environment(), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert good.returncode == 0, good.stdout + good.stderr
    assert "success" in good.stdout.lower(), good.stdout
    bad_env = airflow.environment()
    bad_env["AIRFLOW_CONN_WHATSAPP_DEFAULT"] = sandbox.airflow_conn_json().replace(sandbox.token, "EAAexpired-token-0")
    bad = subprocess.run(
        [cli, "connections", "test", "whatsapp_default"],
        env=bad_env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    output = bad.stdout + bad.stderr
    assert "190" in output, output
    assert "EAAexpired-token-0" not in output
    assert {r.method for r in sandbox.requests} == {"GET"}, "the connection test may only read"
