"""Everything an operator leaves behind, across every example DAG run and a run of every fault,
holds the token, the app secret, the PINs and the verification codes zero times."""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import GraphAPIError
from tests.airflow_versions import task_output
from tests.reliability.test_fault_matrix import FAULTS, STEP_REQUESTS, Chain, closed_port, fault_fired
from tests.scheduled_onboarding_table import RequestsTable
from tests.secret_search import GRAPH_CALL_LINE, Haystack, chance_problem, leaked, search_each

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

APP_SECRET = "sandbox-app-secret-5f1c0e9b7d"
VARIABLE_PIN = "602917"
CONNECTION_PIN = "735046"
# The code every number of the example DAG runs gets (those DAGs read it from the sandbox).
CODE = "704955"
FAULT_STEPS = ("verify", "register")
# Bounds the requests for a fresh random code when the sandbox drew one that could occur by chance.
MAX_CODE_REQUESTS = 30


def _metadata_rows(dag_ids: set[str], haystack: Haystack) -> None:
    """XComs, rendered template fields, serialized DAGs and triggers as Airflow stored them."""
    from airflow import settings
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.trigger import Trigger
    from sqlalchemy import select

    from tests.airflow_versions import xcom_model, xcom_value

    model = xcom_model()
    with settings.Session() as session:
        for xcom in session.scalars(select(model).where(model.dag_id.in_(dag_ids))):
            haystack.add("xcom", {"task": xcom.task_id, "key": xcom.key, "value": xcom_value(xcom)})
        for row in session.scalars(
            select(RenderedTaskInstanceFields).where(RenderedTaskInstanceFields.dag_id.in_(dag_ids))
        ):
            haystack.add("rendered template fields", row.rendered_fields)
        for model in session.scalars(select(SerializedDagModel).where(SerializedDagModel.dag_id.in_(dag_ids))):
            haystack.add("serialized DAG (database)", model.data)
        for trigger in session.scalars(select(Trigger)):
            haystack.add("serialized trigger (database)", {"classpath": trigger.classpath, "kwargs": trigger.kwargs})


def _example_dag_runs(sandbox: Any, run_dag: Any, haystack: Haystack, secrets: dict[str, str]) -> set[str]:
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
    from tests.airflow_versions import dag_bag, serialize_dag

    repo = Path(__file__).resolve().parents[2]
    bag = dag_bag(str(repo / "dags"))
    dag_ids = set()
    confs: dict[str, dict[str, Any] | None] = {
        "example_whatsapp_create_phone_number": {"cc": "1", "phone_number": "5550150001", "verified_name": "Acme One"},
        "example_whatsapp_onboarding": {"cc": "1", "phone_number": "5550150002"},
        "example_whatsapp_bulk_onboarding": {
            "numbers": [
                {"cc": "1", "phone_number": "5550150003", "verified_name": "Acme Three"},
                {"cc": "+1", "phone_number": "5550150004", "verified_name": "Bad cc"},
            ]
        },
        "example_whatsapp_migration": None,
        "example_whatsapp_preverified": None,
        # Its numbers come from the requests table the test seeded.
        "example_whatsapp_scheduled_onboarding": None,
    }
    for dag_id, dag in sorted(bag.dags.items()):
        dag_ids.add(dag_id)
        result = run_dag(dag_id, confs.get(dag_id))
        haystack.add(f"dag run states ({dag_id})", {str(k): v for k, v in result.task_states.items()})
        haystack.add("serialized DAG", serialize_dag(dag))
        for task in dag.tasks:
            haystack.add("repr of operators", repr(task))
    for number in sandbox.numbers():
        haystack.know(number["id"], number["display_phone_number"])
        code = sandbox.last_code(number["id"])
        if code:
            secrets[f"verification code of {number['id']}"] = code
    hook = WhatsAppBusinessHook()
    hook.get_phone_number(sandbox.numbers()[0]["id"])
    # Not the Connection itself: Airflow's own Connection repr shows its password, and the provider
    # never logs or returns it.
    haystack.add("repr of hooks", [repr(hook), repr(hook.settings)])
    hook.close()
    return dag_ids


def chance_proof_code(chain: Chain, taken: set[str]) -> str:
    """The chain's verification code, asked for again while the sandbox's random draw could occur
    by chance (``000000``, ``123456``) or repeats a secret already planted."""
    code = chain.sandbox.last_code(chain.number_id) or ""
    for _request in range(MAX_CODE_REQUESTS):
        if chance_problem(code) is None and code not in taken:
            return code
        chain.run("request_code")
        code = chain.sandbox.last_code(chain.number_id) or ""
    raise AssertionError(f"{MAX_CODE_REQUESTS} codes in a row could occur by chance; the last was {code}")


