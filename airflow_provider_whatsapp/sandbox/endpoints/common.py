"""What every endpoint handler works with: the call, the sandbox it is served by, field selection
and parameter validation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_whatsapp.sandbox import schema
from airflow_provider_whatsapp.sandbox.answers import invalid_parameter
from airflow_provider_whatsapp.sandbox.clock import SandboxClock
from airflow_provider_whatsapp.sandbox.state import SandboxState


@dataclass(frozen=True)
class SandboxSettings:
    """The behaviour a sandbox was started with.

    :param app_secret: if set, every call must carry an ``appsecret_proof`` made with it.
    :param fixed_code: the verification code to "send" every time; random when ``None``.
    :param name_review_delay: seconds from create until a pending display name is approved.
    :param connect_delay: seconds from register until the number is ``CONNECTED``.
    :param code_request_cooldown: minimum seconds between two ``request_code`` calls of a number.
    """

    app_secret: str | None = None
    fixed_code: str | None = None
    name_review_delay: float = 0.0
    connect_delay: float = 0.0
    code_request_cooldown: float = 60.0


@dataclass
class GraphCall:
    """One Graph call being served, and the sandbox serving it.

    :param method: HTTP method.
    :param version: the ``vNN.N`` of the URL, ``None`` when missing.
    :param path: the path after the version.
    :param query: query parameters.
    :param params: query and body parameters together.
    :param headers: request headers.
    :param host: the host the client addressed, for paging links.
    :param state: the sandbox's state.
    :param clock: the sandbox clock.
    :param settings: the sandbox's behaviour.
    :param waba_id: set while routing: the WABA the call is counted against.
    :param usage_headers: set while routing: the usage headers of the answer.
    """

    method: str
    version: str | None
    path: str
    query: dict[str, str]
    params: dict[str, Any]
    headers: dict[str, str]
    host: str
    state: SandboxState
    clock: SandboxClock
    settings: SandboxSettings
    waba_id: str | None = None
    usage_headers: list[tuple[str, str]] = field(default_factory=list)

    def validated(self, operation: str) -> dict[str, Any]:
        """The call's parameters, coerced to the types ``operation`` declares.

        :raises SandboxErrorAnswer: code 100 for the first rule broken (all are recorded).
        """
        params = schema.coerced(operation, self.params)
        broken = schema.violations(operation, params)
        if broken:
            self.state.violations.extend(broken)
            raise invalid_parameter(broken[0].message)
        return params


def requested_fields(value: Any, default: Iterable[str]) -> list[str]:
    """The field names a ``fields`` parameter asks for, in order; ``default`` when it is empty."""
    if not isinstance(value, str) or not value.strip():
        return list(default)
    names: list[str] = []
    # Nested selections like ``throughput{level}`` select the whole field here.
    for part in re.sub(r"\{[^}]*\}", "", value).split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return names


def selected_fields(node: dict[str, Any], names: list[str], allowed: frozenset[str], node_type: str) -> dict[str, Any]:
    """A copy of ``node`` with ``id`` and the ``names`` asked for; code 100 for a field it lacks."""
    for name in names:
        if name not in allowed:
            raise invalid_parameter(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})")
    view = {"id": node["id"], **{name: node.get(name) for name in names if name != "id"}}
    copied: dict[str, Any] = json.loads(json.dumps(view))
    return copied
