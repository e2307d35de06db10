"""The WhatsApp Business Account node and ``debug_token``, which describes a token."""

from __future__ import annotations

from typing import Any

from airflow_provider_whatsapp.sandbox.answers import invalid_parameter
from airflow_provider_whatsapp.sandbox.endpoints.common import GraphCall, requested_fields, selected_fields
from airflow_provider_whatsapp.sandbox.state import WABA_FIELDS, Waba

DEFAULT_WABA_FIELDS = ("id", "name")
SANDBOX_APP_ID = "1000000000000001"


def get_waba(call: GraphCall, waba: Waba) -> dict[str, Any]:
    """``GET /{waba_id}``: the fields asked for."""
    names = requested_fields(call.params.get("fields"), DEFAULT_WABA_FIELDS)
    return selected_fields(waba.node(), names, WABA_FIELDS, "WhatsAppBusinessAccount")


def debug_token(call: GraphCall, target: None) -> dict[str, Any]:
    """``GET /debug_token?input_token=...``: validity, scopes and the WABAs the token reaches."""
    input_token = call.params.get("input_token")
    if not input_token:
        raise invalid_parameter("(#100) The parameter input_token is required")
    info = call.state.tokens.get(str(input_token))
    scopes = list(info.scopes) if info is not None else []
    wabas = call.state.wabas
    targets = sorted(wabas) if info is None or info.waba_ids is None else sorted(info.waba_ids)
    return {
        "data": {
            "app_id": SANDBOX_APP_ID,
            "type": "SYSTEM_USER",
            "application": "Sandbox",
            "is_valid": info is not None and not info.expired,
            "expires_at": 0,
            "data_access_expires_at": 0,
            "scopes": scopes,
            "granular_scopes": [{"scope": scope, "target_ids": targets} for scope in scopes],
        }
    }
