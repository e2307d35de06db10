"""Errors raised by the WhatsApp Business provider, and the table that classifies Graph's codes.

Graph answers almost every error with HTTP 400, so the class of an error is decided by its Graph
``code`` (and ``error_subcode``, ``is_transient``), following Meta's documented classes as listed
in ``docs/rate_limits.rst``. To teach the provider a new code, add it to
:data:`ERROR_CLASS_BY_CODE` (or :data:`ERROR_CLASS_BY_SUBCODE`) at the end of this module, and to
that page's table (a test compares the two).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException

EXCERPT_LENGTH = 200


class WhatsAppProviderError(Exception):
    """Base class of every error this provider raises."""


class InvalidInputError(WhatsAppProviderError, AirflowFailException, ValueError):
    """
    A parameter failed validation; raised before any request is sent.

    Airflow fails the task without retrying it: the same input would fail again.

    :param field: the parameter that is wrong.
    :param rule: what the parameter must look like.
    """

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class GraphAPIError(WhatsAppProviderError):
    """
    An error answered by the Graph API, or a response that could not be understood.

    :param message: Graph's ``message``, or a description of the unreadable response.
    :param code: Graph error ``code`` (``None`` when the body held no Graph error).
    :param error_subcode: Graph ``error_subcode``.
    :param type: Graph error ``type`` (for example ``OAuthException``).
    :param error_user_title: Graph ``error_user_title``.
    :param error_user_msg: Graph ``error_user_msg``.
    :param fbtrace_id: Graph ``fbtrace_id``, the ID Meta support asks for.
    :param is_transient: Graph ``is_transient``.
    :param http_status: the HTTP status of the response (``None`` when no response arrived).
    :param details: ``error_data.details`` when Graph gave it.
    :param excerpt: the start of a body that was not a Graph JSON answer.
    :param retry_after: seconds Graph asked to wait (``Retry-After`` or the usage headers), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        error_subcode: int | None = None,
        type: str | None = None,  # noqa: A002 - Graph's own name for the field
        error_user_title: str | None = None,
        error_user_msg: str | None = None,
        fbtrace_id: str | None = None,
        is_transient: bool = False,
        http_status: int | None = None,
        details: str | None = None,
        excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.retry_after = retry_after
        self.code = code
        self.error_subcode = error_subcode
        self.type = type
        self.error_user_title = error_user_title
        self.error_user_msg = error_user_msg
        self.fbtrace_id = fbtrace_id
        self.is_transient = is_transient
        self.http_status = http_status
        self.details = details
        self.excerpt = excerpt
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"Graph API error: {self.message}"]
        fields = [
            ("code", self.code),
            ("subcode", self.error_subcode),
            ("type", self.type),
            ("http_status", self.http_status),
            ("fbtrace_id", self.fbtrace_id),
            ("retry_after", self.retry_after),
        ]
        parts.append(", ".join(f"{name}={value}" for name, value in fields if value is not None))
        if self.error_user_title or self.error_user_msg:
            parts.append(f"user message: {self.error_user_title or ''} {self.error_user_msg or ''}".strip())
        if self.details:
            parts.append(f"details: {self.details}")
        if self.way_forward:
            parts.append(f"way forward: {self.way_forward}")
        if self.excerpt is not None:
            parts.append(f"body: {self.excerpt!r}")
        return " | ".join(part for part in parts if part)

    def to_dict(self) -> dict[str, Any]:
        """Return the error's fields as plain values, for XCom reports."""
        return {
            "error_class": type(self).__name__,
            "message": self.message,
            "code": self.code,
            "error_subcode": self.error_subcode,
            "type": self.type,
            "error_user_title": self.error_user_title,
            "error_user_msg": self.error_user_msg,
            "fbtrace_id": self.fbtrace_id,
            "is_transient": self.is_transient,
            "http_status": self.http_status,
            "details": self.details,
            "retry_after": self.retry_after,
            "way_forward": self.way_forward,
        }

    @property
    def way_forward(self) -> str | None:
        """What gets a number past this error, for the onboarding errors Meta documents (:data:`WAY_FORWARD`)."""
        return way_forward_for(self.code, self.error_subcode)


