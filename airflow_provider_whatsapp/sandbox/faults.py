"""Fault injection: make the next matching requests fail the ways Graph and the network fail.

Each kind of fault is one constructor of :class:`Fault` and one :class:`FaultBehaviour` that says
what it does before the request is applied and after: adding a kind touches only this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_whatsapp.sandbox.answers import HttpAnswer, SandboxErrorAnswer, trace_headers

# Waits for the given seconds, or less when the sandbox stops.
Wait = Callable[[float], object]

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body>"
    b"<h1>Bad Gateway</h1><p>The proxy server received an invalid response from an upstream server.</p>"
    b"</body></html>\n"
)
TRUNCATED_JSON = b'{"id": "12'


@dataclass(frozen=True)
class Fault:
    """A failure to answer with instead of (or after) serving a request. Build with the classmethods.

    :param kind: one of ``graph_error``, ``http``, ``html``, ``malformed_json``, ``delay``, ``drop``.
    :param status: HTTP status for the kinds that answer.
    :param code: Graph error code (``graph_error``).
    :param subcode: Graph error subcode (``graph_error``).
    :param message: Graph error message (``graph_error``).
    :param is_transient: ``is_transient`` of the Graph error.
    :param type: ``type`` of the Graph error.
    :param error_user_msg: ``error_user_msg`` of the Graph error.
    :param body: raw body (``http``).
    :param content_type: content type of the raw body (``http``).
    :param headers: extra response headers, as pairs.
    :param seconds: how long to wait (``delay``).
    :param after_apply: apply the request before delaying or dropping.
    :param reset: drop with a TCP RST instead of a FIN (``drop``).
    """

    kind: str
    status: int = 400
    code: int = 0
    subcode: int | None = None
    message: str = ""
    is_transient: bool = False
    type: str = "OAuthException"
    error_user_msg: str | None = None
    body: bytes = b""
    content_type: str = "text/plain"
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    seconds: float = 0.0
    after_apply: bool = True
    reset: bool = False

    @property
    def name(self) -> str:
        """The name recorded in the request log."""
        return self.kind

    def early_answer(self, wait: Wait) -> HttpAnswer | None:
        """What to send before the request is applied; with an answer it is never applied."""
        return FAULT_BEHAVIOURS[self.kind].early_answer(self, wait)

    def final_answer(self, answer: HttpAnswer, wait: Wait) -> HttpAnswer:
        """What to send instead of the applied request's ``answer``."""
        return FAULT_BEHAVIOURS[self.kind].final_answer(self, answer, wait)

    @classmethod
    def graph_error(
        cls,
        code: int,
        subcode: int | None = None,
        message: str = "An unexpected error has occurred. Please retry your request later.",
        http_status: int = 400,
        is_transient: bool = False,
        type: str = "OAuthException",  # noqa: A002 - mirrors the envelope's field name
        headers: dict[str, str] | None = None,
        error_user_msg: str | None = None,
    ) -> Fault:
        """Answer with a Graph error envelope without applying the request.

        :param code: Graph error code.
        :param subcode: Graph error subcode.
        :param message: error message.
        :param http_status: HTTP status.
        :param is_transient: ``is_transient`` flag.
        :param type: error type, e.g. ``OAuthException``.
        :param headers: extra response headers.
        :param error_user_msg: ``error_user_msg`` of the envelope.
        """
        return cls(
            kind="graph_error",
            status=http_status,
            code=code,
            subcode=subcode,
            message=message,
            is_transient=is_transient,
            type=type,
            headers=tuple((headers or {}).items()),
            error_user_msg=error_user_msg,
        )

    @classmethod
    def http(
        cls,
        status: int,
        body: bytes = b"",
        content_type: str = "text/plain",
        headers: dict[str, str] | None = None,
        retry_after: int | None = None,
    ) -> Fault:
        """Answer with a raw HTTP response, e.g. 500, or 429/503 with ``retry_after=3``.

        Graph's own throttle answers (codes 4, 80008) carry no ``Retry-After``: their wait is in
        the usage headers. ``Retry-After`` comes with HTTP 429 and 503 from Meta's edge.

        :param status: HTTP status.
        :param body: response body.
        :param content_type: its content type.
        :param headers: extra response headers.
        :param retry_after: whole seconds for a ``Retry-After`` header.
        """
        pairs = tuple((headers or {}).items())
        if retry_after is not None:
            if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
                raise ValueError("retry_after must be a whole number of seconds, at least 0")
            pairs += (("Retry-After", str(retry_after)),)
        return cls(kind="http", status=status, body=body, content_type=content_type, headers=pairs)

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        """Answer with an HTML proxy error page.

        :param status: HTTP status.
        """
        return cls(kind="html", status=status, body=HTML_ERROR_PAGE, content_type="text/html; charset=utf-8")

    @classmethod
    def malformed_json(cls, status: int = 200) -> Fault:
        """Answer with a truncated JSON body.

        With a 2xx status the request is applied and its real answer is cut in half (the client
        cannot tell whether it worked); with any other status it answers ``{"id": "12`` unapplied.

        :param status: HTTP status.
        """
        return cls(kind="malformed_json", status=status, body=TRUNCATED_JSON, content_type="application/json")

    @classmethod
    def delay(cls, seconds: float, after_apply: bool = True) -> Fault:
        """Apply the request, then wait before answering (a client read timeout after the write).

        :param seconds: how long to wait.
        :param after_apply: apply before waiting; with ``False`` the wait comes first.
        """
        return cls(kind="delay", seconds=seconds, after_apply=after_apply)

    @classmethod
    def drop(cls, after_apply: bool = True, reset: bool = False) -> Fault:
        """Read the request, optionally apply it, then close the connection without answering.

        :param after_apply: apply the request first.
        :param reset: close with a TCP RST (``SO_LINGER`` with a zero timeout).
        """
        return cls(kind="drop", after_apply=after_apply, reset=reset)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Fault:
        """Build from the JSON of ``POST /_sandbox/faults`` (``kind`` plus the constructor's kwargs)."""
        kwargs = {k: v for k, v in spec.items() if k not in ("kind", "count", "method", "path")}
        kind = spec.get("kind")
        if kind not in FAULT_BEHAVIOURS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if kind == "http" and isinstance(kwargs.get("body"), str):
            kwargs["body"] = kwargs["body"].encode()
        fault: Fault = getattr(cls, kind)(**kwargs)
        return fault


