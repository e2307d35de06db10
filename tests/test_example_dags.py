"""Every example DAG, run with ``dag.test()`` against the sandbox; XComs and final sandbox state."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from airflow_provider_whatsapp.hooks.whatsapp import TRIGGER_USER_AGENT

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

PIN = "482915"
PREVERIFIED_PIN = "739164"


@pytest.fixture
def sandbox(whatsapp_sandbox_factory: Any, monkeypatch: Any) -> Iterator[Any]:
    """A sandbox whose numbers connect 1.5 s after register, so the status sensor must defer."""
    sandbox = whatsapp_sandbox_factory(connect_delay=1.5)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN", PIN)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WHATSAPP_TWO_STEP_PIN", json.dumps({"conn_type": "generic", "password": PREVERIFIED_PIN})
    )
    yield sandbox


@contextmanager
def connected_once_the_trigger_reads(sandbox: Any) -> Iterator[None]:
    """Keep registered numbers PENDING until the deferred sensor's trigger has read one, then connect them.

    However slow the machine, the sensor's first poke finds the number PENDING and must defer: no
    race between the sandbox's connect delay and the time the DAG takes to reach the sensor.
    """
    sandbox.connect_delay = 3600.0
    stop = threading.Event()

    def connect_after_trigger_read() -> None:
        while not stop.wait(0.05):
            if any(r.headers.get("User-Agent") == TRIGGER_USER_AGENT for r in sandbox.requests):
                for number in sandbox.numbers():
                    sandbox.set_fields(number["id"], status="CONNECTED")
                return

    watcher = threading.Thread(target=connect_after_trigger_read, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=10)


def test_onboarding_dag(run_dag: Any, sandbox: Any) -> None:
    with connected_once_the_trigger_reads(sandbox):
        result = run_dag("example_whatsapp_onboarding", {"cc": "1", "phone_number": "5550100021"})
    assert result.state == "success", result.task_states
    new_id = result.xcom("create_phone_number")
    for task_id in ("request_code", "verify_code", "register"):
        assert result.xcom(task_id) == new_id, task_id
    assert result.task_state("enter_code") == "skipped"
    assert result.xcom("wait_connected")["status"] == "CONNECTED"
    assert result.xcom("summary") == {"id": new_id, "code_verification_status": "VERIFIED", "status": "CONNECTED"}
    [number] = sandbox.numbers()
    assert number["id"] == new_id
    assert number["status"] == "CONNECTED"
    assert number["code_verification_status"] == "VERIFIED"
    # The sensor deferred: the trigger's own reads reached the sandbox.
    trigger_reads = [r for r in sandbox.requests if r.headers.get("User-Agent") == TRIGGER_USER_AGENT]
    assert trigger_reads
    assert {r.method for r in trigger_reads} == {"GET"}
    assert len(sandbox.requests_to(method="POST", path=r"/register$")) == 1
    assert sandbox.schema_violations == []


def test_bulk_onboarding_dag_reports_each_number(run_dag: Any, sandbox: Any) -> None:
    numbers = [{"cc": "1", "phone_number": f"55501{index:05d}", "verified_name": f"Acme {index}"} for index in range(6)]
    numbers.insert(2, {"cc": "+44", "phone_number": "7700900123", "verified_name": "Bad cc"})
    result = run_dag("example_whatsapp_bulk_onboarding", {"numbers": numbers})
    report = result.xcom("report")
    assert len(report["succeeded"]) == 6
    [failure] = report["failed"]
    assert failure["number"] == "cc=+44 phone_number=7700900123"
    assert failure["step"] == "create_phone_number"
    assert failure["error"]["field"] == "cc"
    registered = {n["id"] for n in sandbox.numbers() if n["status"] in ("CONNECTED", "PENDING")}
    assert {s["phone_number_id"] for s in report["succeeded"]} == registered
    assert len(sandbox.numbers()) == 6
    assert result.task_state("onboard.create_phone_number", 2) == "failed"
    assert result.task_state("onboard.register", 3) == "success"


def test_bulk_onboarding_dag_reads_the_csv(run_dag: Any, sandbox: Any) -> None:
    result = run_dag("example_whatsapp_bulk_onboarding")
    report = result.xcom("report")
    assert report["failed"] == []
    assert len(report["succeeded"]) == len(sandbox.numbers()) == 5


def test_migration_dag(run_dag: Any, sandbox: Any) -> None:
    result = run_dag("example_whatsapp_migration")
    assert result.state == "success", result.task_states
    new_id = result.xcom("migrate_phone_number")
    assert result.xcom("register") == new_id
    create = sandbox.requests_to(method="POST", path=r"/phone_numbers$")[0]
    assert create.body["migrate_phone_number"] is True
    assert sandbox.number(new_id)["code_verification_status"] == "VERIFIED"


def test_preverified_dag(run_dag: Any, sandbox: Any) -> None:
    result = run_dag("example_whatsapp_preverified")
    assert result.state == "success", result.task_states
    new_id = result.xcom("create_phone_number")
    assert result.xcom("register") == new_id
    assert not sandbox.requests_to(path="request_code")
    assert not sandbox.requests_to(path="verify_code")
    register = sandbox.requests_to(method="POST", path=r"/register$")[0]
    assert register.body["pin"] == PREVERIFIED_PIN
    assert register.body["data_localization_region"] == "DE"
