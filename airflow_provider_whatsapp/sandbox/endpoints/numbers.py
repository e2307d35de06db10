"""The phone-number nodes: create on a WABA, list a WABA's numbers, read one, set its PIN."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode

from airflow_provider_whatsapp.sandbox import schema
from airflow_provider_whatsapp.sandbox.answers import invalid_parameter
from airflow_provider_whatsapp.sandbox.endpoints.common import GraphCall, requested_fields, selected_fields
from airflow_provider_whatsapp.sandbox.state import PHONE_NUMBER_FIELDS, PhoneNumber, Waba

DEFAULT_NUMBER_FIELDS = ("id", "display_phone_number", "verified_name", "quality_rating", "code_verification_status")
DEFAULT_LIST_FIELDS = (*DEFAULT_NUMBER_FIELDS, "status")
NODE_TYPE = "WhatsAppBusinessPhoneNumber"
# Paging links leave out the token and the proof: the client sends its own credentials.
CREDENTIAL_PARAMS = frozenset({"access_token", "appsecret_proof"})
CURSOR_PREFIX = "cursor:"


def display_number(cc: str, number: str) -> str:
    """``+1 555-010-0001``: readable, and its digits are exactly cc + number."""
    if len(number) < 7:
        return f"+{cc} {number}"
    groups = [number[:-7], number[-7:-4], number[-4:]]
    return f"+{cc} " + "-".join(group for group in groups if group)


def cursor_for(number_id: str) -> str:
    """The opaque paging cursor that points at a number."""
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{number_id}".encode()).decode().rstrip("=")


def number_id_of_cursor(cursor: str) -> str:
    """The number a paging cursor points at; code 100 for a cursor the sandbox did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_parameter("(#100) Invalid cursor") from None
    if not raw.startswith(CURSOR_PREFIX):
        raise invalid_parameter("(#100) Invalid cursor")
    return raw[len(CURSOR_PREFIX) :]


def number_view(call: GraphCall, number: PhoneNumber, names: list[str]) -> dict[str, Any]:
    """The fields ``names`` of a number as Graph answers them now."""
    number.refresh(call.clock.now())
    return selected_fields(number.node, names, PHONE_NUMBER_FIELDS, NODE_TYPE)


def create_phone_number(call: GraphCall, waba: Waba) -> dict[str, Any]:
    """``POST /{waba_id}/phone_numbers``: ``{"id"}``, or the fields asked for (read-after-write)."""
    params = call.validated(schema.CREATE)
    names = requested_fields(params.get("fields"), ())
    selected_fields({"id": ""}, names, PHONE_NUMBER_FIELDS, NODE_TYPE)
    cc, national = str(params["cc"]), str(params["phone_number"])
    for existing in call.state.numbers.values():
        if existing.waba_id == waba.id and existing.node["cc"] == cc and existing.node["phone_number"] == national:
            raise invalid_parameter(
                f"(#100) The phone number +{cc} {national} is already registered on this WhatsApp Business Account"
            )
    now = call.clock.now()
    number_id = str(call.state.next_number_id)
    call.state.next_number_id += 1
    verified_name = params.get("verified_name") or None
    preverified = bool(params.get("preverified_id"))
    node: dict[str, Any] = {
        "id": number_id,
        "display_phone_number": display_number(cc, national),
        "verified_name": verified_name,
        "code_verification_status": "VERIFIED" if preverified else "NOT_VERIFIED",
        "name_status": "PENDING_REVIEW" if verified_name else "AVAILABLE_WITHOUT_REVIEW",
        "status": "PENDING",
        "quality_rating": "NA",
        "platform_type": "NOT_APPLICABLE",
        "throughput": {"level": "NOT_APPLICABLE"},
        "account_mode": "LIVE",
        "is_pin_enabled": False,
        "is_official_business_account": False,
        "last_onboarded_time": None,
        "messaging_limit_tier": "TIER_250",
        "waba_id": waba.id,
        "cc": cc,
        "phone_number": national,
        "migrate": params.get("migrate_phone_number") is True,
    }
    number = PhoneNumber(node, created_at=now, preverified=preverified)
    if verified_name:
        number.name_approve_at = now + call.settings.name_review_delay
    call.state.numbers[number_id] = number
    return number_view(call, number, names) if names else {"id": number_id}


def list_phone_numbers(call: GraphCall, waba: Waba) -> dict[str, Any]:
    """``GET /{waba_id}/phone_numbers``: one page, with cursors and ``next``/``previous`` links."""
    params = call.validated(schema.LIST)
    names = requested_fields(params.get("fields"), DEFAULT_LIST_FIELDS)
    selected_fields({"id": ""}, names, PHONE_NUMBER_FIELDS, NODE_TYPE)
    limit = int(params.get("limit", 25))
    numbers = [n for n in call.state.numbers.values() if n.waba_id == waba.id]
    ids = [n.id for n in numbers]

    def position(cursor: Any) -> int:
        number_id = number_id_of_cursor(str(cursor))
        if number_id not in ids:
            raise invalid_parameter("(#100) Invalid cursor")
        return ids.index(number_id)

    if params.get("after"):
        start = position(params["after"]) + 1
        end = start + limit
    elif params.get("before"):
        end = position(params["before"])
        start = max(0, end - limit)
    else:
        start, end = 0, limit
    page = numbers[start:end]
    result: dict[str, Any] = {"data": [number_view(call, n, names) for n in page]}
    if not page:
        return result
    paging: dict[str, Any] = {"cursors": {"before": cursor_for(page[0].id), "after": cursor_for(page[-1].id)}}
    base_query = {k: v for k, v in call.query.items() if k not in CREDENTIAL_PARAMS | {"after", "before"}}
    base_url = f"http://{call.host}/{call.version}/{waba.id}/phone_numbers?"
    if end < len(numbers):
        paging["next"] = base_url + urlencode({**base_query, "after": paging["cursors"]["after"]})
    if start > 0:
        paging["previous"] = base_url + urlencode({**base_query, "before": paging["cursors"]["before"]})
    result["paging"] = paging
    return result


def get_phone_number(call: GraphCall, number: PhoneNumber) -> dict[str, Any]:
    """``GET /{phone_number_id}``: the fields asked for."""
    call.validated(schema.GET)
    return number_view(call, number, requested_fields(call.params.get("fields"), DEFAULT_NUMBER_FIELDS))


def update_phone_number(call: GraphCall, number: PhoneNumber) -> dict[str, Any]:
    """``POST /{phone_number_id}``: sets the two-step verification PIN."""
    params = call.validated(schema.UPDATE)
    if params.get("pin"):
        number.pin = str(params["pin"])
        number.node["is_pin_enabled"] = True
    return {"success": True}