class FaultBehaviour:
    """What one kind of fault does around the request it hits; the base class does nothing."""

    def early_answer(self, fault: Fault, wait: Wait) -> HttpAnswer | None:
        """What to send before the request is applied (it then never is); ``None`` to go on."""
        return None

    def final_answer(self, fault: Fault, answer: HttpAnswer, wait: Wait) -> HttpAnswer:
        """What to send instead of the applied request's ``answer``."""
        return answer


class _GraphErrorAnswer(FaultBehaviour):
    def early_answer(self, fault: Fault, wait: Wait) -> HttpAnswer | None:
        error = SandboxErrorAnswer(
            fault.code,
            fault.message,
            status=fault.status,
            type=fault.type,
            subcode=fault.subcode,
            user_msg=fault.error_user_msg,
            details=fault.message if fault.code >= 130000 else None,
            is_transient=fault.is_transient,
        )
        return error.answer([*fault.headers, *trace_headers()])


class _RawAnswer(FaultBehaviour):
    def early_answer(self, fault: Fault, wait: Wait) -> HttpAnswer | None:
        return HttpAnswer(fault.status, fault.body, fault.content_type, list(fault.headers))


class _TruncatedAnswer(FaultBehaviour):
    # A cut 2xx body means the server did the work and the answer got lost on the way: the
    # request is applied first. With any other status nothing was done.
    def early_answer(self, fault: Fault, wait: Wait) -> HttpAnswer | None:
        if fault.status >= 300:
            return HttpAnswer(fault.status, fault.body, fault.content_type, list(fault.headers))
        return None

    def final_answer(self, fault: Fault, answer: HttpAnswer, wait: Wait) -> HttpAnswer:
        answer.body = answer.body[: max(1, len(answer.body) // 2)]
        answer.status = fault.status
        return answer


class _Delay(FaultBehaviour):
    def early_answer(self, fault: Fault, wait: Wait) -> HttpAnswer | None:
        if not fault.after_apply:
            wait(fault.seconds)
        return None

    def final_answer(self, fault: Fault, answer: HttpAnswer, wait: Wait) -> HttpAnswer:
        if fault.after_apply:
            wait(fault.seconds)
        return answer


class _Drop(FaultBehaviour):
    def early_answer(self, fault: Fault, wait: Wait) -> HttpAnswer | None:
        return None if fault.after_apply else HttpAnswer.dropped(fault.reset)

    def final_answer(self, fault: Fault, answer: HttpAnswer, wait: Wait) -> HttpAnswer:
        return HttpAnswer.dropped(fault.reset)


FAULT_BEHAVIOURS: dict[str, FaultBehaviour] = {
    "graph_error": _GraphErrorAnswer(),
    "http": _RawAnswer(),
    "html": _RawAnswer(),
    "malformed_json": _TruncatedAnswer(),
    "delay": _Delay(),
    "drop": _Drop(),
}
FAULT_KINDS = tuple(FAULT_BEHAVIOURS)


@dataclass
class InjectedFault:
    """A fault waiting for matching requests.

    :param fault: what to do.
    :param remaining: how many more requests it applies to.
    :param method: only requests with this method, if set.
    :param path: only paths (without version) matching this regex, if set.
    """

    fault: Fault
    remaining: int
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether a request is one this fault applies to."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


class FaultQueue:
    """The injected faults, first injected first matched. Not locked: the sandbox's lock covers it."""

    def __init__(self) -> None:
        self._faults: list[InjectedFault] = []

    def add(self, fault: Fault, count: int = 1, method: str | None = None, path: str | None = None) -> None:
        """Queue ``fault`` for the next ``count`` matching requests."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if path is not None:
            re.compile(path)
        self._faults.append(InjectedFault(fault, count, method, path))

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any, consuming one of its uses."""
        for injected in self._faults:
            if injected.matches(method, path):
                injected.remaining -= 1
                if injected.remaining <= 0:
                    self._faults.remove(injected)
                return injected.fault
        return None

    def clear(self) -> None:
        """Drop every pending fault."""
        self._faults.clear()

    def __len__(self) -> int:
        return len(self._faults)
