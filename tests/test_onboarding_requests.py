"""The requests table's plan, outcomes and write-back, without Airflow or Graph."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import GraphPermanentError, InvalidInputError
from airflow_provider_whatsapp.onboarding.plan import NOT_CREATED, NOT_REGISTERED, ONBOARDED, UNKNOWN
from airflow_provider_whatsapp.onboarding.requests_table import (
    input_rule,
    onboarded_by_waba,
    outcome,
    outcomes_of_run,
    plan_requests,
    select_open_requests,
    update_outcome,
    write_outcomes,
)
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
        (row(status="needs_code"), entry(NOT_REGISTERED, phone_number_id="12"), {"waiting_for_code": True}, None),
        (row(), entry("banned", phone_number_id="13", started_at=None), {}, ("failed", "13", None, 0)),
        (row(), entry(UNKNOWN, error=error("GraphPermanentError", 100)), {}, ("failed", None, 100, 1)),
        (row(), entry(NOT_CREATED, error=error("GraphTransientError", 2)), {}, ("pending", None, 2, 1)),
        (row(attempts=4), entry(NOT_CREATED, error=error("GraphResponseError")), {}, ("failed", None, None, 5)),
        # Graph unreachable, the deadline, or nothing said: not the row's attempt.
        (row(attempts=4), entry(NOT_CREATED, error=error("GraphConnectionError")), {}, None),
        (row(), entry(NOT_REGISTERED, phone_number_id="14"), {"interrupted": "the deadline"}, None),
        (row(), entry(NOT_REGISTERED, phone_number_id="14"), {}, None),
    ],
)
def test_outcome_of_each_kind_of_end(
    the_row: dict[str, Any], the_entry: dict[str, Any], result: dict[str, Any], expected: tuple[Any, ...] | None
) -> None:
    values = outcome(the_row, {**the_entry, "result": result}, max_attempts=5)
    if expected is None:
        assert values is None
        return
    assert values is not None
    assert (values["status"], values["phone_number_id"], values["error_code"], values["attempts"]) == expected
    if values["status"] in ("failed", "invalid") or values["error_code"]:
        assert values["error_message"]


def test_a_row_is_failed_only_with_graphs_error_classified_by_class() -> None:
    # A subclass counts as its class (issubclass), whatever its name.
    class ProxyGatewayError(InvalidInputError):
        pass

    values = outcome(row(), entry(NOT_CREATED, error=error("ProxyGatewayError")), max_attempts=5)
    assert values is not None and values["status"] == "invalid"
    # A class the provider does not know is not a Graph refusal it can name: counted as Graph's error.
    unknown = outcome(row(), entry(NOT_CREATED, error=error("SomethingElse", 7)), max_attempts=5)
    assert unknown is not None and (unknown["status"], unknown["error_code"]) == ("failed", 7)


def test_plan_sets_bad_input_aside_and_batches_the_rest() -> None:
    rows = [
        row("r1"),
        row("r2", phone_number="5550100002", waba_id="900"),
        row("r3", phone_number="5550100003", status="needs_code"),
        row("r4", phone_number="5550100004", verified_name=None, preverified_id="2000000000000004"),
        row("r5", cc="+1"),
    ]
    planned = plan_requests(rows, WABA, codes_from_person=True, batch_size=2)
    assert set(planned["invalid"]) == {"r5"}
    assert planned["invalid"]["r5"]["status"] == "invalid"
    # A WABA's rows together, in the order read; each row keyed by its request.
    assert [[number["key"] for number in batch] for batch in planned["batches"]] == [["r1", "r3"], ["r4", "r2"]]
    by_key = {number["key"]: number for batch in planned["batches"] for number in batch}
    assert by_key["r3"]["code_requested"] is True, "a person is to enter its code: no new one"
    assert by_key["r4"]["preverified_id"] == "2000000000000004" and "verified_name" not in by_key["r4"]
    assert by_key["r2"]["waba_id"] == "900" and "waba_id" not in by_key["r1"]

    from_sandbox = plan_requests(rows, WABA, codes_from_person=False)
    assert not any(number.get("code_requested") for batch in from_sandbox["batches"] for number in batch)
    with pytest.raises(InvalidInputError, match=r"max_map_length = 1\)"):
        plan_requests(rows, WABA, codes_from_person=False, batch_size=1, max_batches=1)


def test_outcomes_of_a_run_leave_the_rows_of_a_batch_without_report_alone() -> None:
    rows = [row("r1"), row("r2", phone_number="5550100002"), row("r3", cc="+1")]
    planned = plan_requests(rows, WABA, codes_from_person=False, batch_size=1)
    reports = [{"numbers": [{**entry(ONBOARDED, phone_number_id="11"), "key": "r1", "result": {}}]}, None]
    outcomes, missing = outcomes_of_run(rows, planned, reports, max_attempts=5)
    assert missing == [1]
    assert {key: values["status"] for key, values in outcomes.items()} == {"r1": "onboarded", "r3": "invalid"}


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
    sql, parameters = select_open_requests("%s", 50)
    assert "status IN (%s, %s)" in sql and sql.endswith("LIMIT %s")
    assert parameters == ("pending", "needs_code", 50)
    assert update_outcome("?").endswith("updated_at = CURRENT_TIMESTAMP WHERE request_id = ?")
    with pytest.raises(InvalidInputError, match="max_rows"):
        select_open_requests("?", 0)


def test_a_run_takes_the_oldest_rows_in_turns_across_wabas() -> None:
    connection = sqlite3.connect(":memory:")
    for statement in ddl_statements():
        connection.execute(statement)
    seed = [row(f"a{i}", waba_id="100", created_at=f"2026-01-0{i + 1}") for i in range(4)]
    seed += [row(f"b{i}", waba_id="200", created_at=f"2026-01-0{i + 5}") for i in range(2)]
    seed += [row("done", waba_id="200", status="onboarded", created_at="2025-12-01")]
    seed_rows(connection.execute, "?", seed)
    sql, parameters = select_open_requests("?", 4)
    taken = [record[0] for record in connection.execute(sql, parameters).fetchall()]
    # Each WABA's oldest first, then each one's second...; the rest wait for the next run.
    assert taken == ["a0", "b0", "a1", "b1"]


def test_a_failed_row_says_the_way_forward_graph_errors_have() -> None:
    # Parsed from a real answer's shape, so the row holds what the error's to_dict() carried.
    from airflow_provider_whatsapp.exceptions import WAY_FORWARD
    from airflow_provider_whatsapp.hooks.graph import parse_response

    body = b'{"error": {"message": "Cannot add", "code": 200000, "fbtrace_id": "AbC"}}'
    try:
        parse_response(400, {}, body)
    except GraphPermanentError as raised:
        recorded = raised.to_dict()
    values = outcome(row(), {**entry(NOT_CREATED, error=recorded), "result": {}}, max_attempts=5)
    assert values is not None and values["status"] == "failed" and values["error_code"] == 200000
    assert values["error_message"] == f"Cannot add (way forward: {WAY_FORWARD[200000]})"
