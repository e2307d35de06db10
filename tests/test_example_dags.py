"""Every example DAG, run with ``dag.test()`` against the sandbox; XComs and final sandbox state."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from airflow_provider_whatsapp.hooks.whatsapp_async import ONBOARDING_USER_AGENT, TRIGGER_USER_AGENT

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

PIN = "482915"
PREVERIFIED_PIN = "739164"


def _sandbox(whatsapp_sandbox_factory: Any, monkeypatch: Any, connect_delay: float) -> Any:
    """A sandbox whose numbers connect ``connect_delay`` s after register, exported as the example DAGs read it."""
    sandbox = whatsapp_sandbox_factory(connect_delay=connect_delay)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN", PIN)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WHATSAPP_TWO_STEP_PIN", json.dumps({"conn_type": "generic", "password": PREVERIFIED_PIN})
    )
    return sandbox


@pytest.fixture
def sandbox(whatsapp_sandbox_factory: Any, monkeypatch: Any) -> Any:
    """A sandbox whose numbers connect 1.5 s after register, so the status sensor must defer."""
    return _sandbox(whatsapp_sandbox_factory, monkeypatch, connect_delay=1.5)


@pytest.fixture
def pending_sandbox(whatsapp_sandbox_factory: Any, monkeypatch: Any) -> Any:
    """A sandbox whose registered numbers stay PENDING until the test connects them."""
    return _sandbox(whatsapp_sandbox_factory, monkeypatch, connect_delay=3600.0)


@contextmanager
def connected_once_the_trigger_reads(sandbox: Any) -> Iterator[None]:
    """Connect the registered numbers of ``sandbox`` (a ``pending_sandbox``) once the deferred
    sensor's trigger has read one.

    However slow the machine, the sensor's first poke finds the number PENDING and must defer: no
    race between a connect delay and the time the DAG takes to reach the sensor.
    """
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


def test_onboarding_dag(run_dag: Any, pending_sandbox: Any) -> None:
    sandbox = pending_sandbox
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
    assert result.state == "success", result.task_states
    report = result.xcom("report")
    assert report["counts"] == {"onboarded": 6, "not created": 1}
    onboarded = [entry for entry in report["numbers"] if entry["outcome"] == "onboarded"]
    failure = report["numbers"][2]
    assert failure["number"] == "cc=+44 phone_number=7700900123"
    assert failure["outcome"] == "not created"
    assert failure["started_at"] == "create_phone_number"
    assert failure["error"]["field"] == "cc"
    # Registered: the sandbox applied register exactly once (connecting comes later, by itself).
    registered = {n["id"] for n in sandbox.numbers() if sandbox.register_calls(n["id"]) == 1}
    assert {entry["phone_number_id"] for entry in onboarded} == registered
    assert len(registered) == len(sandbox.numbers()) == 6
    # One batch, one task instance: the bad row is an outcome of the batch, not a failed task.
    assert result.task_state("onboard", 0) == "success"
    assert result.xcom("onboard", map_index=0)["counts"] == report["counts"]
    # The batch ran in the triggerer: its calls carry the trigger's User-Agent.
    assert {r.headers.get("User-Agent") for r in sandbox.requests} == {ONBOARDING_USER_AGENT}


def test_bulk_onboarding_dag_reads_the_csv(run_dag: Any, sandbox: Any) -> None:
    result = run_dag("example_whatsapp_bulk_onboarding")
    assert result.state == "success", result.task_states
    report = result.xcom("report")
    assert report["counts"] == {"onboarded": 5}
    assert len(sandbox.numbers()) == 5
    assert all(sandbox.register_calls(entry["phone_number_id"]) == 1 for entry in report["numbers"])
    # Four calls a number, and the one list read of its WABA before anything is sent.
    assert len(sandbox.requests) == 4 * 5 + 1
    first = sandbox.requests[0]
    assert (first.method, first.path) == ("GET", f"/{sandbox.default_waba_id}/phone_numbers")


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
