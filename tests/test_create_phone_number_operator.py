"""CreatePhoneNumberOperator and the first example DAG, run through Airflow against the sandbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import InvalidInputError
from airflow_provider_whatsapp.operators.phone_numbers import CreatePhoneNumberOperator
from airflow_provider_whatsapp.sandbox import Fault

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


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cc": "+44"}, "cc"),
        ({"cc": "{{ params.missing }}"}, "cc"),
        ({"phone_number": "+447700900123"}, "phone_number"),
        ({"phone_number": "77OO900123"}, "phone_number"),
        ({"phone_number": "7700900123456789"}, "phone_number"),
        ({"verified_name": "X"}, "verified_name"),
        ({"verified_name": "X" * 76}, "verified_name"),
        ({"waba_id": "  "}, "waba_id"),
        ({"waba_id": "12ab"}, "waba_id"),
        ({"migrate_phone_number": "maybe"}, "migrate_phone_number"),
    ],
)
def test_bad_input_fails_before_any_request(
    whatsapp_connection: Any, run_inline_dag: Any, kwargs: dict[str, Any], field: str
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    arguments: dict[str, Any] = {"cc": "44", "phone_number": "7700900123", "verified_name": "Acme UK"}
    arguments.update(kwargs)
    with DAG(f"test_bad_input_{field}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        CreatePhoneNumberOperator(task_id="create", **arguments)
    dag_run = run_inline_dag(dag)
    assert str(dag_run.state) == "failed"
    assert whatsapp_connection.requests == []


def test_bad_input_error_names_field_and_rule(whatsapp_connection: Any) -> None:
    operator = CreatePhoneNumberOperator(task_id="create", cc="+44", phone_number="7700900123")
    with pytest.raises(InvalidInputError, match=r"^cc: must be the dial code digits without '\+'"):
        operator.execute({"ti": FakeTaskInstance(1)})  # type: ignore[arg-type]


def test_if_exists_is_checked_when_the_dag_is_parsed() -> None:
    with pytest.raises(InvalidInputError, match="if_exists"):
        CreatePhoneNumberOperator(task_id="create", cc="1", phone_number="5550100001", if_exists="ignore")
