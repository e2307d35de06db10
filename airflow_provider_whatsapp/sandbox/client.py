"""Reads the sandbox's control endpoints from another process (a DAG, a test, the demo)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def control_json(base_url: str, path: str, timeout: float = 10.0) -> Any:
    """GET ``{base_url}/_sandbox/{path}`` and return its JSON."""
    url = f"{base_url.rstrip('/')}/_sandbox/{path.lstrip('/')}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def read_verification_code(base_url: str, phone_number_id: str) -> str:
    """The last verification code the sandbox "sent" to a number, as an SMS would deliver it."""
    code = control_json(base_url, f"codes/{phone_number_id}").get("code")
    if not isinstance(code, str):
        raise LookupError(f"the sandbox holds no verification code for {phone_number_id}")
    return code


def verification_code_for(request: Any) -> str:
    """
    A code source for the onboarding operator: the code the sandbox sent to the requested number.

    ``request`` is the operator's code request (its ``graph_host`` is the sandbox's URL, as the
    connection gives it, and its ``phone_number_id`` the number's).
    """
    return read_verification_code(request.graph_host, request.phone_number_id)
