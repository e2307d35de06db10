"""A worker dies right after Graph applied a create: the example DAGs' retries, reports and re-runs.

The death is simulated the way Graph and Airflow see one: the sandbox applies the create and drops
the connection; the connection allows one attempt per call (``max_attempts=1``), so the task ends
at once without the new ID, as a killed process would. With the DAG's retries, Airflow's retry
finishes the job; with none left (``retries=0`` for the run), the report says what Graph holds and
a re-run with the same input finishes it. Graph's calls are counted from the sandbox's request log.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_whatsapp.sandbox import Fault
from tests.policies import FAST_POLICY, fast_policy_extras
from tests.reliability.duplicates import duplicates

BULK = "example_whatsapp_bulk_onboarding"
ONBOARDING = "example_whatsapp_onboarding"
PIN = "604172"
STEP_PATHS = ("request_code", "verify_code", "register")
# Airflow's retries without Airflow's wait: the DAG's retry_delay is minutes.
NO_RETRY_WAIT = {"retry_delay": timedelta(seconds=0)}
# The worker died on its last try.
NO_RETRIES_LEFT = {"retries": 0}


@pytest.fixture
def sandbox(whatsapp_sandbox_factory: Any, monkeypatch: Any) -> Any:
    sandbox = whatsapp_sandbox_factory(connect_delay=0.0)
    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN", PIN)
    use_connection(sandbox, monkeypatch)
    return sandbox


def use_connection(sandbox: Any, monkeypatch: Any, *, crash: bool = False) -> None:
    """Point ``whatsapp_default`` at the sandbox; with ``crash``, a dropped answer ends the task at once."""
    extras = fast_policy_extras(max_attempts=1) if crash else fast_policy_extras()
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json(extras))


def digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def graph_calls(sandbox: Any) -> Counter[tuple[str, str]]:
    """The request log as ``(what, step)`` counts: ``what`` is a number's ID, or ``waba <id>`` for list reads."""
    ids = {digits(n["display_phone_number"]): n["id"] for n in sandbox.numbers()}
    calls: Counter[tuple[str, str]] = Counter()
    for request in sandbox.requests:
        first, _, rest = request.path.strip("/").partition("/")
        if rest == "phone_numbers" and request.method == "GET":
            calls[f"waba {first}", "list"] += 1
        elif rest == "phone_numbers":
            calls[ids[request.body["cc"] + request.body["phone_number"]], "create"] += 1
        else:
            calls[first, rest or f"{request.method} node"] += 1
    return calls


def per_number(calls: Counter[tuple[str, str]], count: int) -> float:
    return sum(calls.values()) / count


def bulk_rows(sandbox: Any) -> list[dict[str, str]]:
    """Three numbers on the connection's WABA, three on a second one."""
    second = sandbox.add_waba(name="Acme Second")
    rows = [{"cc": "1", "phone_number": f"555019{i:04d}", "verified_name": f"Acme Crash {i}"} for i in range(3)]
    rows += [
        {"cc": "1", "phone_number": f"555029{i:04d}", "verified_name": f"Acme Second {i}", "waba_id": second}
        for i in range(3)
    ]
    return rows


def crashed_number(sandbox: Any) -> dict[str, Any]:
    [dropped] = [r for r in sandbox.requests if r.fault == "drop"]
    [number] = [n for n in sandbox.numbers() if digits(n["display_phone_number"]) == "1" + dropped.body["phone_number"]]
    return number


def entries_by_number(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["number"].split("phone_number=")[1]: entry for entry in report["numbers"]}


