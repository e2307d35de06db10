"""Bad input to every operator, the sensor and the connection: rejected before any request, naming
the field and the rule."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import InvalidInputError

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

GOOD_ID = "106540352242922"
CREATE = {"cc": "44", "phone_number": "7700900123", "verified_name": "Acme UK"}


class FakeTaskInstance:
    """What operators touch of a task instance: the try number and XCom pushes."""

    try_number = 1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def case(operator: str, kwargs: dict[str, Any], field: str, rule: str, **extra: Any) -> Any:
    return pytest.param(operator, kwargs, field, rule, extra, id=f"{operator}-{field}-{rule}"[:80])


def create(**overrides: Any) -> dict[str, Any]:
    return {**CREATE, **overrides}


CASES = [
    # CreatePhoneNumberOperator
    case("CreatePhoneNumberOperator", create(cc="+44"), "cc", "without '+'"),
    case("CreatePhoneNumberOperator", create(cc="044"), "cc", "without a leading zero"),
    case("CreatePhoneNumberOperator", create(cc="1234"), "cc", "1-3 digits"),
    case("CreatePhoneNumberOperator", create(cc="4a"), "cc", "1-3 digits"),
    case(
        "CreatePhoneNumberOperator", create(phone_number="+447700900123"), "phone_number", "put the country code in cc"
    ),
    case("CreatePhoneNumberOperator", create(phone_number="77OO900123"), "phone_number", "digits"),
    case("CreatePhoneNumberOperator", create(phone_number="770090012345678"), "phone_number", "15 digits"),
    case("CreatePhoneNumberOperator", create(phone_number=""), "phone_number", "must not be empty"),
    case("CreatePhoneNumberOperator", create(waba_id=""), "waba_id", "must not be empty"),
    case("CreatePhoneNumberOperator", create(waba_id="   "), "waba_id", "must not be empty"),
    case("CreatePhoneNumberOperator", create(waba_id="12ab"), "waba_id", "numeric Graph ID"),
    case("CreatePhoneNumberOperator", create(verified_name="A"), "verified_name", "2-75 characters"),
    case("CreatePhoneNumberOperator", create(verified_name="A" * 76), "verified_name", "2-75 characters"),
    case("CreatePhoneNumberOperator", create(migrate_phone_number="maybe"), "migrate_phone_number", "true or false"),
    case("CreatePhoneNumberOperator", create(preverified_id="abc"), "preverified_id", "numeric Graph ID"),
    case(
        "CreatePhoneNumberOperator",
        create(phone_number="{{ params.nothing }}"),
        "phone_number",
        "renders to None",
        native=True,
    ),
    # The lifecycle operators
    case("GetPhoneNumberOperator", {"phone_number_id": "abc"}, "phone_number_id", "numeric Graph ID"),
    case("GetPhoneNumberOperator", {"phone_number_id": ""}, "phone_number_id", "must not be empty"),
    case(
        "GetPhoneNumberOperator",
        {"phone_number_id": "{{ params.nothing }}"},
        "phone_number_id",
        "renders to None",
        native=True,
    ),
    case("GetPhoneNumberOperator", {"phone_number_id": "{{ params.nothing }}"}, "phone_number_id", "must not be empty"),
    case("GetPhoneNumberOperator", {"phone_number_id": GOOD_ID, "fields": "status; DROP"}, "fields", "field names"),
    case(
        "RequestVerificationCodeOperator", {"phone_number_id": GOOD_ID, "code_method": "EMAIL"}, "code_method", "one of"
    ),
    case("RequestVerificationCodeOperator", {"phone_number_id": GOOD_ID, "language": "english"}, "language", "en_US"),
    case("RequestVerificationCodeOperator", {"phone_number_id": "-5"}, "phone_number_id", "numeric Graph ID"),
    case("VerifyCodeOperator", {"phone_number_id": GOOD_ID, "code": "12 456"}, "code", "6 digits"),
    case("VerifyCodeOperator", {"phone_number_id": GOOD_ID, "code": "12345"}, "code", "6 digits"),
    case(
        "VerifyCodeOperator",
        {"phone_number_id": GOOD_ID, "code": "{{ params.nothing }}"},
        "code",
        "renders to None",
        native=True,
    ),
    case("RegisterPhoneNumberOperator", {"phone_number_id": GOOD_ID, "pin": "12345"}, "pin", "6 digits"),
    case("RegisterPhoneNumberOperator", {"phone_number_id": GOOD_ID, "pin": "1234567"}, "pin", "6 digits"),
    case("RegisterPhoneNumberOperator", {"phone_number_id": GOOD_ID, "pin": "12a456"}, "pin", "6 digits"),
    case(
        "RegisterPhoneNumberOperator",
        {"phone_number_id": GOOD_ID, "pin": "123456", "data_localization_region": "XX"},
        "data_localization_region",
        "one of",
    ),
    case("SetTwoStepVerificationPinOperator", {"phone_number_id": GOOD_ID, "pin": "abcdef"}, "pin", "6 digits"),
    case("DeregisterPhoneNumberOperator", {"phone_number_id": "12.5"}, "phone_number_id", "numeric Graph ID"),
    case("PhoneNumberStatusSensor", {"phone_number_id": GOOD_ID, "target": {}}, "target", "non-empty mapping"),
    # The connection, seen through an operator
    case("GetPhoneNumberOperator", {"phone_number_id": GOOD_ID}, "api_version", "vNN.N", conn={"api_version": "26"}),
    case("GetPhoneNumberOperator", {"phone_number_id": GOOD_ID}, "api_version", "vNN.N", conn={"api_version": "v26"}),
    case("GetPhoneNumberOperator", {"phone_number_id": GOOD_ID}, "timeout", "positive number", conn={"timeout": "-5"}),
    case("GetPhoneNumberOperator", {"phone_number_id": GOOD_ID}, "password", "access token", conn={"password": None}),
    case("GetPhoneNumberOperator", {"phone_number_id": GOOD_ID}, "host", "scheme", conn={"host": "127.0.0.1:9"}),
    case(
        "GetPhoneNumberOperator",
        {"phone_number_id": GOOD_ID},
        "max_attempts",
        "positive number",
        conn={"max_attempts": 0},
    ),
]


def _operator(name: str, kwargs: dict[str, Any], native: bool) -> Any:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_whatsapp.operators import phone_numbers
    from airflow_provider_whatsapp.sensors import phone_numbers as sensors

    cls = getattr(phone_numbers, name, None) or getattr(sensors, name)
    # With native rendering (as DAGs passing values by XCom often use) "{{ params.nothing }}" is None.
    with DAG("bad_input", schedule=None, start_date=datetime(2026, 1, 1), render_template_as_native_obj=native):
        return cls(task_id="under_test", **kwargs)


@pytest.mark.parametrize(("operator", "kwargs", "field", "rule", "extra"), CASES)
def test_bad_input_is_rejected_before_any_request(
    whatsapp_sandbox: Any,
    monkeypatch: Any,
    tally: Counter[str],
    operator: str,
    kwargs: dict[str, Any],
    field: str,
    rule: str,
    extra: dict[str, Any],
) -> None:
    connection = json.loads(whatsapp_sandbox.airflow_conn_json())
    for key, value in extra.get("conn", {}).items():
        if key in ("host", "password"):
            connection[key] = value
        else:
            connection.setdefault("extra", {})[key] = value
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", json.dumps(connection))

    ti = FakeTaskInstance()
    context: dict[str, Any] = {"ti": ti, "params": {"nothing": None}}
    tally["bad inputs tried"] += 1
    with pytest.raises(InvalidInputError) as info:
        task = _operator(operator, kwargs, extra.get("native", False))
        task.render_template_fields(context)
        task.execute(context)
    message = str(info.value)
    assert info.value.field == field, message
    assert message.startswith(f"{field}: "), message
    assert rule in message, message
    assert whatsapp_sandbox.requests == [], "a request reached Graph before the input was checked"
    tally["bad inputs rejected before any request"] += 1


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30
