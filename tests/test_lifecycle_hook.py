"""Onboarding lifecycle methods of the hook, over HTTP against the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import GraphBlockedError, GraphPermanentError, InvalidInputError
from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
from airflow_provider_whatsapp.sandbox import Fault

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

PIN = "246810"


@pytest.fixture
def number_id(hook: WhatsAppBusinessHook, whatsapp_connection: Any) -> str:
    node = hook.create_phone_number(whatsapp_connection.default_waba_id, "1", "5550100001", verified_name="Acme")
    whatsapp_connection.reset_requests()
    return str(node["id"])


def verify(hook: WhatsAppBusinessHook, sandbox: Any, number_id: str) -> None:
    hook.request_verification_code(number_id)
    hook.verify_code(number_id, sandbox.last_code(number_id))


def test_full_lifecycle(hook: WhatsAppBusinessHook, whatsapp_connection: Any, number_id: str) -> None:
    assert hook.request_verification_code(number_id, "VOICE", "pt_BR") == {"success": True}
    code = whatsapp_connection.last_code(number_id)
    assert hook.verify_code(number_id, code)["success"] is True
    assert hook.register_phone_number(number_id, PIN, data_localization_region="de")["success"] is True
    node = hook.get_phone_number(number_id, fields="status,code_verification_status,is_pin_enabled")
    assert node["code_verification_status"] == "VERIFIED"
    assert node["status"] == "CONNECTED"
    assert hook.set_two_step_pin(number_id, "135790")["success"] is True
    assert hook.deregister_phone_number(number_id)["success"] is True
    assert hook.get_phone_number(number_id, fields="status")["status"] == "DISCONNECTED"
    body = whatsapp_connection.requests_to(method="POST", path=r"/register$")[0].body
    assert body == {"messaging_product": "whatsapp", "pin": PIN, "data_localization_region": "DE"}
    assert whatsapp_connection.schema_violations == []


def test_wrong_code_is_permanent_100(hook: WhatsAppBusinessHook, whatsapp_connection: Any, number_id: str) -> None:
    hook.request_verification_code(number_id)
    wrong = "000000" if whatsapp_connection.last_code(number_id) != "000000" else "111111"
    with pytest.raises(GraphPermanentError) as info:
        hook.verify_code(number_id, wrong)
    assert info.value.code == 100
    assert wrong not in str(info.value)
    assert len(whatsapp_connection.requests_to(method="POST", path="verify_code")) == 1


def test_register_unverified_number_fails(hook: WhatsAppBusinessHook, number_id: str) -> None:
    with pytest.raises(GraphPermanentError) as info:
        hook.register_phone_number(number_id, PIN)
    assert info.value.code == 133010


def test_register_twice_does_not_spend_a_register_call(
    hook: WhatsAppBusinessHook, whatsapp_connection: Any, number_id: str
) -> None:
    verify(hook, whatsapp_connection, number_id)
    hook.register_phone_number(number_id, PIN)
    hook.register_phone_number(number_id, PIN)
    assert len(whatsapp_connection.requests_to(method="POST", path=r"/register$")) == 1


def test_register_after_dropped_response_is_not_repeated(
    hook: WhatsAppBusinessHook, whatsapp_connection: Any, number_id: str
) -> None:
    verify(hook, whatsapp_connection, number_id)
    whatsapp_connection.inject(Fault.drop(after_apply=True), method="POST", path=r"/register$")
    assert hook.register_phone_number(number_id, PIN)["success"] is True
    assert len(whatsapp_connection.requests_to(method="POST", path=r"/register$")) == 1


def test_verify_after_dropped_response_is_not_repeated(
    hook: WhatsAppBusinessHook, whatsapp_connection: Any, number_id: str
) -> None:
    hook.request_verification_code(number_id)
    whatsapp_connection.inject(Fault.drop(after_apply=True), method="POST", path="verify_code")
    assert hook.verify_code(number_id, whatsapp_connection.last_code(number_id))["success"] is True
    assert len(whatsapp_connection.requests_to(method="POST", path="verify_code")) == 1


def test_request_code_after_dropped_response_counts_as_sent(
    hook: WhatsAppBusinessHook, whatsapp_connection: Any, number_id: str
) -> None:
    whatsapp_connection.inject(Fault.drop(after_apply=True), method="POST", path="request_code")
    assert hook.request_verification_code(number_id)["success"] is True
    assert whatsapp_connection.last_code(number_id)


def test_register_block_fails_at_once_saying_until_when(
    hook: WhatsAppBusinessHook, whatsapp_connection: Any, number_id: str, sleeps: Any
) -> None:
    verify(hook, whatsapp_connection, number_id)
    for _ in range(5):
        hook.register_phone_number(number_id, PIN)
        hook.deregister_phone_number(number_id)
    before = len(whatsapp_connection.requests)
    with pytest.raises(GraphBlockedError) as info:
        hook.register_phone_number(number_id, PIN)
    error = info.value
    assert error.code == 133016
    assert error.blocked_until is not None
    assert datetime.now(UTC) + timedelta(hours=71) < error.blocked_until < datetime.now(UTC) + timedelta(hours=73)
    assert "blocked until" in str(error)
    # one status read, one register call: nothing retried
    assert len(whatsapp_connection.requests) - before == 2
    assert sleeps.waits == []


def test_pin_mismatch_is_133005(hook: WhatsAppBusinessHook, whatsapp_connection: Any, number_id: str) -> None:
    verify(hook, whatsapp_connection, number_id)
    hook.set_two_step_pin(number_id, "999999")
    with pytest.raises(GraphPermanentError) as info:
        hook.register_phone_number(number_id, PIN)
    assert info.value.code == 133005
    assert PIN not in str(info.value)


@pytest.mark.parametrize(
    ("method", "args", "field"),
    [
        ("request_verification_code", ("123", "EMAIL", "en_US"), "code_method"),
        ("request_verification_code", ("123", "SMS", "english"), "language"),
        ("verify_code", ("123", "12 345"), "code"),
        ("verify_code", ("123", "12345"), "code"),
        ("register_phone_number", ("123", "12345"), "pin"),
        ("register_phone_number", ("123", "1234567"), "pin"),
        ("register_phone_number", ("123", "abcdef"), "pin"),
        ("register_phone_number", ("123", "123456", "FR"), "data_localization_region"),
        ("set_two_step_pin", ("123", "12345"), "pin"),
        ("deregister_phone_number", ("12a",), "phone_number_id"),
    ],
)
def test_bad_lifecycle_input(
    hook: WhatsAppBusinessHook, whatsapp_connection: Any, method: str, args: tuple[str, ...], field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        getattr(hook, method)(*args)
    assert info.value.field == field
    assert whatsapp_connection.requests == []
    for secret in ("12345", "1234567", "abcdef", "12 345"):
        if field in ("pin", "code"):
            assert secret not in str(info.value)