def test_bulk_crash_after_create_report_then_rerun_finishes(
    sandbox: Any, monkeypatch: Any, run_dag: Any, tally: Counter[str]
) -> None:
    rows = bulk_rows(sandbox)
    second = rows[-1]["waba_id"]
    use_connection(sandbox, monkeypatch, crash=True)
    sandbox.inject(Fault.drop(after_apply=True), method="POST", path=rf"^/{second}/phone_numbers$")

    first = run_dag(BULK, {"numbers": rows}, task_args=NO_RETRIES_LEFT)

    # A number left unfinished for a reason a retry may cure fails the batch, and the run says so.
    assert first.state == "failed"
    assert first.task_state("onboard", 0) == "failed"
    assert first.task_state("report") == "failed"
    crashed = crashed_number(sandbox)
    assert len(sandbox.numbers()) == 6
    assert (crashed["status"], crashed["code_verification_status"]) == ("PENDING", "NOT_VERIFIED")
    report = first.xcom("report")
    print("report of the crashed run:", json.dumps(report, indent=1))
    assert report["counts"] == {"onboarded": 5, "created, not registered": 1}
    assert report["unfinished"] == 1 and report["missing_batches"] == []
    entry = entries_by_number(report)[digits(crashed["display_phone_number"])[1:]]
    assert entry["outcome"] == "created, not registered"
    assert entry["phone_number_id"] == crashed["id"]
    assert entry["next_step"] == "request_code"
    assert entry["started_at"] == "create_phone_number"
    assert entry["error"]["error_class"] == "GraphConnectionError"
    assert entry["retry"] is True
    # The batch's own report travelled with its failed task.
    assert first.xcom("onboard", map_index=0)["retry"] == 1
    # One list read per WABA to plan; the report reads again only the WABA whose number did not finish.
    calls = graph_calls(sandbox)
    assert {what: n for (what, step), n in calls.items() if step == "list"} == {
        f"waba {sandbox.default_waba_id}": 1,
        f"waba {second}": 2,
    }
    assert sum(calls.values()) == 3 + 6 + 3 * 5

    use_connection(sandbox, monkeypatch)
    sandbox.reset_requests()
    rerun = run_dag(BULK, {"numbers": rows})

    assert rerun.state == "success", rerun.task_states
    calls = graph_calls(sandbox)
    print(f"re-run: {sum(calls.values())} Graph calls for 6 numbers ({per_number(calls, 6):.2f} per number): {calls}")
    # Done numbers cost their WABA's one list read; the crashed one continues at request_code.
    assert calls == Counter(
        {("waba " + sandbox.default_waba_id, "list"): 1, (f"waba {second}", "list"): 1}
        | {(crashed["id"], step): 1 for step in STEP_PATHS}
    )
    report = rerun.xcom("report")
    print("report of the re-run:", json.dumps(report["counts"]))
    assert report["counts"] == {"onboarded": 6}
    continued = [e for e in report["numbers"] if e["started_at"] is not None]
    assert [(e["phone_number_id"], e["started_at"]) for e in continued] == [(crashed["id"], "request_code")]
    assert all(sandbox.register_calls(n["id"]) == 1 for n in sandbox.numbers())

    sandbox.reset_requests()
    done = run_dag(BULK, {"numbers": rows})
    assert done.state == "success"
    assert graph_calls(sandbox) == Counter(
        {(f"waba {sandbox.default_waba_id}", "list"): 1, (f"waba {second}", "list"): 1}
    )
    assert {e["note"] for e in done.xcom("report")["numbers"]} == {"already onboarded before this run"}
    tally["crashed creates finished by a re-run"] += 1
    tally["duplicates found"] += duplicates(sandbox)
    assert duplicates(sandbox) == 0


def test_bulk_crash_after_create_is_finished_by_airflows_retry(
    sandbox: Any, monkeypatch: Any, run_dag: Any, tally: Counter[str]
) -> None:
    rows = bulk_rows(sandbox)[:3]
    use_connection(sandbox, monkeypatch, crash=True)
    sandbox.inject(Fault.drop(after_apply=True), method="POST", path=r"/phone_numbers$")

    result = run_dag(BULK, {"numbers": rows}, task_args=NO_RETRY_WAIT)

    assert result.state == "success", result.task_states
    crashed = crashed_number(sandbox)
    assert result.try_numbers["onboard", 0] == 2
    assert result.xcom("report")["counts"] == {"onboarded": 3}
    [entry] = [e for e in result.xcom("onboard", map_index=0)["numbers"] if e["started_at"]]
    # The retry planned again from Graph: the crashed number continued where its create left it.
    assert (entry["phone_number_id"], entry["started_at"]) == (crashed["id"], "request_code")
    calls = graph_calls(sandbox)
    # Four calls a number; a list read for each try's plan, and the first try's look at what it left.
    assert calls[f"waba {sandbox.default_waba_id}", "list"] == 3
    assert sum(calls.values()) == 4 * 3 + 3
    assert all(calls[n["id"], "create"] == 1 for n in sandbox.numbers())
    assert duplicates(sandbox) == 0
    tally["crashed creates finished by Airflow's retry"] += 1


def test_bulk_run_follows_what_graph_holds(sandbox: Any, run_dag: Any) -> None:
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

    hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY)

    def create(national: str, name: str) -> str:
        return str(hook.create_phone_number(sandbox.default_waba_id, "1", national, verified_name=name)["id"])

    def verify(number_id: str) -> None:
        hook.request_verification_code(number_id)
        hook.verify_code(number_id, sandbox.last_code(number_id))

    banned, deleted = create("5550390001", "Acme Banned"), create("5550390002", "Acme Deleted")
    sandbox.set_fields(banned, status="BANNED")
    sandbox.set_fields(deleted, status="DELETED")
    renamed = create("5550390003", "Acme Old Name")
    verified = create("5550390004", "Acme Verified")
    verify(verified)
    connected = create("5550390005", "Acme Connected")
    verify(connected)
    hook.register_phone_number(connected, PIN, check_first=False)
    hook.close()
    rows = [
        {"cc": "1", "phone_number": f"555039000{i}", "verified_name": name}
        for i, name in enumerate(("Acme Banned", "Acme Deleted", "Acme New Name", "Acme Verified", "Acme Connected"), 1)
    ]
    rows += [{"cc": "1", "phone_number": "555-039-0006", "verified_name": "Acme New"}]
    rows += [{"cc": "1", "phone_number": "5550390006", "verified_name": "Acme New"}]
    sandbox.reset_requests()

    result = run_dag(BULK, {"numbers": rows})

    assert result.state == "success", result.task_states
    [new] = [n for n in sandbox.numbers() if n["display_phone_number"].endswith("0006")]
    calls = graph_calls(sandbox)
    assert calls == Counter(
        {(f"waba {sandbox.default_waba_id}", "list"): 1, (new["id"], "create"): 1}
        | {(new["id"], step): 1 for step in STEP_PATHS}
        | {(renamed, step): 1 for step in STEP_PATHS}
        | {(verified, "register"): 1}
    )
    report = result.xcom("report")
    outcomes = [(e["outcome"], e["phone_number_id"], e["started_at"]) for e in report["numbers"]]
    assert outcomes == [
        ("banned", banned, None),
        ("deleted", deleted, None),
        ("onboarded", renamed, "request_code"),
        ("onboarded", verified, "register"),
        ("onboarded", connected, None),
        ("onboarded", new["id"], "create_phone_number"),
        ("onboarded", new["id"], None),
    ]
    notes = [e["note"] for e in report["numbers"]]
    assert notes[2] == "adopted: on the WABA as 'Acme Old Name', name not changed"
    assert notes[4] == "already onboarded before this run"
    assert notes[6] == "same number as row 5: onboarded once, reported there"
    assert report["counts"] == {"banned": 1, "deleted": 1, "onboarded": 5}
    assert sandbox.number(banned)["status"] == "BANNED"
    assert len(sandbox.numbers()) == 6
    assert duplicates(sandbox) == 0


