"""CreatePhoneNumberOperator and the first example DAG, run through Airflow against the sandbox."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import InvalidInputError
from airflow_provider_whatsapp.operators.phone_numbers import CreatePhoneNumberOperator
from airflow_provider_whatsapp.sandbox import Fault
from tests.bad_input_cases import CASES, BadInput, as_params

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

DAG_ID = "example_whatsapp_create_phone_number"


def digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def test_example_dag_creates_and_reads_back_by_xcom(run_dag: Any, whatsapp_connection: Any) -> None:
    result = run_dag(DAG_ID, {"cc": "44", "phone_number": "7700 900123", "verified_name": "Acme UK"})
    assert result.state == "success", result.task_states
    new_id = result.xcom("create_phone_number")
    assert isinstance(new_id, str)
    assert new_id.isdigit()
    assert result.xcom("read_back")["id"] == new_id
    assert digits(result.xcom("create_phone_number", key="phone_number")["display_phone_number"]) == "447700900123"
    link = result.xcom("create_phone_number", key="_link_WhatsAppManagerPhoneNumberLink")
    assert new_id in link
    assert link.startswith("https://business.facebook.com/")
    numbers = whatsapp_connection.numbers()
    assert [n["id"] for n in numbers] == [new_id]
    assert whatsapp_connection.schema_violations == []
    # The read-back task used the ID it received, not a lookup.
    assert whatsapp_connection.requests_to(method="GET", path=rf"^/{new_id}$")


def test_existing_number_is_adopted(run_dag: Any, whatsapp_connection: Any) -> None:
    first = run_dag(DAG_ID, {"cc": "1", "phone_number": "5550100011", "verified_name": "Acme"})
    second = run_dag(DAG_ID, {"cc": "1", "phone_number": "555.010.0011", "verified_name": "Acme"})
    assert second.state == "success"
    assert second.xcom("create_phone_number") == first.xcom("create_phone_number")
    assert len(whatsapp_connection.numbers()) == 1


def test_if_exists_fail_refuses(whatsapp_connection: Any, run_inline_dag: Any) -> None:
    from airflow.providers.common.compat.sdk import DAG

    with DAG("test_if_exists_fail", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        first = CreatePhoneNumberOperator(task_id="first", cc="1", phone_number="5550100012", verified_name="Acme")
        first >> CreatePhoneNumberOperator(
            task_id="second", cc="1", phone_number="5550100012", verified_name="Acme", if_exists="fail"
        )
    dag_run = run_inline_dag(dag)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"first": "success", "second": "failed"}
    assert len(whatsapp_connection.numbers()) == 1
    # It failed because the number was there, and says so: not for any other reason.
    from tests.conftest import DagRunResult

    result = DagRunResult(dag.dag_id, dag_run.run_id, str(dag_run.state))
    existing, error = result.xcom("first"), result.xcom("second", "whatsapp_error")
    waba_id = whatsapp_connection.default_waba_id
    assert error["error_class"] == "PhoneNumberExistsError", error
    assert error["message"] == (
        f"+1 5550100012 is already on WABA {waba_id} as phone number {existing} (if_exists='fail')"
    ), error


def test_dropped_create_does_not_duplicate(whatsapp_connection: Any, run_inline_dag: Any) -> None:
    from airflow.providers.common.compat.sdk import DAG

    whatsapp_connection.inject(Fault.drop(after_apply=True), method="POST", path=r"/phone_numbers$")
    with DAG("test_dropped_create", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        CreatePhoneNumberOperator(task_id="create", cc="1", phone_number="5550100013", verified_name="Acme")
    dag_run = run_inline_dag(dag)
    assert str(dag_run.state) == "success"
    assert len(whatsapp_connection.numbers()) == 1
    assert len(whatsapp_connection.requests_to(method="POST")) == 1


def test_task_retry_after_crash_adopts_instead_of_creating(whatsapp_connection: Any, run_inline_dag: Any) -> None:
    """A try that created the number and then died: the retry finds it first and posts nothing."""
    from airflow.providers.common.compat.sdk import DAG

    with DAG("test_retry_after_crash", schedule=None, start_date=datetime(2026, 1, 1)):
        operator = CreatePhoneNumberOperator(
            task_id="create", cc="1", phone_number="5550100014", verified_name="Acme", if_exists="fail"
        )
    first_try = FakeTaskInstance(try_number=1)
    created = operator.execute({"ti": first_try})  # type: ignore[arg-type]
    whatsapp_connection.reset_requests()
    retry = FakeTaskInstance(try_number=2)
    operator.__dict__.pop("hook", None)
    assert operator.execute({"ti": retry}) == created  # type: ignore[arg-type]
    assert whatsapp_connection.requests_to(method="POST") == []
    assert len(whatsapp_connection.numbers()) == 1


class FakeTaskInstance:
    """Only what the operator touches of a task instance: the try number and XCom pushes."""

    def __init__(self, try_number: int) -> None:
        self.try_number = try_number
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _run_create(run_inline_dag: Any, dag_id: str, arguments: dict[str, Any], **dag_kwargs: Any) -> Any:
    """One DAG run of the operator alone, allowed a retry (bad input must not use it)."""
    from airflow.providers.common.compat.sdk import DAG

    from tests.conftest import DagRunResult

    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"nothing": None},
        default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
        **dag_kwargs,
    ) as dag:
        CreatePhoneNumberOperator(task_id="create", **arguments)
    dag_run = run_inline_dag(dag)
    return DagRunResult(dag.dag_id, dag_run.run_id, str(dag_run.state))


def _rejection(result: Any) -> dict[str, Any] | None:
    """The error the failed task recorded for the user under the documented XCom key, if any."""
    error: dict[str, Any] | None = result.xcoms.get(("create", "whatsapp_error", -1))
    return error


@pytest.mark.parametrize("bad", as_params([bad for bad in CASES if bad.operator == "CreatePhoneNumberOperator"]))
def test_bad_input_fails_the_run_naming_field_and_rule(
    whatsapp_connection: Any, run_inline_dag: Any, bad: BadInput
) -> None:
    dag_id = "test_bad_input_" + re.sub(r"\W+", "_", f"{bad.field}_{bad.rule}")
    result = _run_create(run_inline_dag, dag_id, bad.kwargs, render_template_as_native_obj=bad.native)
    assert result.state == "failed"
    assert result.task_state("create") == "failed"
    assert result.try_numbers[("create", -1)] == 1, "bad input was retried"
    rejection = _rejection(result)
    assert rejection is not None, "the task failed without saying which input was wrong"
    assert rejection["error_class"] == "InvalidInputError", rejection
    assert rejection["field"] == bad.field, rejection
    assert rejection["message"].startswith(f"{bad.field}: "), rejection
    assert bad.rule in rejection["message"], rejection
    assert whatsapp_connection.requests == []


@pytest.mark.parametrize(
    ("arguments", "conn_id"),
    [
        pytest.param({"cc": "{{ params.missing }}"}, "whatsapp_default", id="template-of-an-undefined-param"),
        pytest.param({}, "whatsapp_missing", id="valid-input-missing-connection"),
    ],
)
def test_a_failure_for_another_reason_is_no_bad_input_rejection(
    whatsapp_connection: Any, run_inline_dag: Any, arguments: dict[str, Any], conn_id: str
) -> None:
    """The runs fail, but not with a rejection naming a field: the check above tells them apart."""
    good = {"cc": "44", "phone_number": "7700900123", "verified_name": "Acme UK"}
    dag_id = f"test_other_failure_{conn_id}_{len(arguments)}"
    result = _run_create(run_inline_dag, dag_id, {**good, **arguments, "whatsapp_conn_id": conn_id})
    assert result.state == "failed"
    assert _rejection(result) is None
    assert whatsapp_connection.requests == []


def test_bad_input_error_names_field_and_rule(whatsapp_connection: Any) -> None:
    operator = CreatePhoneNumberOperator(task_id="create", cc="+44", phone_number="7700900123")
    with pytest.raises(InvalidInputError, match=r"^cc: must be the dial code digits without '\+'"):
        operator.execute({"ti": FakeTaskInstance(1)})  # type: ignore[arg-type]


def test_if_exists_is_checked_when_the_dag_is_parsed() -> None:
    with pytest.raises(InvalidInputError, match="if_exists"):
        CreatePhoneNumberOperator(task_id="create", cc="1", phone_number="5550100001", if_exists="ignore")
