"""What the sandbox answers: an HTTP answer, and the Graph error answer with Graph's envelope."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json; charset=UTF-8"


@dataclass
class HttpAnswer:
    """What the transport writes for one request (or, for a dropped connection, does not write).

    :param status: HTTP status.
    :param body: the body bytes.
    :param content_type: the ``Content-Type`` header.
    :param headers: further response headers, as pairs.
    :param drop: close the connection without answering.
    :param reset: when dropping, close with a TCP RST instead of a FIN.
    """

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False
    reset: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> HttpAnswer:
        """An answer whose body is ``payload`` as compact JSON."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, JSON_TYPE, list(headers))

    @classmethod
    def dropped(cls, reset: bool = False) -> HttpAnswer:
        """No answer at all: the connection is closed (with a RST when ``reset``)."""
        return cls(0, drop=True, reset=reset)


class SandboxErrorAnswer(Exception):
    """A Graph error the sandbox answers with, in Graph's ``{"error": {...}}`` envelope.

    Raised anywhere while a Graph call is served; the server turns it into the answer.

    :param code: Graph error code.
    :param message: error message.
    :param status: HTTP status.
    :param type: error type.
    :param subcode: error subcode.
    :param user_title: ``error_user_title``.
    :param user_msg: ``error_user_msg``.
    :param details: ``error_data.details`` (WhatsApp errors).
    :param is_transient: ``is_transient``.
    :param headers: extra response headers.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: int = 400,
        type: str = "OAuthException",  # noqa: A002 - the envelope's field name
        subcode: int | None = None,
        user_title: str | None = None,
        user_msg: str | None = None,
        details: str | None = None,
        is_transient: bool = False,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.type = type
        self.subcode = subcode
        self.user_title = user_title
        self.user_msg = user_msg
        self.details = details
        self.is_transient = is_transient
        self.headers = list(headers)

    def envelope(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` body, with a fresh ``fbtrace_id``."""
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.user_title is not None:
            error["error_user_title"] = self.user_title
        if self.user_msg is not None:
            error["error_user_msg"] = self.user_msg
        if self.details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        error["is_transient"] = self.is_transient
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)[:21]
        return {"error": error}

    def answer(self, headers: Iterable[tuple[str, str]] = ()) -> HttpAnswer:
        """The HTTP answer: the envelope, ``headers`` and this error's own headers."""
        return HttpAnswer.json(self.status, self.envelope(), [*headers, *self.headers])


def invalid_parameter(message: str) -> SandboxErrorAnswer:
    """Graph's code 100 answer for a parameter it refuses."""
    return SandboxErrorAnswer(100, message, type="GraphMethodException")


def unknown_path(path: str) -> SandboxErrorAnswer:
    """Graph's code 2500 answer for a path it does not serve."""
    return SandboxErrorAnswer(2500, f"Unknown path components: {path}")


def trace_headers() -> list[tuple[str, str]]:
    """The trace and request IDs Graph puts on every answer."""
    return [("x-fb-trace-id", secrets.token_urlsafe(8)), ("x-fb-request-id", secrets.token_urlsafe(16))]
