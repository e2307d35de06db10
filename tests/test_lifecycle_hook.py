"""Onboarding lifecycle methods of the hook, over HTTP against the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import GraphBlockedError, GraphPermanentError
from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
from airflow_provider_whatsapp.sandbox import Fault
from tests.bad_input_cases import HOOK_METHODS, BadInput, as_params, hook_cases
from tests.policies import FAST_POLICY
from tests.secret_search import Haystack, leaked, search_each

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

PIN = "592703"
# Two wrong codes: whichever differs from the code the sandbox drew.
WRONG_CODES = ("418637", "930582")
OTHER_PIN = "371946"


def echoed(secret: str, error: BaseException) -> dict[str, list[str]]:
    """Where the error's text and repr show the secret, however written."""
    haystack = Haystack()
    haystack.add("error text", str(error))
    haystack.add("error repr", repr(error))
    return leaked(search_each(haystack, {"secret": secret}))


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
    wrong = next(code for code in WRONG_CODES if code != whatsapp_connection.last_code(number_id))
    with pytest.raises(GraphPermanentError) as info:
        hook.verify_code(number_id, wrong)
    assert info.value.code == 100
    assert echoed(wrong, info.value) == {}
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


def test_register_applied_before_connected_is_not_repeated(
    whatsapp_sandbox_factory: Any, monkeypatch: Any, sleeps: Any
) -> None:
    # Graph connects a registered number some time after register: until then the node shows
    # PENDING with platform_type CLOUD_API, and neither the look-up after a dropped answer nor a
    # retried task's check may take it for unregistered.
    sandbox = whatsapp_sandbox_factory(connect_delay=3600.0)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json())
    hook = WhatsAppBusinessHook(retry_policy=FAST_POLICY, sleep=sleeps)
    number_id = hook.create_phone_number(sandbox.default_waba_id, "1", "5550100002", verified_name="Acme")["id"]
    verify(hook, sandbox, number_id)
    sandbox.inject(Fault.drop(after_apply=True), method="POST", path=r"/register$")
    assert hook.register_phone_number(number_id, PIN)["success"] is True
    assert hook.register_phone_number(number_id, PIN, check_first=True)["success"] is True
    assert hook.get_phone_number(number_id, fields="status")["status"] == "PENDING"
    assert len(sandbox.requests_to(method="POST", path=r"/register$")) == 1


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
    hook.set_two_step_pin(number_id, OTHER_PIN)
    with pytest.raises(GraphPermanentError) as info:
        hook.register_phone_number(number_id, PIN)
    assert info.value.code == 133005
    assert echoed(PIN, info.value) == {}


@pytest.mark.parametrize("bad", as_params(hook_cases()))
def test_bad_lifecycle_input(hook: WhatsAppBusinessHook, whatsapp_connection: Any, bad: BadInput) -> None:
    error: BaseException | None = None
    try:
        getattr(hook, HOOK_METHODS[bad.operator])(**bad.kwargs)
    except Exception as raised:
        error = raised
    assert bad.matches(error), f"wanted '{bad.field}: ...{bad.rule}...', got {error!r}"
    assert whatsapp_connection.requests == []
    if bad.field in ("pin", "code") and len(str(bad.kwargs[bad.field]).strip()) >= 3:
        assert error is not None and str(bad.kwargs[bad.field]).strip() not in f"{error} {error!r}"