class BudgetWaitRequired(WhatsAppProviderError):
    """
    A call must wait longer for its budget than a task should sleep in its worker slot.

    Nothing was sent that may have been applied: the operator defers until ``seconds`` passed and
    makes the call again.

    :param seconds: how long the budget asked to wait.
    :param waba_id: the WABA whose budget it is, if known.
    """

    def __init__(self, seconds: float, waba_id: str | None = None) -> None:
        self.seconds = seconds
        self.waba_id = waba_id
        super().__init__(
            f"the call's budget{' on WABA ' + waba_id if waba_id else ''} asks for {seconds:.0f}s of waiting"
        )


class GraphTransientError(GraphAPIError):
    """A Graph error worth retrying with backoff (server trouble, ``is_transient``, HTTP 5xx)."""


class GraphThrottledError(GraphAPIError):
    """Graph refused the call because a rate limit was hit; retry after ``retry_after`` seconds."""


class GraphPermanentError(GraphAPIError, AirflowFailException):
    """
    A Graph error that retrying cannot fix (bad parameter, token, permission).

    Airflow fails the task without spending its retries on it.
    """


class GraphBlockedError(GraphPermanentError):
    """
    The number is blocked for a long time (for example the 72-hour register block, 133016).

    :param blocked_until: when the block ends, if Graph said so or it is known.
    """

    def __init__(self, message: str, *, blocked_until: datetime | None = None, **kwargs: Any) -> None:
        self.blocked_until = blocked_until
        super().__init__(message, **kwargs)

    def _describe(self) -> str:
        text = super()._describe()
        if self.blocked_until is not None:
            text += f" | blocked until {self.blocked_until.isoformat()}"
        return text


class GraphConnectionError(GraphAPIError):
    """
    No usable answer arrived: refused, reset, dropped or timed out.

    :param request_sent: whether the request may have reached Graph (so it may have been applied).
    """

    def __init__(self, message: str, *, request_sent: bool, **kwargs: Any) -> None:
        self.request_sent = request_sent
        kwargs.setdefault("is_transient", True)
        super().__init__(message, **kwargs)


class GraphResponseError(GraphTransientError):
    """The response was not a Graph JSON answer (an HTML page, an empty or truncated body)."""


# --------------------------------------------------------------------------- the table

#: Graph error codes by the class a client should treat them as; every other code is permanent.
ERROR_CLASS_BY_CODE: Mapping[int, type[GraphAPIError]] = {
    # Server trouble: retry with backoff.
    **dict.fromkeys((1, 2, 131000, 131016, 133004), GraphTransientError),
    # Rate limits: wait the time Graph announced, then retry. 4 is the app-wide platform limit,
    # 80001-80014 the business-use-case family (80008 is the WhatsApp Business Management API's,
    # 80007 the Cloud API's), 130429 Cloud API throughput, 131056 the pair rate limit.
    **dict.fromkeys(
        (4, 17, 32, 341, 613, *range(80001, 80010), 80014, 130429, 131056),
        GraphThrottledError,
    ),
    # Blocked for hours: fail fast and say until when.
    **dict.fromkeys((133008, 133015, 133016), GraphBlockedError),
}

#: Codes whose class depends on the subcode; ``(code, subcode)`` not listed falls back to the code.
ERROR_CLASS_BY_SUBCODE: Mapping[tuple[int, int], type[GraphAPIError]] = {
    # "Verification code requested too often": wait, never ask again at once. (136024 with
    # 2388091, "number not eligible", stays permanent.)
    (136024, 2388367): GraphThrottledError,
}


