"""Verifying a number: request a code ("sent" by SMS or voice), then verify it."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from airflow_provider_whatsapp.sandbox import schema
from airflow_provider_whatsapp.sandbox.answers import SandboxErrorAnswer, invalid_parameter
from airflow_provider_whatsapp.sandbox.endpoints.common import GraphCall
from airflow_provider_whatsapp.sandbox.state import CODE_LIFETIME, MAX_WRONG_CODES, PendingCode, PhoneNumber


def request_code(call: GraphCall, number: PhoneNumber) -> dict[str, Any]:
    """``POST /{phone_number_id}/request_code``: a new code, or 136024 within the cooldown."""
    call.validated(schema.REQUEST_CODE)
    now = call.clock.now()
    last = number.last_code_request
    if last is not None and now - last < call.settings.code_request_cooldown:
        raise SandboxErrorAnswer(
            136024,
            "Request code error: you have requested a code too many times. Wait before requesting a new one.",
            details="Too many code requests for this phone number; wait before requesting another code.",
        )
    code = call.settings.fixed_code or f"{secrets.randbelow(10**6):06d}"
    number.pending_code = PendingCode(code, now)
    number.last_code = code
    number.last_code_request = now
    return {"success": True}


def verify_code(call: GraphCall, number: PhoneNumber) -> dict[str, Any]:
    """``POST /{phone_number_id}/verify_code``: single-use codes that expire; code 4 after 5 wrong."""
    params = call.validated(schema.VERIFY_CODE)
    pending = number.pending_code
    if pending is None:
        raise invalid_parameter("(#100) No verification code has been requested")
    if call.clock.now() - pending.issued_at > CODE_LIFETIME:
        number.pending_code = None
        number.node["code_verification_status"] = "EXPIRED"
        raise invalid_parameter("(#100) The verification code has expired")
    if pending.wrong_attempts >= MAX_WRONG_CODES:
        number.pending_code = None
        raise SandboxErrorAnswer(4, "(#4) Too many attempts, please request a new code")
    if not hmac.compare_digest(str(params["code"]), pending.code):
        pending.wrong_attempts += 1
        raise invalid_parameter("(#100) The verification code you entered is incorrect")
    number.pending_code = None
    number.node["code_verification_status"] = "VERIFIED"
    return {"success": True}
