"""The provider in a real Airflow 3.3 deployment: scheduler, dag-processor, triggerer and API
server as separate processes, LocalExecutor, PostgreSQL, and the Graph sandbox. Everything is
checked through the Airflow REST API (and the CLI for the connection test)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_whatsapp.hooks.whatsapp_async import TRIGGER_USER_AGENT
from airflow_provider_whatsapp.sandbox import GraphSandbox
from tests.e2e.airflow_deployment import AirflowDeployment

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(900)]

APP_SECRET = "e2e-app-secret-3c9d51f0"
PIN = "861304"
ONBOARDING = "example_whatsapp_onboarding"
BULK = "example_whatsapp_bulk_onboarding"
CHAIN = ("create_phone_number", "request_code", "verify_code", "register")


class Deployment:
    def __init__(self, airflow: AirflowDeployment, sandbox: GraphSandbox, started_in: float) -> None:
        self.airflow = airflow
        self.sandbox = sandbox
        self.started_in = started_in
        self.runs: dict[str, str] = {}


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    started = time.monotonic()
    with GraphSandbox(app_secret=APP_SECRET, connect_delay=4.0, code_request_cooldown=0.0) as sandbox:
        env = {
            "AIRFLOW_CONN_WHATSAPP_DEFAULT": sandbox.airflow_conn_json(),
            "AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN": PIN,
        }
        airflow = AirflowDeployment(env=env)
        try:
            with airflow:
                print(f"\ndeployment up in {time.monotonic() - started:.1f}s on {airflow.database}")
                yield Deployment(airflow, sandbox, time.monotonic() - started)
        except BaseException:
            print(f"\nDeployment test failed; where to look: {airflow.where_to_look()}", file=sys.stderr)
            raise
    print(f"deployment test module took {time.monotonic() - started:.1f}s")


def xcom(airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
    entry = airflow.api(
        "GET",
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        params={"map_index": map_index, "deserialize": True},
    )
    value = entry["value"]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def test_runs_on_postgresql(deployment: Deployment) -> None:
    assert deployment.airflow.database == "postgresql", "PostgreSQL could not start here; ran on SQLite"


def test_onboarding_runs_through_scheduler_workers_and_triggerer(deployment: Deployment) -> None:
    airflow, sandbox = deployment.airflow, deployment.sandbox
    run = airflow.trigger(ONBOARDING, {"cc": "1", "phone_number": "5550170001", "verified_name": "Acme E2E"})
    run_id = run["dag_run_id"]
    deployment.runs[ONBOARDING] = run_id
    state = airflow.wait_for_run(ONBOARDING, run_id, timeout=300)
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(ONBOARDING, run_id)}
    assert state == "success", f"{states}; {airflow.where_to_look()}"

    new_id = xcom(airflow, ONBOARDING, run_id, "create_phone_number")
    assert str(new_id).isdigit()
    for task_id in ("request_code", "verify_code", "register"):
        assert str(xcom(airflow, ONBOARDING, run_id, task_id)) == str(new_id), task_id
    assert xcom(airflow, ONBOARDING, run_id, "wait_connected")["status"] == "CONNECTED"
    assert xcom(airflow, ONBOARDING, run_id, "summary")["id"] == str(new_id)
    assert states["enter_code"] == "skipped"
    [number] = sandbox.numbers()
    assert number["id"] == str(new_id) and number["status"] == "CONNECTED"

    # The sensor deferred: its log says so, and the trigger's reads came from the triggerer.
    log = json.dumps(airflow.api("GET", f"/dags/{ONBOARDING}/dagRuns/{run_id}/taskInstances/wait_connected/logs/1"))
    assert "deferred" in log.lower(), log[-2000:]
    trigger_reads = [r for r in sandbox.requests if r.headers.get("User-Agent") == TRIGGER_USER_AGENT]
    assert trigger_reads and {r.method for r in trigger_reads} == {"GET"}
    # The trigger's own log lines are appended to the task's log by the triggerer.
    assert "phonenumberstatustrigger" in log.lower() or "trigger" in log.lower(), log[-2000:]
    # No worker ran the trigger: only the triggerer process runs triggers in a deployment.
    assert "Starting the triggerer" in airflow.log_path("triggerer").read_text(errors="replace")


def test_bulk_onboarding_of_21_numbers_with_one_invalid(deployment: Deployment) -> None:
    airflow, sandbox = deployment.airflow, deployment.sandbox
    numbers = [{"cc": "1", "phone_number": f"55501802{i:02d}", "verified_name": f"Acme Bulk {i}"} for i in range(20)]
    numbers.insert(7, {"cc": "+44", "phone_number": "7700900123", "verified_name": "Bad cc"})
    before = len(sandbox.numbers())
    run_id = airflow.trigger(BULK, {"numbers": numbers})["dag_run_id"]
    deployment.runs[BULK] = run_id
    airflow.wait_for_run(BULK, run_id, timeout=420)
    report = xcom(airflow, BULK, run_id, "report")
    assert len(report["succeeded"]) == 20, report
    [failure] = report["failed"]
    assert failure["number"] == "cc=+44 phone_number=7700900123"
    assert failure["step"] == "create_phone_number"
    assert failure["error"]["field"] == "cc"
    assert len(sandbox.numbers()) == before + 20


def test_no_secret_in_task_logs_or_rendered_fields(deployment: Deployment) -> None:
    airflow, sandbox = deployment.airflow, deployment.sandbox
    assert set(deployment.runs) == {ONBOARDING, BULK}, "runs the earlier tests should have made"
    secrets = {"token": sandbox.token, "app secret": APP_SECRET, "PIN": PIN}
    for number in sandbox.numbers():
        code = sandbox.last_code(number["id"])
        if code:
            secrets[f"code of {number['id']}"] = code
    texts: list[str] = []
    for dag_id, run_id in deployment.runs.items():
        for ti in airflow.task_instances(dag_id, run_id):
            task_path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}"
            if ti["map_index"] >= 0:
                task_path += f"/{ti['map_index']}"
            detail = airflow.api("GET", task_path)
            texts.append(json.dumps(detail.get("rendered_fields"), default=str))
            for try_number in range(1, (ti.get("try_number") or 0) + 1):
                log_path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{try_number}"
                params = {"map_index": ti["map_index"]} if ti["map_index"] >= 0 else {}
                texts.append(json.dumps(airflow.api("GET", log_path, params=params)))
    haystack = "\n".join(texts)
    assert len(texts) > 100
    assert "***" in haystack, "the masked PIN and code should show as ***"
    found = {name: haystack.count(value) for name, value in secrets.items() if haystack.count(value)}
    assert found == {}, f"secrets in logs or rendered fields: {found}"


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