def error_class_for(
    code: int | None, subcode: int | None, *, is_transient: bool, http_status: int | None
) -> type[GraphAPIError]:
    """The class of a Graph error answer: by subcode, then code, then ``is_transient`` and HTTP 5xx."""
    if code is not None:
        by_subcode = ERROR_CLASS_BY_SUBCODE.get((code, subcode)) if subcode is not None else None
        known = by_subcode or ERROR_CLASS_BY_CODE.get(code)
        if known is not None:
            return known
    if is_transient or (http_status is not None and http_status >= 500):
        return GraphTransientError
    return GraphPermanentError


#: What gets a number past each onboarding error Meta documents, by error code or subcode (the
#: 2388... numbers come as subcodes). Said in the error's text and its ``to_dict()``, so a report,
#: a task log or the requests table tells a person what to do next, not only what went wrong.
WAY_FORWARD: Mapping[int, str] = {
    133005: "the PIN is not the number's two-step PIN: register with the PIN set on the number "
    "(or reset it in WhatsApp Manager)",
    133006: "the number must be verified again: request a code, verify it, then register",
    133009: "the two-step PIN was tried too fast: wait a few minutes before registering again",
    133010: "the number is not registered: register it first",
    131031: "the business account is locked: it must be unlocked in Meta Business Manager; retrying does not help",
    136025: "the verification code failed: request a new code and verify that one",
    2388012: "the number already exists: adopt it (it is listed on its WABA) instead of creating it",
    2388091: "a code cannot be requested for this number outside a migration",
    2388093: "a code cannot be requested for this number outside a migration",
    2388103: "the number cannot be migrated: check its current WABA and that it may leave it",
    200000: "the number cannot be added to this WABA: check the WABA's limit of numbers and "
    "that the number is eligible",
}


def way_forward_for(code: int | None, subcode: int | None) -> str | None:
    """The way past an error with this code and subcode (the subcode's first), or ``None``."""
    return WAY_FORWARD.get(subcode or -1) or WAY_FORWARD.get(code or -1)


#: Graph's "invalid parameter": how it answers a create of a number already on the WABA, and a
#: wrong or expired verification code; with subcode :data:`.OBJECT_MISSING` the object is missing.
INVALID_PARAMETER = 100
#: The subcode of :data:`.INVALID_PARAMETER` for an object that is missing (or not the token's).
OBJECT_MISSING = 33

#: Graph's answer to a register of a number that must be verified again: request a code, verify it,
#: then register (the onboarding conversation does, once).
NEEDS_VERIFYING_AGAIN = 133006

#: Graph's code for the app-wide platform limit (``X-App-Usage``).
APP_THROTTLE_CODE = 4


def is_business_throttle(code: int | None) -> bool:
    """Whether a throttle code is about one business object (the WABA) rather than the whole app."""
    return code is not None and (80001 <= code <= 80014)


# --------------------------------------------------------------------------- recorded errors


def _subclasses(base: type[WhatsAppProviderError]) -> list[type[WhatsAppProviderError]]:
    found = [base]
    for subclass in base.__subclasses__():
        found.extend(_subclasses(subclass))
    return found


def recorded_error_class(record: Mapping[str, Any] | None) -> type[WhatsAppProviderError] | None:
    """
    The class of an error recorded as plain values (``GraphAPIError.to_dict()``, XCom, a table row).

    Found by its ``error_class`` name among this provider's error classes (subclasses defined
    elsewhere count once imported); ``None`` for no record or a name the provider does not know.
    """
    name = (record or {}).get("error_class")
    if not name:
        return None
    return next((cls for cls in _subclasses(WhatsAppProviderError) if cls.__name__ == name), None)


def recorded_as(record: Mapping[str, Any] | None, *classes: type[WhatsAppProviderError]) -> bool:
    """Whether a recorded error is of one of ``classes`` or a subclass of them (``issubclass``)."""
    cls = recorded_error_class(record)
    return cls is not None and issubclass(cls, classes)


def retry_may_cure(record: Mapping[str, Any] | None) -> bool:
    """Whether a later try may get past a recorded error: throttled, transient or no answer at all."""
    return recorded_as(record, GraphThrottledError, GraphTransientError, GraphConnectionError)