def test_onboarding_dag_retriggered_after_a_crash_at_create(
    sandbox: Any, monkeypatch: Any, run_dag: Any, tally: Counter[str]
) -> None:
    params = {"cc": "1", "phone_number": "5550390101", "verified_name": "Acme Single"}
    use_connection(sandbox, monkeypatch, crash=True)
    sandbox.inject(Fault.drop(after_apply=True), method="POST", path=r"/phone_numbers$")

    first = run_dag(ONBOARDING, params, task_args=NO_RETRIES_LEFT)

    assert first.state == "failed"
    assert first.task_state("create_phone_number") == "failed"
    [number] = sandbox.numbers()
    assert number["status"] == "PENDING"

    use_connection(sandbox, monkeypatch)
    sandbox.reset_requests()
    second = run_dag(ONBOARDING, params)

    assert second.state == "success", second.task_states
    assert second.xcom("create_phone_number") == number["id"]
    [number] = sandbox.numbers()
    assert number["status"] == "CONNECTED"
    assert sandbox.register_calls(number["id"]) == 1
    calls = graph_calls(sandbox)
    print(f"re-triggered single-number run: {calls}")
    # The create is refused (already on the WABA) and the number adopted from one list read.
    [create] = sandbox.requests_to(method="POST", path=r"/phone_numbers$")
    assert create.status == 400
    assert calls[f"waba {sandbox.default_waba_id}", "list"] >= 1
    assert all(calls[number["id"], step] == 1 for step in STEP_PATHS)

    sandbox.reset_requests()
    third = run_dag(ONBOARDING, params)

    assert third.state == "success", third.task_states
    for task_id in ("request_code", "verify_code", "register"):
        assert third.task_state(task_id) == "skipped", task_id
    assert not any(step in STEP_PATHS for _, step in graph_calls(sandbox))
    assert third.xcom("summary")["status"] == "CONNECTED"
    tally["crashed creates finished by a re-run"] += 1


def test_onboarding_dag_continues_from_what_graph_holds(sandbox: Any, run_dag: Any, capsys: Any) -> None:
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

    hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY)
    verified = str(hook.create_phone_number(sandbox.default_waba_id, "1", "5550390201", verified_name="Acme V")["id"])
    hook.request_verification_code(verified)
    hook.verify_code(verified, sandbox.last_code(verified))
    banned = str(hook.create_phone_number(sandbox.default_waba_id, "1", "5550390202", verified_name="Acme B")["id"])
    hook.close()
    sandbox.set_fields(banned, status="BANNED")
    sandbox.reset_requests()

    result = run_dag(ONBOARDING, {"cc": "1", "phone_number": "5550390201", "verified_name": "Acme V"})

    assert result.state == "success", result.task_states
    assert result.task_state("request_code") == "skipped"
    assert result.task_state("register") == "success"
    assert sandbox.number(verified)["status"] == "CONNECTED"
    assert [step for _, step in graph_calls(sandbox) if step in STEP_PATHS] == ["register"]

    sandbox.reset_requests()
    capsys.readouterr()
    result = run_dag(ONBOARDING, {"cc": "1", "phone_number": "5550390202", "verified_name": "Acme B"})
    printed = capsys.readouterr()

    assert result.state == "failed"
    assert result.task_state("resume_point") == "failed"
    # Failed for the number's status, by the exception that spends no retry; not for anything else.
    reason = rf"\bAirflowFailException: Phone number {banned} is BANNED on Graph; not onboarding it$"
    assert re.search(reason, printed.out + printed.err, flags=re.MULTILINE), "resume_point failed for another reason"
    assert result.try_numbers["resume_point", -1] == 1, "a banned number is not worth a retry"
    assert not [step for _, step in graph_calls(sandbox) if step in STEP_PATHS]
    assert sandbox.number(banned)["status"] == "BANNED"
