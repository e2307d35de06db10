"""The PIN and the verification code never reach task logs, XCom, errors or the stored rendered fields."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pytest

from tests.airflow_versions import task_output
from tests.secret_search import GRAPH_CALL_LINE, Haystack, leaked, search_each

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

PIN = "918273"
CODE = "722453"
WRONG_CODE = "850546"


def _rendered_fields(dag_id: str, run_id: str) -> dict[str, Any]:
    """What the Rendered Templates view shows: the rows Airflow stored for each task instance."""
    from airflow import settings
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from sqlalchemy import select

    with settings.Session() as session:
        rows = session.scalars(
            select(RenderedTaskInstanceFields).where(
                RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == run_id
            )
        ).all()
        return {row.task_id: row.rendered_fields for row in rows}


@pytest.fixture
def sandbox(whatsapp_sandbox_factory: Any, monkeypatch: Any) -> Any:
    sandbox = whatsapp_sandbox_factory(fixed_code=CODE, connect_delay=0.0)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json())
    return sandbox


def test_literal_pin_and_code_are_masked_everywhere(
    sandbox: Any, run_inline_dag: Any, caplog: Any, capsys: Any, airflow_db: str
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_whatsapp.operators.phone_numbers import (
        CreatePhoneNumberOperator,
        RegisterPhoneNumberOperator,
        RequestVerificationCodeOperator,
        SetTwoStepVerificationPinOperator,
        VerifyCodeOperator,
    )

    with DAG("test_lifecycle_secrets_literal", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        create = CreatePhoneNumberOperator(
            task_id="create", cc="1", phone_number="5550109911", verified_name="Acme Secrets"
        )
        request = RequestVerificationCodeOperator(task_id="request", phone_number_id=create.output)
        verify = VerifyCodeOperator(task_id="verify", phone_number_id=request.output, code=CODE)
        register = RegisterPhoneNumberOperator(task_id="register", phone_number_id=verify.output, pin=PIN)
        SetTwoStepVerificationPinOperator(task_id="set_pin", phone_number_id=register.output, pin="{{ '" + PIN + "' }}")

    with caplog.at_level(logging.DEBUG):
        dag_run = run_inline_dag(dag)
    assert str(dag_run.state) == "success"
    # The secrets did reach Graph: the masking is not hiding an empty value.
    [register_call] = sandbox.requests_to(method="POST", path=r"/register$")
    assert register_call.body["pin"] == PIN
    assert sandbox.requests_to(method="POST", path=r"/verify_code$")[0].body["code"] == CODE

    rendered = _rendered_fields(dag.dag_id, dag_run.run_id)
    assert rendered["verify"]["code"] == "***"
    assert rendered["register"]["pin"] == "***"
    assert rendered["set_pin"]["pin"] == "***"

    from tests.conftest import DagRunResult

    result = DagRunResult(dag.dag_id, dag_run.run_id, str(dag_run.state))
    captured = capsys.readouterr()
    haystack = Haystack()
    haystack.add_output("captured logs (DEBUG)", caplog.text, proof=GRAPH_CALL_LINE)
    haystack.add_output("task output", task_output(captured.out + captured.err))
    haystack.add("rendered template fields", rendered)
    haystack.add("xcom", repr(result.xcoms))
    secrets = {"PIN": PIN, "verification code": CODE, "token": sandbox.token}
    assert leaked(search_each(haystack, secrets)) == {}


def test_pin_from_variable_is_masked(sandbox: Any, run_inline_dag: Any, monkeypatch: Any, capsys: Any) -> None:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_whatsapp.operators.phone_numbers import (
        CreatePhoneNumberOperator,
        SetTwoStepVerificationPinOperator,
    )

    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_TEST_PIN", PIN)
    with DAG("test_lifecycle_secrets_variable", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        create = CreatePhoneNumberOperator(
            task_id="create", cc="1", phone_number="5550109912", verified_name="Acme Secrets"
        )
        SetTwoStepVerificationPinOperator(
            task_id="set_pin", phone_number_id=create.output, pin_variable="whatsapp_test_pin"
        )
    dag_run = run_inline_dag(dag)
    assert str(dag_run.state) == "success"
    assert sandbox.requests_to(method="POST", path=r"^/\d+$")[-1].body["pin"] == PIN
    captured = capsys.readouterr()
    haystack = Haystack()
    haystack.add_output("task output", task_output(captured.out + captured.err))
    haystack.add("rendered template fields", _rendered_fields(dag.dag_id, dag_run.run_id))
    assert leaked(search_each(haystack, {"PIN": PIN})) == {}


def test_wrong_code_error_does_not_echo_the_code(sandbox: Any, run_inline_dag: Any, capsys: Any) -> None:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_whatsapp.operators.phone_numbers import (
        CreatePhoneNumberOperator,
        RequestVerificationCodeOperator,
        VerifyCodeOperator,
    )

    with DAG("test_lifecycle_secrets_wrong_code", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        create = CreatePhoneNumberOperator(
            task_id="create", cc="1", phone_number="5550109913", verified_name="Acme Secrets"
        )
        request = RequestVerificationCodeOperator(task_id="request", phone_number_id=create.output)
        VerifyCodeOperator(task_id="verify", phone_number_id=request.output, code=WRONG_CODE)
    dag_run = run_inline_dag(dag)
    assert str(dag_run.state) == "failed"
    from tests.conftest import DagRunResult

    result = DagRunResult(dag.dag_id, dag_run.run_id, str(dag_run.state))
    error = result.xcom("verify", "whatsapp_error")
    assert error["code"] == 100
    captured = capsys.readouterr()
    haystack = Haystack()
    haystack.add_output("task output", task_output(captured.out + captured.err))
    haystack.add("xcom", repr(result.xcoms))
    assert leaked(search_each(haystack, {"wrong code": WRONG_CODE})) == {}
    # Said plainly for the person who typed it, with what to do next.
    assert "The verification code was not accepted for phone number" in captured.out + captured.err
    assert "Nothing was registered. To enter the code again" in captured.out + captured.err
