"""Airflow retries a task that failed in the middle of the chain: nothing is created or registered twice."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from airflow_provider_whatsapp.sandbox import Fault
from tests.policies import fast_policy_extras
from tests.reliability.duplicates import duplicates

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

PIN = "503118"
CODE = "473156"


def test_retried_tasks_continue_without_duplicates(
    whatsapp_sandbox_factory: Any, monkeypatch: Any, run_inline_dag: Any, tally: Counter[str]
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_whatsapp.operators.phone_numbers import (
        CreatePhoneNumberOperator,
        RegisterPhoneNumberOperator,
        RequestVerificationCodeOperator,
        VerifyCodeOperator,
    )
    from airflow_provider_whatsapp.sensors.phone_numbers import PhoneNumberStatusSensor
    from tests.conftest import DagRunResult

    sandbox = whatsapp_sandbox_factory(fixed_code=CODE, connect_delay=0.0)
    # Two attempts per try, so an outage of two answers fails the try and Airflow's retry takes over.
    extras = {**fast_policy_extras(max_attempts=2, exhausted_wait=0.01), "timeout": 0.5}
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json(extras))

    # create: applied, the answer lost, and the look-up that would settle it fails too -> try 1 fails.
    sandbox.inject(Fault.drop(after_apply=True), method="POST", path=r"/phone_numbers$")
    sandbox.inject(Fault.http(500, b"down"), count=2, method="GET", path=r"/phone_numbers$")
    # verify: throttled (80007) on both attempts -> try 1 fails.
    sandbox.inject(
        Fault.graph_error(80007, message="(#80007) Rate limit hit"), count=2, method="POST", path=r"/verify_code$"
    )
    # register: applied, the answer lost, and the status read that would settle it fails too
    # (try 1 fails); try 2 reads first, finds the number CONNECTED and does not register again.
    sandbox.inject(Fault.drop(after_apply=True), method="POST", path=r"/register$")
    sandbox.inject(Fault.http(503, b"busy"), count=2, method="GET", path=r"^/\d+$")

    args = {"retries": 2, "retry_delay": timedelta(seconds=0)}
    with DAG("test_chain_retry", schedule=None, start_date=datetime(2026, 1, 1), default_args=args) as dag:
        create = CreatePhoneNumberOperator(
            task_id="create", cc="1", phone_number="5550107777", verified_name="Acme Retry"
        )
        request = RequestVerificationCodeOperator(task_id="request_code", phone_number_id=create.output)
        verify = VerifyCodeOperator(task_id="verify", phone_number_id=request.output, code=CODE)
        register = RegisterPhoneNumberOperator(task_id="register", phone_number_id=verify.output, pin=PIN)
        PhoneNumberStatusSensor(
            task_id="status", phone_number_id=register.output, target={"status": "CONNECTED"}, poke_interval=0.1
        )
    dag_run = run_inline_dag(dag)
    result = DagRunResult(dag.dag_id, dag_run.run_id, str(dag_run.state))
    numbers = sandbox.numbers()
    creates = len(sandbox.requests_to(method="POST", path=r"/phone_numbers$"))
    retries = {task: tries - 1 for (task, _), tries in result.try_numbers.items() if tries > 1}
    tally["Airflow task retries mid-chain"] += sum(retries.values())
    tally["duplicates found"] += duplicates(sandbox)
    assert result.state == "success", result.task_states
    assert retries == {"create": 1, "verify": 1, "register": 1}, result.try_numbers

    [number] = numbers
    assert number["id"] == result.xcom("create")
    assert number["status"] == "CONNECTED"
    assert creates == 1
    assert sandbox.register_calls(number["id"]) == 1
    assert PIN not in repr(result.xcoms)
