"""The bad-input table: one row per rule, the input that breaks it, and what the error must say.

Every test of bad input uses these rows (``tests/reliability/test_bad_input.py`` runs each against
its operator, ``tests/test_create_phone_number_operator.py`` runs the create rows as DAG runs), so a
rule is written down once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import pytest

GOOD_ID = "106540352242922"
CREATE = {"cc": "44", "phone_number": "7700900123", "verified_name": "Acme UK"}


@dataclass(frozen=True)
class BadInput:
    """One broken rule.

    :param operator: the class name of the operator (or sensor) given the input.
    :param kwargs: its arguments.
    :param field: the field the error must name.
    :param rule: words of the rule the error must state.
    :param native: render templates as native objects (``"{{ params.nothing }}"`` is then ``None``).
    :param conn: connection fields or extras to break instead of an argument.
    """

    operator: str
    kwargs: dict[str, Any]
    field: str
    rule: str
    native: bool = False
    conn: dict[str, Any] = dataclass_field(default_factory=dict)

    def matches(self, error: BaseException | None) -> bool:
        """Whether ``error`` is the rejection this row expects: our error, naming the field and the rule."""
        from airflow_provider_whatsapp.exceptions import InvalidInputError

        return (
            isinstance(error, InvalidInputError)
            and error.field == self.field
            and str(error).startswith(f"{self.field}: ")
            and self.rule in str(error)
        )


def case(operator: str, kwargs: dict[str, Any], field: str, rule: str, **extra: Any) -> BadInput:
    return BadInput(operator, kwargs, field, rule, **extra)


def as_params(cases: list[BadInput]) -> list[Any]:
    """The rows as ``pytest.param``s, each named by operator, field and rule."""
    return [pytest.param(bad, id=f"{bad.operator}-{bad.field}-{bad.rule}"[:80]) for bad in cases]


def create(**overrides: Any) -> dict[str, Any]:
    return {**CREATE, **overrides}


CASES = [
    # CreatePhoneNumberOperator
    case("CreatePhoneNumberOperator", create(cc="+44"), "cc", "without '+'"),
    case("CreatePhoneNumberOperator", create(cc="044"), "cc", "without a leading zero"),
    case("CreatePhoneNumberOperator", create(cc="1234"), "cc", "1-3 digits"),
    case("CreatePhoneNumberOperator", create(cc="4a"), "cc", "1-3 digits"),
    case("CreatePhoneNumberOperator", create(cc="{{ params.nothing }}"), "cc", "renders to None", native=True),
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
        {"phone_number_id": GOOD_ID, "pin": "583920", "data_localization_region": "XX"},
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


# The hook method behind each lifecycle operator; their arguments have the same names.
HOOK_METHODS = {
    "GetPhoneNumberOperator": "get_phone_number",
    "RequestVerificationCodeOperator": "request_verification_code",
    "VerifyCodeOperator": "verify_code",
    "RegisterPhoneNumberOperator": "register_phone_number",
    "SetTwoStepVerificationPinOperator": "set_two_step_pin",
    "DeregisterPhoneNumberOperator": "deregister_phone_number",
}


def hook_cases() -> list[BadInput]:
    """The rows the hook itself must reject: plain arguments of a lifecycle method (no template, no
    connection change)."""
    return [
        bad
        for bad in CASES
        if bad.operator in HOOK_METHODS and not bad.native and not bad.conn and "{{" not in json.dumps(bad.kwargs)
    ]
