"""Registering a number for the Cloud API and deregistering it, with the 10-per-72-h rule."""

from __future__ import annotations

from typing import Any

from airflow_provider_whatsapp.sandbox import schema
from airflow_provider_whatsapp.sandbox.answers import SandboxErrorAnswer
from airflow_provider_whatsapp.sandbox.clock import graph_time, iso_utc
from airflow_provider_whatsapp.sandbox.endpoints.common import GraphCall
from airflow_provider_whatsapp.sandbox.state import REGISTER_LIMIT, REGISTER_WINDOW, PhoneNumber


def _count_register_call(call: GraphCall, number: PhoneNumber) -> None:
    """Record a register/deregister call, or raise 133016 while the number is blocked."""
    now = call.clock.now()
    if number.blocked_until is None or now >= number.blocked_until:
        number.blocked_until = None
        recent = [t for t in number.register_calls if now - t < REGISTER_WINDOW]
        if len(recent) >= REGISTER_LIMIT:
            number.blocked_until = recent[REGISTER_LIMIT - 1] + REGISTER_WINDOW
    if number.blocked_until is not None:
        until = iso_utc(call.clock.wall(number.blocked_until))
        raise SandboxErrorAnswer(
            133016,
            "Account register deregister rate limit exceeded",
            user_title="Too many register/deregister calls",
            user_msg=f"This phone number made too many register and deregister calls. Try again after {until}.",
            details=f"Registration and deregistration of this phone number are blocked until {until}.",
        )
    number.register_calls.append(now)


def register(call: GraphCall, number: PhoneNumber) -> dict[str, Any]:
    """``POST /{phone_number_id}/register``: needs a verified number and, once set, the same PIN."""
    params = call.validated(schema.REGISTER)
    _count_register_call(call, number)
    node = number.node
    if not (node["code_verification_status"] == "VERIFIED" or number.preverified or node["migrate"]):
        raise SandboxErrorAnswer(
            133010,
            "Phone number not verified",
            details="Verify the phone number with request_code and verify_code before registering it.",
        )
    pin = str(params["pin"])
    if node["is_pin_enabled"] and number.pin is not None and pin != number.pin:
        raise SandboxErrorAnswer(
            133005,
            "Two step verification PIN Mismatch",
            details="The PIN does not match the phone number's two-step verification PIN.",
        )
    now = call.clock.now()
    number.pin = pin
    node["is_pin_enabled"] = True
    node["platform_type"] = "CLOUD_API"
    node["last_onboarded_time"] = graph_time(call.clock.wall(now))
    number.connect_at = now + call.settings.connect_delay
    number.refresh(now)
    return {"success": True}


def deregister(call: GraphCall, number: PhoneNumber) -> dict[str, Any]:
    """``POST /{phone_number_id}/deregister``: the number is ``DISCONNECTED`` at once."""
    call.validated(schema.DEREGISTER)
    _count_register_call(call, number)
    number.connect_at = None
    number.node["status"] = "DISCONNECTED"
    number.node["platform_type"] = "NOT_APPLICABLE"
    return {"success": True}
