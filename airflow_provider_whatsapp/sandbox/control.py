"""The control plane: ``/_sandbox/...``, the sandbox's own endpoints for other processes.

They read and steer the sandbox as :class:`~airflow_provider_whatsapp.sandbox.server.GraphSandbox`'s
methods do; they are neither logged nor counted against any rate limit. What they need of the
sandbox is :class:`ControlledSandbox`, so this module does not import the server that imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from airflow_provider_whatsapp.sandbox.answers import HttpAnswer
from airflow_provider_whatsapp.sandbox.clock import SandboxClock
from airflow_provider_whatsapp.sandbox.faults import Fault
from airflow_provider_whatsapp.sandbox.state import ReceivedRequest


class ControlledSandbox(Protocol):
    """What the control plane reads and steers: the methods of the same names of
    :class:`~airflow_provider_whatsapp.sandbox.server.GraphSandbox`."""

    clock: SandboxClock

    @property
    def requests(self) -> Sequence[ReceivedRequest]: ...

    def last_code(self, number_id: str) -> str | None: ...

    def inject(self, fault: Fault, *, count: int = 1, method: str | None = None, path: str | None = None) -> None: ...

    def clear_faults(self) -> None: ...

    def refuse_connections(self, seconds: float) -> None: ...

    def reset(self) -> None: ...

    def reset_requests(self) -> None: ...

    def state_snapshot(self) -> dict[str, Any]: ...

    def rate_limit_snapshot(self) -> dict[str, Any]: ...

    def approve_name(self, number_id: str) -> None: ...

    def decline_name(self, number_id: str) -> None: ...

    def set_fields(self, number_id: str, **fields: Any) -> None: ...


PREFIX = "/_sandbox"
SUCCESS = {"success": True}


def is_control_path(path: str) -> bool:
    """Whether ``path`` is one of the control plane's."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def _not_found_answer(message: str) -> HttpAnswer:
    return HttpAnswer.json(404, {"error": {"message": message}})


def _verification_code_answer(sandbox: ControlledSandbox, number_id: str) -> HttpAnswer:
    try:
        code = sandbox.last_code(number_id)
    except KeyError:
        code = None
    if code is None:
        return _not_found_answer(f"no verification code for {number_id}")
    return HttpAnswer.json(200, {"code": code})


def _answer_after_injecting(sandbox: ControlledSandbox, body: dict[str, Any]) -> HttpAnswer:
    fault = Fault.from_dict(body)
    sandbox.inject(fault, count=int(body.get("count", 1)), method=body.get("method"), path=body.get("path"))
    return HttpAnswer.json(200, SUCCESS)


def _answer_after_advancing(sandbox: ControlledSandbox, body: dict[str, Any]) -> HttpAnswer:
    sandbox.clock.advance(float(body["seconds"]))
    return HttpAnswer.json(200, {"success": True, "offset": sandbox.clock.offset})


def _answer_after_number_action(
    sandbox: ControlledSandbox, number_id: str, action: str, body: dict[str, Any]
) -> HttpAnswer | None:
    actions: dict[str, Callable[[], None]] = {
        "approve_name": lambda: sandbox.approve_name(number_id),
        "decline_name": lambda: sandbox.decline_name(number_id),
        "fields": lambda: sandbox.set_fields(number_id, **body),
    }
    chosen = actions.get(action)
    if chosen is None:
        return None
    try:
        chosen()
    except KeyError as exc:
        return _not_found_answer(str(exc))
    return HttpAnswer.json(200, SUCCESS)


def _answer_after(action: Callable[[], None]) -> HttpAnswer:
    action()
    return HttpAnswer.json(200, SUCCESS)


def _answer_or_none(
    sandbox: ControlledSandbox, method: str, parts: list[str], body: dict[str, Any]
) -> HttpAnswer | None:
    if method == "GET" and parts == ["state"]:
        return HttpAnswer.json(200, sandbox.state_snapshot())
    if method == "GET" and parts == ["requests"]:
        return HttpAnswer.json(200, {"requests": [r.as_dict() for r in sandbox.requests]})
    if method == "GET" and parts == ["rate_limits"]:
        return HttpAnswer.json(200, sandbox.rate_limit_snapshot())
    if method == "GET" and len(parts) == 2 and parts[0] == "codes":
        return _verification_code_answer(sandbox, parts[1])
    if method == "POST" and parts == ["faults"]:
        return _answer_after_injecting(sandbox, body)
    if method in ("POST", "DELETE") and parts in (["faults", "clear"], ["faults"]):
        return _answer_after(sandbox.clear_faults)
    if method == "POST" and parts == ["unreachable"]:
        return _answer_after(lambda: sandbox.refuse_connections(float(body["seconds"])))
    if method == "POST" and parts == ["clock", "advance"]:
        return _answer_after_advancing(sandbox, body)
    if method == "POST" and parts == ["reset"]:
        return _answer_after(sandbox.reset)
    if method == "POST" and parts == ["requests", "reset"]:
        return _answer_after(sandbox.reset_requests)
    if method == "POST" and len(parts) == 3 and parts[0] == "numbers":
        return _answer_after_number_action(sandbox, parts[1], parts[2], body)
    return None


def control_answer(sandbox: ControlledSandbox, method: str, path: str, body: dict[str, Any]) -> HttpAnswer:
    """Serve one control request.

    :param sandbox: the sandbox to read or steer.
    :param method: HTTP method.
    :param path: the path, ``/_sandbox/`` included.
    :param body: the parsed body.
    """
    relative = path[len(PREFIX) :].strip("/")
    try:
        answer = _answer_or_none(sandbox, method, relative.split("/") if relative else [], body)
    except (KeyError, ValueError, TypeError) as exc:
        return HttpAnswer.json(400, {"error": {"message": str(exc), "type": "SandboxControlError"}})
    if answer is None:
        return _not_found_answer(f"unknown sandbox control endpoint {method} {PREFIX}/{relative}")
    return answer
