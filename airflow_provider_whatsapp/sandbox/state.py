"""In-memory model of the sandbox: WABAs, phone numbers, tokens, codes and the request log.

Nothing here locks: :class:`~airflow_provider_whatsapp.sandbox.server.GraphSandbox` holds one lock
around every read and write of a :class:`SandboxState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_WABA_ID = "102290129340398"
FIXED_TEST_CODE = "123456"
# The two-step PIN the pytest plugin's whatsapp_onboarding_sandbox gives the DAGs it runs.
FIXED_TEST_PIN = "654321"
FIRST_PHONE_NUMBER_ID = 106540352242922
MANAGEMENT_SCOPE = "whatsapp_business_management"
MESSAGING_SCOPE = "whatsapp_business_messaging"
DEFAULT_SCOPES: tuple[str, ...] = (MANAGEMENT_SCOPE, MESSAGING_SCOPE)
CODE_LIFETIME = 600.0
REGISTER_WINDOW = 72 * 3600.0
REGISTER_LIMIT = 10
MAX_WRONG_CODES = 5

# Keys of a number's dict that describe the sandbox's bookkeeping, not Graph fields: they show in
# ``GraphSandbox.numbers()`` but cannot be requested with ``fields=``.
INTERNAL_NUMBER_KEYS = frozenset({"waba_id", "cc", "phone_number", "migrate"})
PHONE_NUMBER_FIELDS = frozenset(
    {
        "id",
        "display_phone_number",
        "verified_name",
        "code_verification_status",
        "name_status",
        "status",
        "quality_rating",
        "platform_type",
        "throughput",
        "account_mode",
        "is_pin_enabled",
        "is_official_business_account",
        "last_onboarded_time",
        "messaging_limit_tier",
    }
)
WABA_FIELDS = frozenset({"id", "name", "currency", "timezone_id", "message_template_namespace"})


@dataclass
class Waba:
    """A WhatsApp Business Account.

    :param id: numeric string id.
    :param name: display name.
    :param currency: ISO currency code.
    :param timezone_id: Graph timezone id.
    :param message_template_namespace: template namespace.
    """

    id: str
    name: str
    currency: str = "USD"
    timezone_id: str = "1"
    message_template_namespace: str = "sandbox_namespace"

    def node(self) -> dict[str, Any]:
        """The Graph node as a dict."""
        return {
            "id": self.id,
            "name": self.name,
            "currency": self.currency,
            "timezone_id": self.timezone_id,
            "message_template_namespace": self.message_template_namespace,
        }


@dataclass
class TokenInfo:
    """An access token the sandbox knows.

    :param token: the token string.
    :param waba_ids: the WABAs it reaches; ``None`` means all of them.
    :param scopes: granted permissions.
    :param expired: set by ``GraphSandbox.expire_token``.
    """

    token: str
    waba_ids: frozenset[str] | None
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    expired: bool = False

    def reaches(self, waba_id: str) -> bool:
        """Whether this token may act on ``waba_id``."""
        return self.waba_ids is None or waba_id in self.waba_ids


@dataclass
class PendingCode:
    """A verification code that was "sent" and not yet used.

    :param code: the six digits.
    :param issued_at: sandbox-clock time of the request.
    :param wrong_attempts: wrong guesses so far.
    """

    code: str
    issued_at: float
    wrong_attempts: int = 0


@dataclass
class PhoneNumber:
    """A phone number node plus the sandbox's bookkeeping for it.

    :param node: the Graph fields and the internal keys of ``INTERNAL_NUMBER_KEYS``.
    :param created_at: sandbox-clock time of creation.
    :param preverified: created with ``preverified_id``.
    :param pin: the two-step verification PIN, once set.
    :param pending_code: the outstanding verification code.
    :param last_code: the last code generated, even if used since.
    :param last_code_request: sandbox-clock time of the last accepted ``request_code``.
    :param register_calls: sandbox-clock times of register/deregister calls.
    :param blocked_until: end of a 133016 block, sandbox clock.
    :param name_approve_at: when a ``PENDING_REVIEW`` name turns ``APPROVED``.
    :param connect_at: when a registered number turns ``CONNECTED``.
    """

    node: dict[str, Any]
    created_at: float
    preverified: bool = False
    pin: str | None = None
    pending_code: PendingCode | None = None
    last_code: str | None = None
    last_code_request: float | None = None
    register_calls: list[float] = field(default_factory=list)
    blocked_until: float | None = None
    name_approve_at: float | None = None
    connect_at: float | None = None

    @property
    def id(self) -> str:
        """The phone number id."""
        return str(self.node["id"])

    @property
    def waba_id(self) -> str:
        """The WABA the number belongs to."""
        return str(self.node["waba_id"])

    def refresh(self, now: float) -> None:
        """Apply the transitions that were due by ``now`` (they are computed lazily, on read)."""
        if (
            self.name_approve_at is not None
            and now >= self.name_approve_at
            and self.node.get("name_status") == "PENDING_REVIEW"
        ):
            self.node["name_status"] = "APPROVED"
            self.name_approve_at = None
        if self.connect_at is not None and now >= self.connect_at:
            self.node["status"] = "CONNECTED"
            self.connect_at = None


@dataclass
class ReceivedRequest:
    """One Graph request the sandbox received (control endpoints are not logged).

    :param method: HTTP method.
    :param path: the path without the ``/vNN.N`` prefix and without the query string.
    :param query: query parameters (last value wins).
    :param body: the parsed JSON or form body.
    :param headers: request headers as received, ``Authorization`` included.
    :param status: HTTP status answered; ``None`` when the connection was dropped.
    :param fault: the name of the injected fault that handled it, if any.
    :param time: sandbox-clock time of receipt.
    :param version: the Graph version of the URL, e.g. ``v26.0`` (``None`` if missing).
    :param waba_id: the WABA whose business-use-case budget the call was counted against (or
        refused by); ``None`` for calls about no WABA, unauthenticated calls and faults.
    """

    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    headers: dict[str, str]
    status: int | None = None
    fault: str | None = None
    time: float = 0.0
    version: str | None = None
    waba_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for ``GET /_sandbox/requests``."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "body": self.body,
            "headers": self.headers,
            "status": self.status,
            "fault": self.fault,
            "time": self.time,
            "version": self.version,
            "waba_id": self.waba_id,
        }


@dataclass
class SchemaViolation:
    """A request parameter that broke the operation's schema.

    :param operation: OpenAPI operation id.
    :param param: parameter name.
    :param rule: the rule broken, e.g. ``pattern ^[0-9]{6}$``.
    :param message: the Graph error message answered.
    :param value: the value received.
    """

    operation: str
    param: str
    rule: str
    message: str
    value: Any = None


@dataclass
class SandboxState:
    """Everything the sandbox remembers; reset by ``GraphSandbox.reset()``.

    :param wabas: WABAs by id.
    :param numbers: phone numbers by id, in creation order.
    :param tokens: known tokens.
    :param requests: the received-request log.
    :param violations: schema violations seen.
    :param next_number_id: the id the next created number gets.
    """

    wabas: dict[str, Waba] = field(default_factory=dict)
    numbers: dict[str, PhoneNumber] = field(default_factory=dict)
    tokens: dict[str, TokenInfo] = field(default_factory=dict)
    requests: list[ReceivedRequest] = field(default_factory=list)
    violations: list[SchemaViolation] = field(default_factory=list)
    next_number_id: int = FIRST_PHONE_NUMBER_ID
