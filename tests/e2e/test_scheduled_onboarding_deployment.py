"""The scheduled-onboarding DAG in the real deployment: its requests table in the deployment's
PostgreSQL, two runs through the scheduler, and the downstream DAG on the asset event.

Runs after ``test_deployment.py`` (file order) in the same shared deployment.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from airflow_provider_whatsapp.hooks.whatsapp_async import TRIGGER_USER_AGENT
from airflow_provider_whatsapp.onboarding.requests_table import asset_uri
from devtools.airflow_deployment import AirflowDeployment, wait_until
from tests.e2e.shared_deployment import REQUESTS_DB_CONN_ID, Deployment
from tests.scheduled_onboarding_table import SELECT_TABLE, ddl_statements, seed_rows, table_by_request

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(900)]

SCHEDULED = "example_whatsapp_scheduled_onboarding"
DOWNSTREAM = "example_whatsapp_onboarded_numbers"
INVALID = {
    "q03": ({"cc": "+44", "phone_number": "7700900123"}, "cc: must be the dial code digits without '+'"),
    "q11": ({"cc": "1", "phone_number": "555-CALL-ME"}, "phone_number: must hold digits only"),
    "q17": ({"cc": "1", "phone_number": "5550400017", "verified_name": "X"}, "verified_name:"),
    "q25": ({"cc": "1", "phone_number": "5550400025", "waba_id": "acme"}, "waba_id: must be a numeric Graph ID"),
}
DONE = {"q07": "1999000000000007", "q20": "1999000000000020"}
HALF_DONE = "q13"


def preverified(index: int) -> bool:
    """Every even new row: its number is pre-verified (create and register, no code steps)."""
    return index % 2 == 0 and f"q{index:02d}" not in {*INVALID, *DONE, HALF_DONE}


def requests_rows(wabas: list[str]) -> list[dict[str, Any]]:
    """30 requests on 3 WABAs: 4 with bad input, 2 onboarded before, 1 created but not registered,
    14 pre-verified."""
    rows = []
    for index in range(1, 31):
        request_id = f"q{index:02d}"
        row: dict[str, Any] = {
            "request_id": request_id,
            "waba_id": wabas[index % 3],
            "cc": "1",
            "phone_number": f"55504000{index:02d}",
            "verified_name": f"Acme Scheduled {index}",
        }
        if request_id in INVALID:
            row.update(INVALID[request_id][0])
        if preverified(index):
            row["preverified_id"] = f"20000000000000{index:02d}"
        if request_id in DONE:
            row.update(status="onboarded", phone_number_id=DONE[request_id])
        rows.append(row)
    return rows


def table(airflow: AirflowDeployment) -> dict[str, dict[str, Any]]:
    return table_by_request(airflow.sql(REQUESTS_DB_CONN_ID, SELECT_TABLE))


def show(title: str, rows: dict[str, dict[str, Any]]) -> None:
    """The table, a line a row, for the test's output."""
    print(f"\n{title}")
    for request_id, row in rows.items():
        error = f" error={row['error_code']}/{row['error_subcode']}" if row["error_code"] else ""
        message = f" message={row['error_message']!r}" if row["error_message"] else ""
        print(
            f"  {request_id} waba={row['waba_id']} {row['cc']}/{row['phone_number']} {row['status']}"
            f" id={row['phone_number_id']} attempts={row['attempts']}{error}{message}"
        )


def graph_calls(deployment: Deployment, since: int) -> list[tuple[str, str]]:
    """The calls of the scheduled DAG's runs (not the status sensors' of other tests' runs)."""
    requests = deployment.sandbox.requests[since:]
    return [(r.method, r.path) for r in requests if r.headers.get("User-Agent") != TRIGGER_USER_AGENT]


def scheduled_run(airflow: AirflowDeployment) -> dict[str, Any]:
    """The run the scheduler creates once the DAG is unpaused (catchup off: the latest hour)."""

    def created() -> dict[str, Any] | None:
        runs = airflow.api("GET", f"/dags/{SCHEDULED}/dagRuns")["dag_runs"]
        return runs[0] if runs else None

    run: dict[str, Any] = wait_until(created, 180, f"the scheduler to create a run of {SCHEDULED}")
    return run


