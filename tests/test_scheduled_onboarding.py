"""The scheduled-onboarding DAG with ``dag.test()``: a SQLite requests table and the Graph sandbox."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_whatsapp.sandbox import Fault
from tests.policies import fast_policy_extras
from tests.scheduled_onboarding_table import RequestsTable

DAG_ID = "example_whatsapp_scheduled_onboarding"
# The faults below outlast a task's retries; without them a failed task does not wait its retry delay.
NO_RETRIES = {"retries": 0}
PIN = "482915"


@pytest.fixture
def sandbox(whatsapp_sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    sandbox = whatsapp_sandbox_factory(wabas=2, code_request_cooldown=0.0)
    extras = fast_policy_extras(max_attempts=2, exhausted_wait=0.01)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json(extras))
    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN", PIN)
    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_ONBOARDING_CODE_SOURCE", "sandbox")
    return sandbox


@pytest.fixture
def graph(sandbox: Any) -> Iterator[Any]:
    """A hook on the sandbox, for what a person or an earlier run did."""
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

    hook = WhatsAppBusinessHook()
    yield hook
    hook.close()


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RequestsTable]:
    yield RequestsTable.connected(tmp_path / "requests.db", monkeypatch)


def graph_calls(sandbox: Any, since: int = 0) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in sandbox.requests[since:]]


def test_two_runs_onboard_once_and_record_each_row(
    run_dag: Any, sandbox: Any, table: RequestsTable, graph: Any
) -> None:
    first, second = sandbox.waba_ids
    # Left half done by an earlier run: created, never registered.
    half_done = graph.create_phone_number(waba_id=second, cc="1", phone_number="5550300009", verified_name="Half Done")
    table.seed(
        {"request_id": "r01", "cc": "1", "phone_number": "5550300001", "verified_name": "Acme One"},
        {"request_id": "r02", "waba_id": second, "cc": "1", "phone_number": "555 030-0002",
         "verified_name": "Acme Two"},
        {"request_id": "r03", "cc": "+44", "phone_number": "7700900123", "verified_name": "Bad cc"},
        {"request_id": "r04", "cc": "1", "phone_number": "5550300004", "verified_name": "Done", "status": "onboarded",
         "phone_number_id": "1000000000000099"},
        {"request_id": "r05", "waba_id": second, "cc": "1", "phone_number": "5550300009",
         "verified_name": "Half Done"},
        {"request_id": "r06", "cc": "1", "phone_number": "5550300006", "preverified_id": "2000000000000006"},
        {"request_id": "r07", "waba_id": "9999999999", "cc": "1", "phone_number": "5550300007",
         "verified_name": "No WABA"},
    )  # fmt: skip
    sandbox.reset_requests()

    result = run_dag(DAG_ID)

    assert result.state == "success", result.task_states
    rows = table.rows()
    numbers = {n["display_phone_number"]: n for n in sandbox.numbers()}
    assert {key: row["status"] for key, row in rows.items()} == {
        "r01": "onboarded", "r02": "onboarded", "r03": "invalid", "r04": "onboarded",
        "r05": "onboarded", "r06": "onboarded", "r07": "failed",
    }  # fmt: skip
    assert rows["r05"]["phone_number_id"] == half_done["id"]
    for key in ("r01", "r02", "r05", "r06"):
        assert sandbox.register_calls(rows[key]["phone_number_id"]) == 1, key
    assert rows["r02"]["phone_number_id"] == numbers["+1 555-030-0002"]["id"]
    assert rows["r03"]["error_message"].startswith("cc: must be the dial code digits without '+'")
    assert rows["r03"]["attempts"] == 0
    assert rows["r04"]["phone_number_id"] == "1000000000000099"
    assert (rows["r07"]["error_code"], rows["r07"]["attempts"]) == (100, 1), rows["r07"]
    assert rows["r07"]["error_message"]
    assert len(sandbox.numbers()) == 4, "r01, r02, r05 (created before), r06"
    calls = graph_calls(sandbox)
    # Nothing was created twice, the half-done number was not created again, nor the done one.
    assert calls.count(("POST", f"/{first}/phone_numbers")) == 2
    assert calls.count(("POST", f"/{second}/phone_numbers")) == 1
    assert not [call for call in calls if "5550300004" in json.dumps(call)]
    written = {key: row["status"] for key, row in rows.items() if key != "r04"}
    assert result.xcom("write_back") == written, "every open row written, the done one left alone"

    before = len(sandbox.requests)
    again = run_dag(DAG_ID)

    assert again.state == "success", again.task_states
    assert table.rows() == rows, "a second run changes nothing"
    assert graph_calls(sandbox, before) == [], "done, invalid and failed rows cost no Graph call"

    # A failed row is tried again once a person resets it.
    table.reset("r07")
    third = run_dag(DAG_ID)
    assert third.state == "success", third.task_states
    assert table.rows()["r07"]["status"] == "failed"
    assert table.rows()["r07"]["attempts"] == 2
    assert graph_calls(sandbox, before) == [("GET", "/9999999999/phone_numbers")]


def test_codes_from_a_person_stop_at_needs_code(
    run_dag: Any, sandbox: Any, table: RequestsTable, graph: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_VAR_WHATSAPP_ONBOARDING_CODE_SOURCE")
    table.seed({"request_id": "p1", "cc": "1", "phone_number": "5550310001", "verified_name": "Acme Person"})

    assert run_dag(DAG_ID).state == "success"
    row = table.rows()["p1"]
    assert row["status"] == "needs_code" and row["phone_number_id"], row
    assert len(sandbox.requests_to(method="POST", path=r"/request_code$")) == 1
    assert not sandbox.requests_to(path=r"/verify_code$")

    # Until the person acts, a run sends no new code.
    assert run_dag(DAG_ID).state == "success"
    assert table.rows()["p1"]["status"] == "needs_code"
    assert len(sandbox.requests_to(method="POST", path=r"/request_code$")) == 1

    # The person enters the code (as example_whatsapp_onboarding does); the next run records it.
    graph.verify_code(row["phone_number_id"], sandbox.last_code(row["phone_number_id"]))
    graph.register_phone_number(row["phone_number_id"], PIN)
    before = len(sandbox.requests)
    assert run_dag(DAG_ID).state == "success"
    assert table.rows()["p1"]["status"] == "onboarded"
    assert table.rows()["p1"]["phone_number_id"] == row["phone_number_id"]
    assert graph_calls(sandbox, before) == [("GET", f"/{sandbox.default_waba_id}/phone_numbers")]


def test_throttled_rows_stay_pending_with_nothing_held_against_them(
    run_dag: Any, sandbox: Any, table: RequestsTable
) -> None:
    table.seed(
        {"request_id": "t1", "cc": "1", "phone_number": "5550320001", "verified_name": "Acme Throttled"},
        {"request_id": "t2", "cc": "1", "phone_number": "5550320002", "verified_name": "Acme Throttled 2"},
    )
    sandbox.inject(
        Fault.graph_error(80008, message="Rate limit hit"), count=100, method="POST", path=r"/phone_numbers$"
    )

    assert run_dag(DAG_ID, task_args=NO_RETRIES).state == "success"

    for row in table.rows().values():
        assert (row["status"], row["attempts"], row["error_code"], row["error_message"]) == ("pending", 0, None, None)
    assert sandbox.numbers() == []
    sandbox.clear_faults()
    assert run_dag(DAG_ID).state == "success"
    assert {row["status"] for row in table.rows().values()} == {"onboarded"}


def test_transient_failures_are_retried_a_bounded_number_of_runs(
    run_dag: Any, sandbox: Any, table: RequestsTable
) -> None:
    table.seed({"request_id": "x1", "cc": "1", "phone_number": "5550330001", "verified_name": "Acme Flaky"})
    sandbox.inject(
        Fault.graph_error(2, message="Service temporarily unavailable", http_status=503, is_transient=True),
        count=1000, method="POST", path=r"/phone_numbers$",
    )  # fmt: skip

    assert run_dag(DAG_ID, {"max_attempts": 2}, NO_RETRIES).state == "success"
    row = table.rows()["x1"]
    assert (row["status"], row["attempts"], row["error_code"]) == ("pending", 1, 2), row
    assert run_dag(DAG_ID, {"max_attempts": 2}, NO_RETRIES).state == "success"
    row = table.rows()["x1"]
    assert (row["status"], row["attempts"], row["error_code"]) == ("failed", 2, 2), row
    assert row["error_message"] == "Service temporarily unavailable"


def test_unreachable_database_fails_the_run_before_any_graph_call(
    run_dag: Any, sandbox: Any, table: RequestsTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devtools.airflow_deployment import free_port

    table.seed({"request_id": "d1", "cc": "1", "phone_number": "5550340001", "verified_name": "Acme Db"})
    reachable = os.environ["AIRFLOW_CONN_WHATSAPP_ONBOARDING_DB"]
    closed = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": free_port(),
        "login": "nobody",
        "schema": "requests",
    }
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_ONBOARDING_DB", json.dumps(closed))

    result = run_dag(DAG_ID, task_args=NO_RETRIES)

    assert result.state == "failed"
    assert result.task_state("read_requests") == "failed"
    assert result.task_state("plan") == "upstream_failed"
    # write_back runs whatever happened upstream: it fails too, having nothing to write.
    assert result.task_state("write_back") == "failed"
    assert sandbox.requests == []
    assert table.rows()["d1"]["status"] == "pending"

    # The same run with the table reachable does reach Graph: the empty request log above is the
    # database's doing, not a DAG that never calls Graph.
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_ONBOARDING_DB", reachable)
    assert run_dag(DAG_ID, task_args=NO_RETRIES).state == "success"
    assert sandbox.requests and table.rows()["d1"]["status"] == "onboarded"


def test_a_run_takes_at_most_max_rows_and_leaves_the_rest_untouched(
    run_dag: Any, sandbox: Any, table: RequestsTable
) -> None:
    first, second = sandbox.waba_ids
    table.seed(
        *(
            {"request_id": f"m{w}{i:02d}", "waba_id": waba, "cc": "1", "phone_number": f"55504{w}{i:04d}",
             "verified_name": f"Acme Many {w}-{i}", "created_at": f"2026-01-01 00:{i:02d}:0{w}"}
            for w, waba in enumerate((first, second))
            for i in range(12)
        )
    )  # fmt: skip

    result = run_dag(DAG_ID, {"max_rows": 10, "batch_size": 4})

    assert result.state == "success", result.task_states
    rows = table.rows()
    taken = {key for key, row in rows.items() if row["status"] == "onboarded"}
    # Oldest first, in turns: five of each WABA; the other fourteen wait, as they were.
    assert taken == {f"m{w}{i:02d}" for w in (0, 1) for i in range(5)}
    for key, row in rows.items():
        if key not in taken:
            assert (row["status"], row["attempts"], row["phone_number_id"]) == ("pending", 0, None), key
    assert len(sandbox.numbers()) == 10
    # Ten rows in batches of four, a WABA's rows together: three onboarding tasks.
    assert sorted(index for task_id, index in result.task_states if task_id == "onboard") == [0, 1, 2]

    again = run_dag(DAG_ID, {"max_rows": 10, "batch_size": 4})
    assert again.state == "success"
    assert sum(row["status"] == "onboarded" for row in table.rows().values()) == 20


def test_an_onboarding_task_without_a_report_fails_the_run_and_spends_no_attempt(
    run_dag: Any, sandbox: Any, table: RequestsTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    table.seed(
        {"request_id": "u1", "cc": "1", "phone_number": "5550350001", "verified_name": "Acme Untouched"},
        {"request_id": "u2", "cc": "1", "phone_number": "5550350002", "verified_name": "Acme Untouched 2"},
    )
    # Airflow's side fails: the batch's task cannot read its PIN, so it ends before any report.
    monkeypatch.delenv("AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN")

    result = run_dag(DAG_ID, task_args=NO_RETRIES)

    assert result.state == "failed"
    assert result.task_state("onboard", 0) == "failed"
    assert result.task_state("write_back") == "failed"
    for row in table.rows().values():
        assert (row["status"], row["attempts"], row["error_code"], row["error_message"]) == ("pending", 0, None, None)
    assert sandbox.requests == []


def test_a_failed_plan_fails_the_run_before_any_graph_call_and_spends_no_attempt(
    run_dag: Any, sandbox: Any, table: RequestsTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    table.seed(*({"request_id": f"e{i}", "cc": "1", "phone_number": f"555036000{i}", "verified_name": "Acme E"}
                 for i in range(3)))  # fmt: skip
    # More batches than Airflow maps a task over: the plan says so, naming the setting.
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")

    result = run_dag(DAG_ID, {"batch_size": 1}, NO_RETRIES)

    assert result.state == "failed"
    assert result.task_state("plan") == "failed"
    assert result.task_state("write_back") == "failed"
    assert {row["attempts"] for row in table.rows().values()} == {0}
    assert {row["status"] for row in table.rows().values()} == {"pending"}
    assert sandbox.requests == []
