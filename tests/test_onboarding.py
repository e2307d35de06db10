"""Planning and reporting a bulk run from what Graph holds (``onboarding.plan`` and ``onboarding.report``).

Plain functions on plain values: Graph is a dict of nodes per WABA here, read through a counting
reader. The example DAG runs them against the sandbox in tests/reliability/test_crash_rerun.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import GraphPermanentError, GraphTransientError
from airflow_provider_whatsapp.onboarding.plan import (
    CREATE,
    NOT_CREATED,
    NOT_REGISTERED,
    ONBOARDED,
    REGISTER,
    REQUEST_CODE,
    UNKNOWN,
    Progress,
    map_indexes,
    plan_onboarding,
    progress_of,
    starting_at,
)
from airflow_provider_whatsapp.onboarding.report import describe, report_onboarding

WABA = "102290129340398"
OTHER_WABA = "102290129340399"


def node(number_id: str, digits: str, status: str = "PENDING", verification: str = "NOT_VERIFIED", **extra: Any) -> Any:
    return {
        "id": number_id,
        "display_phone_number": f"+{digits[0]} {digits[1:4]}-{digits[4:7]}-{digits[7:]}",
        "verified_name": extra.pop("verified_name", "Acme"),
        "status": status,
        "code_verification_status": verification,
        "platform_type": extra.pop("platform_type", "NOT_APPLICABLE"),
        **extra,
    }


class Graph:
    """Nodes per WABA, read the way :func:`numbers_on_waba` returns them; counts the reads."""

    def __init__(self, **nodes_by_waba: list[dict[str, Any]]) -> None:
        self.nodes = {
            waba: {"".join(c for c in n["display_phone_number"] if c.isdigit()): n for n in nodes}
            for waba, nodes in nodes_by_waba.items()
        }
        self.reads: Counter[str] = Counter()
        self.failure: Exception | None = None

    def read(self, waba_id: str) -> dict[str, dict[str, Any]]:
        self.reads[waba_id] += 1
        if self.failure is not None:
            raise self.failure
        return dict(self.nodes.get(waba_id, {}))


def row(national: str, name: str = "Acme", waba_id: str | None = None, cc: str = "1") -> dict[str, Any]:
    return {"cc": cc, "phone_number": national, "verified_name": name, "waba_id": waba_id}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, Progress(NOT_CREATED, CREATE)),
        ({"status": "PENDING", "code_verification_status": "NOT_VERIFIED"}, Progress(NOT_REGISTERED, REQUEST_CODE)),
        ({"status": "PENDING", "code_verification_status": "EXPIRED"}, Progress(NOT_REGISTERED, REQUEST_CODE)),
        ({"status": "UNVERIFIED"}, Progress(NOT_REGISTERED, REQUEST_CODE)),
        ({"status": "PENDING", "code_verification_status": "VERIFIED"}, Progress(NOT_REGISTERED, REGISTER)),
        ({"code_verification_status": "verified"}, Progress(NOT_REGISTERED, REGISTER)),
        # Registered, Graph has not connected it yet: registering again would spend a register call.
        (
            {"status": "PENDING", "code_verification_status": "VERIFIED", "platform_type": "CLOUD_API"},
            Progress(ONBOARDED, None),
        ),
        ({"status": "CONNECTED"}, Progress(ONBOARDED, None)),
        ({"status": "FLAGGED"}, Progress(ONBOARDED, None)),
        ({"status": "RESTRICTED"}, Progress(ONBOARDED, None)),
        ({"status": "BANNED", "code_verification_status": "VERIFIED"}, Progress("banned", None)),
        ({"status": "DELETED"}, Progress("deleted", None)),
        ({"status": "DISCONNECTED", "code_verification_status": "VERIFIED"}, Progress("disconnected", None)),
        ({"status": "MIGRATED"}, Progress("migrated", None)),
        ({"status": "SOMETHING_NEW"}, Progress("something_new", None)),
    ],
)
def test_progress_of_a_node(state: dict[str, Any] | None, expected: Progress) -> None:
    assert progress_of(state) == expected


def test_plan_reads_each_waba_once_and_starts_each_number_where_it_stands() -> None:
    graph = Graph(
        **{
            WABA: [
                node("11", "15550000002"),
                node("12", "15550000003", verification="VERIFIED"),
                node("13", "15550000004", status="CONNECTED", verification="VERIFIED"),
                node("14", "15550000005", status="BANNED"),
            ],
            OTHER_WABA: [node("21", "15550000007", verified_name="Acme Old")],
        }
    )
    rows = [
        row("5550000001"),
        row("5550000002"),
        row("555-000-0003"),
        row("5550000004"),
        row("5550000005"),
        row("5550000006", waba_id=f" {OTHER_WABA} "),
        row("5550000007", name="Acme New", waba_id=OTHER_WABA),
        row("5550000001", waba_id="  "),
    ]
    plan = plan_onboarding(rows, WABA, graph.read)

    assert graph.reads == {WABA: 1, OTHER_WABA: 1}
    assert [(n["start"], n.get("phone_number_id")) for n in plan] == [
        (CREATE, None),
        (REQUEST_CODE, "11"),
        (REGISTER, "12"),
        (None, "13"),
        (None, "14"),
        (CREATE, None),
        (REQUEST_CODE, "21"),
        (None, None),
    ]
    assert [n["waba_id"] for n in plan] == [WABA] * 5 + [OTHER_WABA] * 2 + [WABA]
    assert plan[3]["outcome"] == ONBOARDED
    assert plan[4]["outcome"] == "banned"
    assert plan[6]["adopted_as"] == "Acme Old"
    assert plan[7]["duplicate_of"] == 0
    assert starting_at(plan, CREATE) == [
        {"cc": "1", "phone_number": "5550000001", "verified_name": "Acme", "waba_id": WABA},
        {"cc": "1", "phone_number": "5550000006", "verified_name": "Acme", "waba_id": OTHER_WABA},
    ]
    assert starting_at(plan, REQUEST_CODE) == [
        {"phone_number_id": "11", "waba_id": WABA},
        {"phone_number_id": "21", "waba_id": OTHER_WABA},
    ]
    assert starting_at(plan, REGISTER) == [{"phone_number_id": "12", "waba_id": WABA}]
    assert map_indexes(plan) == [0, 0, 0, None, None, 1, 1, None]


def test_plan_sends_bad_input_to_create_without_reading_graph() -> None:
    graph = Graph()
    plan = plan_onboarding(
        [row("7700900123", cc="+44"), row("5550000001", waba_id="not-a-waba"), row("5550000002")], None, graph.read
    )
    # The create operator rejects each, naming the rule (cc, waba_id, waba_id required).
    assert [n["start"] for n in plan] == [CREATE, CREATE, CREATE]
    assert [n["waba_id"] for n in plan] == [None, "not-a-waba", None]
    assert graph.reads == {}


def test_plan_leaves_a_waba_that_cannot_be_read_alone_and_raises_what_a_retry_may_fix() -> None:
    graph = Graph()
    graph.failure = GraphPermanentError("(#200) Permissions error", code=200, fbtrace_id="AbC")
    [planned] = plan_onboarding([row("5550000001")], WABA, graph.read)
    assert (planned["start"], planned["outcome"]) == (None, UNKNOWN)
    assert planned["error"]["code"] == 200

    graph.failure = GraphTransientError("down", code=2)
    with pytest.raises(GraphTransientError):
        plan_onboarding([row("5550000001")], WABA, graph.read)


def test_report_trusts_the_runs_answers_and_reads_graph_once_per_waba_for_the_rest() -> None:
    graph = Graph(**{WABA: []})
    rows = [row("5550000001"), row("5550000002"), row("5550000003"), row("7700900123", cc="+44"), row("5550000009")]
    rows.append(row("5550000001", waba_id=OTHER_WABA))
    plan = plan_onboarding(rows, WABA, graph.read)
    # The run: the first registered; the second died after its create was applied; the third
    # was refused by Graph; the bad row was rejected; the fifth's tasks left no trace.
    graph.nodes[WABA]["15550000002"] = node("31", "15550000002")
    create_error = {"error_class": "GraphPermanentError", "message": "(#200000) Cannot add", "code": 200000}
    results = [
        {"registered_id": "30"},
        {"failed_step": CREATE, "error": {"error_class": "GraphConnectionError", "message": "dropped"}},
        {"failed_step": CREATE, "error": create_error},
        {"failed_step": CREATE, "error": {"error_class": "InvalidInputError", "message": "cc: ...", "field": "cc"}},
        {},
        {"registered_id": "40"},
    ]
    graph.reads.clear()

    report = report_onboarding(plan, results, graph.read)

    assert graph.reads == {WABA: 1}
    outcomes = [(e["outcome"], e["phone_number_id"], e["next_step"]) for e in report["numbers"]]
    assert outcomes == [
        (ONBOARDED, "30", None),
        (NOT_REGISTERED, "31", REQUEST_CODE),
        (NOT_CREATED, None, None),
        (NOT_CREATED, None, None),
        (NOT_CREATED, None, None),
        (ONBOARDED, "40", None),
    ]
    assert report["counts"] == {ONBOARDED: 2, NOT_REGISTERED: 1, NOT_CREATED: 3}
    assert report["numbers"][1]["error"]["error_class"] == "GraphConnectionError"
    assert report["numbers"][1]["note"] == "re-run the DAG with the same numbers: it continues at request_code"
    assert report["numbers"][2]["error"] == create_error
    assert report["numbers"][3]["error"]["field"] == "cc"
    # Nothing came back from Graph: said as what happened in Airflow, never as Graph's refusal.
    assert report["numbers"][4]["note"] == (
        "its create_phone_number step left no result: its task did not run to its end "
        "(an upstream task failed, it was killed, or it never ran)"
    )
    line = describe(report["numbers"][1])
    assert line.startswith(f"cc=1 phone_number=5550000002 on WABA {WABA}: created, not registered | phone number ID 31")
    assert "continues at request_code" in line


def test_report_of_a_number_whose_register_was_applied_but_not_reported() -> None:
    graph = Graph(**{WABA: [node("11", "15550000001", verification="VERIFIED")]})
    plan = plan_onboarding([row("5550000001")], WABA, graph.read)
    graph.nodes[WABA]["15550000001"].update(platform_type="CLOUD_API")
    [entry] = report_onboarding(plan, [{"failed_step": REGISTER, "error": None}], graph.read)["numbers"]
    assert (entry["outcome"], entry["started_at"]) == (ONBOARDED, REGISTER)
    assert entry["note"] == "registered, though its task did not report it"


def test_report_says_unknown_when_graph_cannot_be_read() -> None:
    graph = Graph(**{WABA: []})
    plan = plan_onboarding([row("5550000001")], WABA, graph.read)
    graph.failure = GraphTransientError("Service temporarily unavailable", code=2)
    [entry] = report_onboarding(plan, [{"failed_step": CREATE, "error": None}], graph.read)["numbers"]
    assert entry["outcome"] == UNKNOWN
    assert entry["note"] == "did not finish, and Graph could not be read to check: Service temporarily unavailable"


def test_report_of_numbers_the_plan_left_alone() -> None:
    graph = Graph(
        **{
            WABA: [
                node("11", "15550000001", status="CONNECTED", verified_name="Acme Old"),
                node("12", "15550000002", status="DELETED"),
            ]
        }
    )
    plan = plan_onboarding([row("5550000001"), row("5550000002"), row("5550000001")], WABA, graph.read)
    report = report_onboarding(plan, [{}, {}, {}], graph.read)
    assert graph.reads == {WABA: 1}
    assert [(e["outcome"], e["status"], e["note"]) for e in report["numbers"]] == [
        (
            ONBOARDED,
            "CONNECTED",
            "already onboarded before this run; adopted: on the WABA as 'Acme Old', name not changed",
        ),
        ("deleted", "DELETED", None),
        (ONBOARDED, "CONNECTED", "same number as row 0: onboarded once, reported there"),
    ]