def test_scheduled_onboarding_two_runs_and_the_downstream_dag(deployment: Deployment) -> None:
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

    started = time.monotonic()

    airflow, sandbox = deployment.airflow, deployment.sandbox
    wabas = [sandbox.default_waba_id, sandbox.add_waba(), sandbox.add_waba()]
    for statement in ddl_statements():
        airflow.sql(REQUESTS_DB_CONN_ID, statement)
    rows = requests_rows(wabas)
    seed_rows(lambda sql, values: airflow.sql(REQUESTS_DB_CONN_ID, sql, list(values)), "%s", rows)
    # Left half done by an earlier run: created on Graph, never registered.
    half = rows[int(HALF_DONE[1:]) - 1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json())
        hook = WhatsAppBusinessHook()
        half_done_id = hook.create_phone_number(
            waba_id=half["waba_id"], cc="1", phone_number=half["phone_number"], verified_name=half["verified_name"]
        )["id"]
        hook.close()
    numbers_before = {n["id"] for n in sandbox.numbers()}

    # Run 1: the scheduler's own run, once the DAG is unpaused.
    calls_before = len(sandbox.requests)
    airflow.wait_for_dag(SCHEDULED)
    airflow.api("PATCH", f"/dags/{SCHEDULED}", json={"is_paused": False})
    first = scheduled_run(airflow)
    assert first["run_type"] == "scheduled", first
    assert airflow.wait_for_run(SCHEDULED, first["dag_run_id"], timeout=600) == "success", airflow.where_to_look()
    after_first = table(airflow)
    first_calls = graph_calls(deployment, calls_before)
    show(f"after run 1 ({len(first_calls)} Graph calls: {dict(Counter(first_calls))}):", after_first)

    new = [row["request_id"] for row in rows if row["request_id"] not in {*INVALID, *DONE}]
    assert len(new) == 24
    for request_id in new:
        row = after_first[request_id]
        assert (row["status"], row["attempts"], row["error_code"]) == ("onboarded", 1, None), row
        assert sandbox.register_calls(row["phone_number_id"]) == 1, row
    assert after_first[HALF_DONE]["phone_number_id"] == half_done_id
    for request_id, (_, rule) in INVALID.items():
        row = after_first[request_id]
        assert (row["status"], row["phone_number_id"], row["attempts"]) == ("invalid", None, 0), row
        assert row["error_message"].startswith(rule), row
    for request_id, phone_number_id in DONE.items():
        row = after_first[request_id]
        assert (row["status"], row["phone_number_id"], row["attempts"]) == ("onboarded", phone_number_id, 0), row
    # One list read per WABA; four calls per new number, two per pre-verified one, three for the
    # half-done one; nothing for bad input or done rows, and no number created twice.
    by_code = [r for r in new if r != HALF_DONE and not preverified(int(r[1:]))]
    assert (len(by_code), len(new) - len(by_code) - 1) == (9, 14)
    # The default WABA holds the numbers of the deployment's earlier tests, so its list may take
    # more than one page: a read is its first page, the pages after it carry Graph's cursor.
    gets = [
        r
        for r in sandbox.requests[calls_before:]
        if r.method == "GET" and r.headers.get("User-Agent") != TRIGGER_USER_AGENT
    ]
    first_pages = Counter(r.path for r in gets if "after" not in r.query)
    reads = [(r.path, r.status, r.fault, sorted(r.query), round(r.time, 3)) for r in gets]
    assert first_pages == {f"/{waba}/phone_numbers": 1 for waba in wabas}, reads
    assert Counter(method for method, _ in first_calls) == {"GET": len(gets), "POST": 9 * 4 + 14 * 2 + 3}, reads
    assert len([path for _, path in first_calls if path.endswith("/request_code")]) == 9 + 1
    assert {path for method, path in first_calls if method == "GET"} == {f"/{waba}/phone_numbers" for waba in wabas}
    created = {n["id"]: n for n in sandbox.numbers() if n["id"] not in numbers_before}
    assert len(created) == 23
    display = Counter(n["display_phone_number"] for n in sandbox.numbers())
    assert max(display.values()) == 1, "a number on Graph twice"

    # The write-back published each WABA's new numbers; the downstream DAG ran on those events.
    events = airflow.api("GET", "/assets/events", params={"source_dag_id": SCHEDULED, "limit": 100})["asset_events"]
    published = {event["uri"]: sorted(event["extra"]["phone_number_ids"]) for event in events}
    expected = {
        asset_uri(waba): sorted(after_first[r]["phone_number_id"] for r in new if after_first[r]["waba_id"] == waba)
        for waba in wabas
    }
    assert published == expected, published

    def downstream_runs() -> list[dict[str, Any]] | None:
        runs = airflow.api("GET", f"/dags/{DOWNSTREAM}/dagRuns")["dag_runs"]
        done = [run for run in runs if run["state"] in ("success", "failed")]
        return done if done and len(done) == len(runs) else None

    consumer_runs = wait_until(downstream_runs, 300, f"{DOWNSTREAM} to run on the asset events")
    seen: dict[str, list[str]] = {}
    for run in consumer_runs:
        assert run["state"] == "success" and run["run_type"] == "asset_triggered", run
        for waba, ids in airflow.return_value(DOWNSTREAM, run["dag_run_id"], "onboarded_numbers").items():
            seen.setdefault(asset_uri(waba), []).extend(ids)
    assert {uri: sorted(ids) for uri, ids in seen.items()} == expected

    # Run 2: every row is final; it reads the table and calls Graph for nothing.
    calls_before = len(sandbox.requests)
    second = airflow.trigger(SCHEDULED)
    assert airflow.wait_for_run(SCHEDULED, second["dag_run_id"], timeout=300) == "success", airflow.where_to_look()
    after_second = table(airflow)
    second_calls = graph_calls(deployment, calls_before)
    show(f"after run 2 ({len(second_calls)} Graph calls):", after_second)
    assert after_second == after_first
    assert second_calls == []
    airflow.api("PATCH", f"/dags/{SCHEDULED}", json={"is_paused": True})
    print(f"scheduled onboarding test took {time.monotonic() - started:.1f}s")
