"""From a Graph request to its answer: authentication, the route table, rate limits, permissions.

To serve another endpoint, write its handler in the module of its family and add one row to
``WABA_ROUTES``, ``NUMBER_ROUTES`` or ``ROOT_ROUTES``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from airflow_provider_whatsapp.sandbox.answers import (
    HttpAnswer,
    SandboxErrorAnswer,
    invalid_parameter,
    trace_headers,
    unknown_path,
)
from airflow_provider_whatsapp.sandbox.endpoints import accounts, numbers, registration, verification
from airflow_provider_whatsapp.sandbox.endpoints.common import GraphCall
from airflow_provider_whatsapp.sandbox.rate_limits import MANAGEMENT_USAGE, MESSAGING_USAGE, RateLimits
from airflow_provider_whatsapp.sandbox.state import MANAGEMENT_SCOPE, MESSAGING_SCOPE, PhoneNumber, TokenInfo, Waba
from airflow_provider_whatsapp.sandbox.transport import header_value

VERSION_PATH = re.compile(r"^/(v\d+\.\d+)(/.*)?$")
GRAPH_DOCS = "https://developers.facebook.com/docs/graph-api"

#: The node a route acts on: a WABA, a phone number, or none.
Target = TypeVar("Target", Waba, PhoneNumber, None)


def _never(call: GraphCall) -> bool:
    return False


def _always(call: GraphCall) -> bool:
    return True


def _sets_pin(call: GraphCall) -> bool:
    return "pin" in call.params


@dataclass(frozen=True)
class Route(Generic[Target]):
    """How one endpoint is served.

    :param handler: builds the answer's JSON from the call and its target node.
    :param usage_type: the ``type`` of its entry in ``X-Business-Use-Case-Usage``.
    :param needs_messaging: whether the call needs ``whatsapp_business_messaging`` as well.
    """

    handler: Callable[[GraphCall, Target], dict[str, Any]]
    usage_type: str = MANAGEMENT_USAGE
    needs_messaging: Callable[[GraphCall], bool] = _never


# By (HTTP method, edge after the node's ID).
WABA_ROUTES: dict[tuple[str, str | None], Route[Waba]] = {
    ("POST", "phone_numbers"): Route(numbers.create_phone_number),
    ("GET", "phone_numbers"): Route(numbers.list_phone_numbers),
    ("GET", None): Route(accounts.get_waba),
}
NUMBER_ROUTES: dict[tuple[str, str | None], Route[PhoneNumber]] = {
    ("GET", None): Route(numbers.get_phone_number),
    ("POST", None): Route(numbers.update_phone_number, needs_messaging=_sets_pin),
    ("POST", "request_code"): Route(verification.request_code),
    ("POST", "verify_code"): Route(verification.verify_code),
    ("POST", "register"): Route(registration.register, MESSAGING_USAGE, _always),
    ("POST", "deregister"): Route(registration.deregister, MESSAGING_USAGE, _always),
}
# Paths that name no node, by (HTTP method, path).
ROOT_ROUTES: dict[tuple[str, str], Route[None]] = {
    ("GET", "/debug_token"): Route(accounts.debug_token),
}


def version_and_path(path: str) -> tuple[str | None, str]:
    """``("v26.0", "/123/register")`` from ``/v26.0/123/register``; no version: ``(None, path)``."""
    match = VERSION_PATH.match(path)
    return (match.group(1), match.group(2) or "/") if match else (None, path)


def authenticated_token(call: GraphCall) -> TokenInfo:
    """The token the call carries (``Authorization`` header or ``access_token``), checked.

    :raises SandboxErrorAnswer: 190 for a missing, unknown or expired token; 100 for a missing
        or wrong ``appsecret_proof`` when the app requires one.
    """
    authorization = header_value(call.headers, "Authorization") or ""
    scheme, _, credentials = authorization.partition(" ")
    token: Any = credentials.strip() if scheme.lower() in ("bearer", "oauth") else None
    if not token:
        token = call.params.get("access_token")
    if not token:
        raise SandboxErrorAnswer(190, "An access token is required to request this resource.", status=401)
    info = call.state.tokens.get(str(token))
    if info is None:
        raise SandboxErrorAnswer(190, "Invalid OAuth access token - Cannot parse access token", status=401)
    if info.expired:
        raise SandboxErrorAnswer(
            190,
            "Error validating access token: Session has expired. The current time is later than the expiry time.",
            status=401,
            subcode=463,
        )
    app_secret = call.settings.app_secret
    if app_secret is not None:
        proof = call.params.get("appsecret_proof")
        if not proof:
            raise invalid_parameter("API calls from the server require an appsecret_proof argument")
        expected = hmac.new(app_secret.encode(), info.token.encode(), hashlib.sha256).hexdigest()
        if not isinstance(proof, str) or not hmac.compare_digest(proof.lower(), expected):
            raise invalid_parameter("Invalid appsecret_proof provided in the API argument")
    return info


def _unsupported(verb: str, object_id: str, docs: bool) -> SandboxErrorAnswer:
    message = (
        f"Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation."
    )
    if docs:
        message += f" Please read the Graph API documentation at {GRAPH_DOCS}"
    return SandboxErrorAnswer(100, message, subcode=33, type="GraphMethodException")


@dataclass(frozen=True)
class _Resolved:
    """Where a call goes: its node, its route, or the error that answers it instead."""

    target: Waba | PhoneNumber | None = None
    route: Route[Any] | None = None
    error: SandboxErrorAnswer | None = None

    @property
    def waba_id(self) -> str | None:
        if isinstance(self.target, Waba):
            return self.target.id
        return self.target.waba_id if isinstance(self.target, PhoneNumber) else None


def _resolved(call: GraphCall) -> _Resolved:
    segments = [segment for segment in call.path.split("/") if segment]
    root = ROOT_ROUTES.get((call.method, "/" + "/".join(segments)))
    if root is not None:
        return _Resolved(route=root)
    if not segments or len(segments) > 2:
        return _Resolved(error=unknown_path(call.path))
    object_id, edge = segments[0], (segments[1] if len(segments) == 2 else None)
    verb = call.method.lower()
    target: Waba | PhoneNumber | None = call.state.wabas.get(object_id) or call.state.numbers.get(object_id)
    if target is None:
        return _Resolved(error=_unsupported(verb, object_id, docs=True))
    routes: dict[tuple[str, str | None], Any] = WABA_ROUTES if isinstance(target, Waba) else NUMBER_ROUTES
    route = routes.get((call.method, edge))
    if route is None:
        error = unknown_path(f"/{edge}") if edge is not None else _unsupported(verb, object_id, docs=False)
        return _Resolved(target, error=error)
    return _Resolved(target, route)


def _answer_json(call: GraphCall, limits: RateLimits, body_error: str | None) -> dict[str, Any]:
    if call.version is None:
        raise unknown_path(call.path)
    token = authenticated_token(call)
    resolved = _resolved(call)
    # A call is counted against the WABA it is about only when the token may see that WABA;
    # everything else authenticated counts against the app alone.
    waba_id = resolved.waba_id if resolved.waba_id is not None and token.reaches(resolved.waba_id) else None
    call.waba_id = waba_id
    usage_type = resolved.route.usage_type if resolved.route is not None else MANAGEMENT_USAGE
    limits.count_call(waba_id, usage_type)
    call.usage_headers = limits.usage_headers(waba_id, usage_type)
    if body_error is not None:
        raise invalid_parameter(body_error)
    if resolved.error is not None:
        raise resolved.error
    assert resolved.route is not None
    if resolved.target is not None and (
        waba_id is None
        or MANAGEMENT_SCOPE not in token.scopes
        or (resolved.route.needs_messaging(call) and MESSAGING_SCOPE not in token.scopes)
    ):
        raise SandboxErrorAnswer(200, "(#200) Permissions error", status=403)
    return resolved.route.handler(call, resolved.target)


def graph_answer(call: GraphCall, limits: RateLimits, body_error: str | None) -> HttpAnswer:
    """Serve one Graph call: its JSON, or its error; with trace headers and, once counted, usage.

    :param call: the call.
    :param limits: the rate limits it is counted against.
    :param body_error: why the body could not be read, if it could not.
    """
    try:
        payload = _answer_json(call, limits, body_error)
    except SandboxErrorAnswer as error:
        return error.answer([*trace_headers(), *call.usage_headers])
    return HttpAnswer.json(200, payload, [*trace_headers(), *call.usage_headers])
