"""The requests table's plan, outcomes and write-back, without Airflow or Graph."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from airflow_provider_whatsapp.onboarding import NOT_CREATED, NOT_REGISTERED, ONBOARDED, UNKNOWN
from airflow_provider_whatsapp.onboarding_requests import (
    CREATE_FOR_PERSON,
    CREATE_PREVERIFIED,
    REQUEST_CODE_FOR_PERSON,
    input_rule,
    onboarded_by_waba,
    outcome,
    plan_requests,
    requests_starting_at,
    select_open_requests,
    update_outcome,
    write_outcomes,
)
from airflow_provider_whatsapp.onboarding_tasks import StepGroup, run_results
from tests.scheduled_onboarding_table import SELECT_TABLE, ddl_statements, seed_rows, table_by_request

WABA = "102290129340398"


def row(request_id: str = "r1", **fields: Any) -> dict[str, Any]:
    return {"request_id": request_id, "cc": "1", "phone_number": "5550100001", "verified_name": "Acme",
            "status": "pending", "attempts": 0, **fields}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"cc": "+1"}, "cc: must be the dial code digits without '+'"),
        ({"phone_number": "555-CALL"}, "phone_number: must hold digits only"),
        ({"verified_name": None}, "verified_name: is required for a number that is not pre-verified"),
        ({"verified_name": "X"}, "verified_name:"),
        ({"waba_id": "acme"}, "waba_id: must be a numeric Graph ID"),
        ({"verified_name": None, "preverified_id": "x1"}, "preverified_id: must be a numeric Graph ID"),
    ],
)
def test_input_rule_names_the_field_and_the_rule(fields: dict[str, Any], rule: str) -> None:
    found = input_rule(row(**fields))
    assert found is not None and found.startswith(rule), found


def test_good_input_breaks_no_rule() -> None:
    assert input_rule(row(waba_id=WABA, phone_number="(555) 010-0001")) is None
    assert input_rule(row(verified_name=None, preverified_id="2000000000000001")) is None


def entry(outcome_: str | None, **fields: Any) -> dict[str, Any]:
    return {"outcome": outcome_, "phone_number_id": None, "started_at": "create_phone_number", "error": None, **fields}


def error(error_class: str, code: int | None = None, message: str = "boom") -> dict[str, Any]:
    return {"error_class": error_class, "code": code, "error_subcode": 33 if code else None, "message": message}


@pytest.mark.parametrize(
    ("the_row", "the_entry", "result", "expected"),
    [
        (row(), entry(ONBOARDED, phone_number_id="11"), {"registered_id": "11"}, ("onboarded", "11", None, 1)),
        (row(attempts=2), entry(ONBOARDED, phone_number_id="11", started_at=None), {}, ("onboarded", "11", None, 2)),
        (row(), entry(NOT_CREATED, error=error("GraphThrottledError", 80008)), {}, None),
        (row(), entry(NOT_CREATED, error=error("InvalidInputError")), {}, ("invalid", None, None, 0)),
        (row(), entry(NOT_REGISTERED, phone_number_id="12"), {"code_requested": True}, ("needs_code", "12", None, 1)),
        (row(status="needs_code"), entry(NOT_REGISTERED, phone_number_id="12", started_at=None), {}, None),
        (row(), entry("banned", phone_number_id="13", started_at=None), {}, ("failed", "13", None, 0)),
        (row(), entry(UNKNOWN, error=error("GraphPermanentError", 100)), {}, ("failed", None, 100, 1)),
        (row(), entry(NOT_CREATED, error=error("GraphTransientError", 2)), {}, ("pending", None, 2, 1)),
        (row(attempts=4), entry(NOT_CREATED, error=error("GraphConnectionError")), {}, ("failed", None, None, 5)),
        (row(), entry(NOT_REGISTERED, phone_number_id="14"), {}, ("pending", "14", None, 1)),
    ],
)
def test_outcome_of_each_kind_of_end(
    the_row: dict[str, Any], the_entry: dict[str, Any], result: dict[str, Any], expected: tuple[Any, ...] | None
) -> None:
    values = outcome(the_row, the_entry, result, max_attempts=5)
    if expected is None:
        assert values is None
        return
    assert values is not None
    assert (values["status"], values["phone_number_id"], values["error_code"], values["attempts"]) == expected
    if values["status"] in ("failed", "invalid") or values["error_code"]:
        assert values["error_message"]


def test_plan_sets_bad_input_aside_and_routes_each_row() -> None:
    reads: list[str] = []
    nodes = {
        "15550100002": {"id": "22", "display_phone_number": "+1 555-010-0002", "status": "PENDING",
                        "code_verification_status": "NOT_VERIFIED"},
        "15550100003": {"id": "23", "display_phone_number": "+1 555-010-0003", "status": "PENDING",
                        "code_verification_status": "NOT_VERIFIED"},
    }  # fmt: skip

    def read(waba_id: str) -> dict[str, dict[str, Any]]:
        reads.append(waba_id)
        return nodes

    rows = [
        row("r1"),
        row("r2", phone_number="5550100002"),
        row("r3", phone_number="5550100003", status="needs_code"),
        row("r4", phone_number="5550100004", verified_name=None, preverified_id="2000000000000004"),
        row("r5", cc="+1"),
    ]
    planned = plan_requests(rows, WABA, read, codes_from_person=True)
    assert reads == [WABA], "one read for the WABA, none for bad input"
    assert set(planned["invalid"]) == {"r5"}
    assert planned["invalid"]["r5"]["status"] == "invalid"
    starts = {number["row"]["request_id"]: number["start"] for number in planned["numbers"]}
    assert starts == {"r1": CREATE_FOR_PERSON, "r2": REQUEST_CODE_FOR_PERSON, "r3": None, "r4": CREATE_PREVERIFIED}
    [preverified] = requests_starting_at(planned["numbers"], CREATE_PREVERIFIED)
    assert preverified["preverified_id"] == "2000000000000004"
    assert requests_starting_at(planned["numbers"], REQUEST_CODE_FOR_PERSON) == [
        {"phone_number_id": "22", "waba_id": WABA}
    ]

    from_sandbox = plan_requests(rows, WABA, read, codes_from_person=False)
    assert [number["start"] for number in from_sandbox["numbers"]] == [
        "create_phone_number", "request_code", "request_code", CREATE_PREVERIFIED,
    ]  # fmt: skip


def test_run_results_read_each_numbers_tasks() -> None:
    groups = {
        "create_phone_number": StepGroup("onboard", ("create_phone_number", "request_code", "verify_code", "register")),
        CREATE_FOR_PERSON: StepGroup("onboard_until_code", ("create_phone_number", "request_code")),
    }
    numbers = [{"start": "create_phone_number"}, {"start": CREATE_FOR_PERSON}, {"start": None},
               {"start": "create_phone_number"}]  # fmt: skip
    xcoms = {
        ("onboard.request_code", 0, "return_value"): "31",
        ("onboard.register", 0, "return_value"): "31",
        ("onboard_until_code.request_code", 0, "return_value"): "32",
        ("onboard.verify_code", 1, "whatsapp_error"): {"code": 100},
    }
    results = run_results(numbers, groups, lambda task_id, index, key: xcoms.get((task_id, index, key)))
    assert results == [
        {"code_requested": True, "registered_id": "31"},
        {"code_requested": True},
        {},
        {"failed_step": "verify_code", "error": {"code": 100}},
    ]


def test_each_row_is_written_in_its_own_transaction() -> None:
    connection = sqlite3.connect(":memory:")
    for statement in ddl_statements():
        connection.execute(statement)
    seed_rows(connection.execute, "?", [row("r1"), row("r2"), row("r3")])
    connection.commit()
    values = {"phone_number_id": "41", "error_code": None, "error_subcode": None, "error_message": None, "attempts": 1}
    outcomes = {
        "r1": {**values, "status": "onboarded"},
        "r2": {**values, "status": None},  # breaks NOT NULL: rolled back alone
        "r3": {**values, "status": "onboarded", "phone_number_id": "43"},
    }
    unwritten = write_outcomes(connection, "?", outcomes)
    assert len(unwritten) == 1 and unwritten[0].startswith("r2: IntegrityError"), unwritten
    table = table_by_request(connection.execute(SELECT_TABLE).fetchall())
    assert {key: (r["status"], r["phone_number_id"]) for key, r in table.items()} == {
        "r1": ("onboarded", "41"), "r2": ("pending", None), "r3": ("onboarded", "43"),
    }  # fmt: skip
    assert onboarded_by_waba([row("r1", waba_id=WABA), row("r2"), row("r3")], outcomes, "900") == {
        WABA: {"waba_id": WABA, "phone_number_ids": ["41"], "request_ids": ["r1"]},
        "900": {"waba_id": "900", "phone_number_ids": ["43"], "request_ids": ["r3"]},
    }


def test_sql_uses_the_hooks_placeholder() -> None:
    sql, parameters = select_open_requests("%s")
    assert "status IN (%s, %s)" in sql and parameters == ("pending", "needs_code")
    assert update_outcome("?").endswith("updated_at = CURRENT_TIMESTAMP WHERE request_id = ?")
