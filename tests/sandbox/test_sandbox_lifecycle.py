"""Sandbox: request/verify code, register, deregister, PIN, name review and connection delays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any

import pytest

PLUGIN = "airflow_provider_whatsapp.sandbox.pytest_plugin"
if not any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]

SMS = {"code_method": "SMS", "language": "en_US"}


def test_full_onboarding(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    assert graph.post(f"{number_id}/request_code", SMS).json() == {"success": True}
    code = whatsapp_sandbox.last_code(number_id)
    assert code is not None and len(code) == 6 and code.isdigit()
    assert graph.post(f"{number_id}/verify_code", {"code": code}).json()["success"] is True
    assert whatsapp_sandbox.number(number_id)["code_verification_status"] == "VERIFIED"
    assert graph.register(number_id).json() == {"success": True}
    node = whatsapp_sandbox.number(number_id)
    assert node["status"] == "CONNECTED"
    assert node["platform_type"] == "CLOUD_API"
    assert node["is_pin_enabled"] is True
    assert node["last_onboarded_time"] is not None
    assert graph.post(f"{number_id}/deregister").json() == {"success": True}
    node = whatsapp_sandbox.number(number_id)
    assert (node["status"], node["platform_type"]) == ("DISCONNECTED", "NOT_APPLICABLE")
    assert whatsapp_sandbox.schema_violations == []


def test_fixed_code(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(fixed_code="123456")
    graph = graph_for(sandbox)
    number_id = graph.create()
    graph.post(f"{number_id}/request_code", SMS)
    assert sandbox.last_code(number_id) == "123456"


def test_request_code_cooldown_is_136024(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    assert graph.post(f"{number_id}/request_code", SMS).ok
    again = graph.post(f"{number_id}/request_code", {"code_method": "VOICE", "language": "en_US"})
    assert again.status_code == 400
    assert graph.error(again)["code"] == 136024
    assert graph.error(again)["error_data"]["messaging_product"] == "whatsapp"
    whatsapp_sandbox.clock.advance(61)
    assert graph.post(f"{number_id}/request_code", SMS).ok


def test_request_code_validation(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    for body in ({"code_method": "EMAIL", "language": "en_US"}, {"code_method": "SMS", "language": "english"}, {}):
        response = graph.post(f"{number_id}/request_code", body)
        assert graph.error(response)["code"] == 100
    assert len(whatsapp_sandbox.schema_violations) >= 3


def test_verify_code_errors(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    none = graph.post(f"{number_id}/verify_code", {"code": "000000"})
    assert graph.error(none)["message"] == "(#100) No verification code has been requested"
    bad = graph.post(f"{number_id}/verify_code", {"code": "12345"})
    assert graph.error(bad)["message"] == "(#100) Param code does not match pattern ^[0-9]{6}$"
    assert whatsapp_sandbox.schema_violations[-1].param == "code"

    graph.post(f"{number_id}/request_code", SMS)
    code = whatsapp_sandbox.last_code(number_id)
    wrong = "000000" if code != "000000" else "111111"
    response = graph.post(f"{number_id}/verify_code", {"code": wrong})
    assert graph.error(response)["message"] == "(#100) The verification code you entered is incorrect"
    assert graph.post(f"{number_id}/verify_code", {"code": code}).ok
    # Single use.
    again = graph.post(f"{number_id}/verify_code", {"code": code})
    assert graph.error(again)["message"] == "(#100) No verification code has been requested"


def test_code_expires_after_ten_minutes(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    graph.post(f"{number_id}/request_code", SMS)
    code = whatsapp_sandbox.last_code(number_id)
    whatsapp_sandbox.clock.advance(601)
    response = graph.post(f"{number_id}/verify_code", {"code": code})
    assert graph.error(response)["message"] == "(#100) The verification code has expired"
    assert whatsapp_sandbox.number(number_id)["code_verification_status"] == "EXPIRED"


def test_too_many_attempts_is_code_4(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    graph.post(f"{number_id}/request_code", SMS)
    code = whatsapp_sandbox.last_code(number_id)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        assert graph.error(graph.post(f"{number_id}/verify_code", {"code": wrong}))["code"] == 100
    sixth = graph.post(f"{number_id}/verify_code", {"code": code})
    assert sixth.status_code == 400
    assert graph.error(sixth)["code"] == 4
    assert graph.error(sixth)["message"] == "(#4) Too many attempts, please request a new code"
    after = graph.post(f"{number_id}/verify_code", {"code": code})
    assert graph.error(after)["message"] == "(#100) No verification code has been requested"


def test_register_needs_verification_133010(graph: Any) -> None:
    number_id = graph.create()
    response = graph.register(number_id)
    err = graph.error(response)
    assert err["code"] == 133010
    assert err["message"] == "Phone number not verified"
    assert err["error_data"]["details"]


@pytest.mark.parametrize("extra", [{"preverified_id": "42"}, {"migrate_phone_number": True}])
def test_register_preverified_or_migrated(graph: Any, extra: dict[str, Any]) -> None:
    number_id = graph.create(**extra)
    assert graph.register(number_id).ok


def test_register_validation(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.verified()
    for body in (
        {"messaging_product": "whatsapp", "pin": "12345"},
        {"messaging_product": "whatsapp", "pin": "abcdef"},
        {"messaging_product": "sms", "pin": "123456"},
        {"pin": "123456"},
        {"messaging_product": "whatsapp", "pin": "123456", "data_localization_region": "FR"},
    ):
        response = graph.post(f"{number_id}/register", body)
        assert graph.error(response)["code"] == 100, body
    assert len(whatsapp_sandbox.schema_violations) >= 5
    ok = graph.post(
        f"{number_id}/register", {"messaging_product": "whatsapp", "pin": "123456", "data_localization_region": "DE"}
    )
    assert ok.ok


def test_pin_mismatch_is_133005(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.verified()
    assert graph.post(number_id, {"pin": "654321"}).json() == {"success": True}
    assert whatsapp_sandbox.number(number_id)["is_pin_enabled"] is True
    response = graph.register(number_id, "123456")
    assert graph.error(response)["code"] == 133005
    assert graph.error(response)["message"] == "Two step verification PIN Mismatch"
    assert graph.register(number_id, "654321").ok
    bad_pin = graph.post(number_id, {"pin": "12"})
    assert graph.error(bad_pin)["code"] == 100


def test_register_deregister_block_133016(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.verified()
    for i in range(10):
        response = graph.register(number_id) if i % 2 == 0 else graph.post(f"{number_id}/deregister")
        assert response.ok, (i, response.text)
        whatsapp_sandbox.clock.advance(60)
    tenth_at = datetime.now(UTC) + timedelta(seconds=whatsapp_sandbox.clock.offset - 60)
    blocked = graph.register(number_id)
    err = graph.error(blocked)
    assert blocked.status_code == 400
    assert err["code"] == 133016
    assert err["message"] == "Account register deregister rate limit exceeded"
    until_text = err["error_data"]["details"].rsplit(" ", 1)[-1].rstrip(".")
    until = datetime.strptime(until_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((until - tenth_at) - timedelta(hours=72)) < timedelta(minutes=5)
    assert until_text in err["error_user_msg"]
    assert graph.error(graph.post(f"{number_id}/deregister"))["code"] == 133016

    whatsapp_sandbox.clock.advance(71 * 3600)
    assert graph.error(graph.register(number_id))["code"] == 133016
    whatsapp_sandbox.clock.advance(3600)
    assert graph.register(number_id).ok


def test_failed_register_calls_count_too(graph: Any) -> None:
    number_id = graph.create()
    for _ in range(10):
        assert graph.error(graph.register(number_id))["code"] == 133010
    assert graph.error(graph.register(number_id))["code"] == 133016


def test_connect_and_name_review_delays(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(connect_delay=30.0, name_review_delay=3600.0)
    graph = graph_for(sandbox)
    number_id = graph.verified()
    assert sandbox.number(number_id)["name_status"] == "PENDING_REVIEW"
    assert graph.register(number_id).ok
    assert graph.get(number_id, params={"fields": "status"}).json()["status"] == "PENDING"
    sandbox.clock.advance(31)
    assert graph.get(number_id, params={"fields": "status"}).json()["status"] == "CONNECTED"
    sandbox.clock.advance(3600)
    assert graph.get(number_id, params={"fields": "name_status"}).json()["name_status"] == "APPROVED"


def test_name_control_and_set_fields(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(name_review_delay=3600.0)
    graph = graph_for(sandbox)
    first, second = graph.create("5550100001"), graph.create("5550100002")
    sandbox.approve_name(first)
    sandbox.decline_name(second)
    assert sandbox.number(first)["name_status"] == "APPROVED"
    assert sandbox.number(second)["name_status"] == "DECLINED"
    sandbox.set_fields(first, status="BANNED", quality_rating="RED")
    assert graph.get(first, params={"fields": "status,quality_rating"}).json() == {
        "id": first,
        "status": "BANNED",
        "quality_rating": "RED",
    }