def _fault_runs(sandbox: Any, haystack: Haystack, secrets: dict[str, str], tally: Counter[str]) -> None:
    from airflow_provider_whatsapp.operators.base import error_details
    from airflow_provider_whatsapp.triggers.phone_numbers import PhoneNumberStatusTrigger

    steps = list(STEP_REQUESTS)
    for index, fault in enumerate(FAULTS):
        for step in (s for s in FAULT_STEPS if s in fault.steps):
            sandbox.reset()
            chain = Chain(sandbox, phone_number=f"55501{index:03d}{steps.index(step)}")
            for earlier in steps[: steps.index(step)]:
                chain.run(earlier)
                if earlier == "request_code":
                    code = chance_proof_code(chain, set(secrets.values()))
                    secrets[f"verification code ({fault.name}@{step})"] = code
            haystack.know(chain.number_id or "", chain.phone_number)
            method, path = STEP_REQUESTS[step]
            before = len(sandbox.requests_to(method=method, path=path))
            injected = fault.build(sandbox.default_waba_id)
            if injected is not None:
                sandbox.inject(injected, method=method, path=path)
            conn_id = "whatsapp_refused" if fault.outcome == "unreachable" else "whatsapp_default"
            raised: GraphAPIError | None = None
            try:
                chain.run(step, conn_id=conn_id)
            except GraphAPIError as error:
                raised = error
                haystack.add("exception messages", str(error))
                haystack.add("exception reprs", repr(error))
                haystack.add("tracebacks", "".join(traceback.format_exception(error)))
                haystack.add("xcom (error details)", error_details(error))
                tally["fault runs whose error was searched for secrets"] += 1
            # A fault that never fired leaves nothing of it to search: the run would prove nothing.
            assert fault_fired(fault, sandbox, step, before, raised), f"{fault.name}@{step}: the fault never fired"
            assert (raised is None) == (fault.outcome == "recovers"), f"{fault.name}@{step}: {raised!r}"
            tally["fault runs searched for secrets, each fault shown to have fired"] += 1
            trigger = PhoneNumberStatusTrigger(
                phone_number_id=chain.number_id or "1", target={"status": ["CONNECTED"]}, failure_states={}
            )
            haystack.add("repr of triggers", repr(trigger))
            haystack.add("serialized triggers", trigger.serialize())


def test_no_secret_anywhere(
    whatsapp_sandbox_factory: Any,
    monkeypatch: Any,
    run_dag: Any,
    caplog: Any,
    capsys: Any,
    airflow_db: str,
    tally: Counter[str],
    tmp_path: Path,
) -> None:
    sandbox = whatsapp_sandbox_factory(
        app_secret=APP_SECRET, fixed_code=CODE, connect_delay=1.0, code_request_cooldown=0.0
    )
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json({"timeout": 0.3}))
    refused = json.loads(sandbox.airflow_conn_json())
    refused["host"] = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_REFUSED", json.dumps(refused))
    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN", VARIABLE_PIN)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WHATSAPP_TWO_STEP_PIN", json.dumps({"conn_type": "generic", "password": CONNECTION_PIN})
    )
    from tests.reliability.test_fault_matrix import PIN as FAULT_PIN

    secrets = {
        "token": sandbox.token,
        "app secret": APP_SECRET,
        "PIN (Variable)": VARIABLE_PIN,
        "PIN (connection)": CONNECTION_PIN,
        "PIN (literal)": FAULT_PIN,
    }
    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_ONBOARDING_CODE_SOURCE", "sandbox")
    RequestsTable.connected(tmp_path / "requests.db", monkeypatch).seed(
        {"request_id": "s1", "cc": "1", "phone_number": "5550150005", "verified_name": "Acme Scheduled"}
    )
    haystack = Haystack()
    haystack.know(sandbox.default_waba_id)
    with caplog.at_level(logging.DEBUG):
        dag_ids = _example_dag_runs(sandbox, run_dag, haystack, secrets)
        sandbox_for_faults = whatsapp_sandbox_factory(
            app_secret=APP_SECRET, connect_delay=0.0, code_request_cooldown=0.0
        )
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox_for_faults.airflow_conn_json({"timeout": 0.3}))
        refused["password"] = sandbox_for_faults.token
        monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_REFUSED", json.dumps(refused))
        secrets["token (fault sandbox)"] = sandbox_for_faults.token
        _fault_runs(sandbox_for_faults, haystack, secrets, tally)
    # The secrets really were used: masking is not hiding values that never existed.
    register_pins = {r.body.get("pin") for r in sandbox.requests_to(method="POST", path=r"/register$")}
    assert {VARIABLE_PIN, CONNECTION_PIN} <= register_pins

    captured = capsys.readouterr()
    # On Airflow 3 the provider's own lines go to the task output (structlog), on 2.x to both.
    haystack.add_output("captured logs (DEBUG)", caplog.text, proof=GRAPH_CALL_LINE)
    haystack.add_output("task output (stdout/stderr)", task_output(captured.out + captured.err))
    logs_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    log_files = sorted(path for path in logs_dir.rglob("*") if path.is_file()) if logs_dir.exists() else []
    # dag.test() writes its tasks' logs to the output above; any log file written is searched too.
    if log_files:
        haystack.add_output("task log files", "\n".join(path.read_text(errors="replace") for path in log_files))
    _metadata_rows(dag_ids, haystack)

    findings = search_each(haystack, secrets)
    chance = {name: problem for name, value in secrets.items() if value and (problem := chance_problem(value))}
    tally["distinct secrets searched"] += len(findings)
    tally["artifact sources searched"] += len(haystack.parts)
    tally["secrets found"] += sum(sum(f.found.values()) for f in findings.values())
    tally["secret matches inside a timestamp or ID (ambiguous)"] += sum(
        sum(f.ambiguous.values()) for f in findings.values()
    )
    assert chance == {}, "secrets that could occur by chance prove nothing"
    assert leaked(findings) == {}
    assert len(haystack.parts) >= 12, sorted(haystack.parts)
