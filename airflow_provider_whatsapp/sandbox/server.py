"""The HTTP server that plays Graph API for the WhatsApp Business phone-number endpoints."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import http
import json
import math
import re
import secrets
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from airflow_provider_whatsapp.sandbox import schema
from airflow_provider_whatsapp.sandbox.faults import Fault, FaultQueue
from airflow_provider_whatsapp.sandbox.state import (
    CODE_LIFETIME,
    DEFAULT_SCOPES,
    DEFAULT_WABA_ID,
    MANAGEMENT_SCOPE,
    MAX_WRONG_CODES,
    MESSAGING_SCOPE,
    PHONE_NUMBER_FIELDS,
    REGISTER_LIMIT,
    REGISTER_WINDOW,
    WABA_FIELDS,
    PendingCode,
    PhoneNumber,
    RateWindow,
    ReceivedRequest,
    SandboxClock,
    SandboxState,
    SchemaViolation,
    TokenInfo,
    Waba,
    graph_time,
    iso_utc,
)

VERSION_RE = re.compile(r"^/(v\d+\.\d+)(/.*)?$")
DEFAULT_NUMBER_FIELDS = ("id", "display_phone_number", "verified_name", "quality_rating", "code_verification_status")
DEFAULT_LIST_FIELDS = (*DEFAULT_NUMBER_FIELDS, "status")
DEFAULT_WABA_FIELDS = ("id", "name")
# The Business Management API's default quota; used for the usage headers when no limit is set.
NOMINAL_LIMIT = 200
UNLIMITED_USAGE_CAP = 50
SANDBOX_APP_ID = "1000000000000001"
JSON_TYPE = "application/json; charset=UTF-8"
AUTH_PARAMS = frozenset({"access_token", "appsecret_proof"})


class GraphError(Exception):
    """A Graph error to answer with.

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
        """The ``{"error": {...}}`` body."""
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


def _param_error(message: str) -> GraphError:
    return GraphError(100, message, type="GraphMethodException")


@dataclass
class _Response:
    """What the handler writes (or, for a drop, does not write)."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False
    reset: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> _Response:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, JSON_TYPE, list(headers))


@dataclass
class _Call:
    """One Graph call being dispatched."""

    method: str
    version: str | None
    path: str
    query: dict[str, str]
    params: dict[str, Any]
    headers: dict[str, str]
    host: str
    waba_id: str | None = None


def _last_values(pairs: dict[str, list[str]]) -> dict[str, str]:
    return {key: values[-1] for key, values in pairs.items()}


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _display_number(cc: str, number: str) -> str:
    """``+1 555-010-0001``: readable, and its digits are exactly cc + number."""
    if len(number) < 7:
        return f"+{cc} {number}"
    groups = [number[:-7], number[-7:-4], number[-4:]]
    return f"+{cc} " + "-".join(group for group in groups if group)


def _encode_cursor(number_id: str) -> str:
    return base64.urlsafe_b64encode(f"cursor:{number_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _param_error("(#100) Invalid cursor") from None
    if not raw.startswith("cursor:"):
        raise _param_error("(#100) Invalid cursor")
    return raw[len("cursor:") :]


def _parse_fields(value: Any, default: Iterable[str]) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return list(default)
    names: list[str] = []
    # Nested selections like ``throughput{level}`` select the whole field here.
    for part in re.sub(r"\{[^}]*\}", "", value).split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return names


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs when hundreds of clients connect at once
    # (a triggerer full of sensors): each drop costs the client a 1-7 s retransmit.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], sandbox: GraphSandbox) -> None:
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_connections(self) -> None:
        """Shut down every keep-alive connection so their handler threads finish at once."""
        with self.connections_lock:
            sockets = list(self.connections)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in one write and Nagle is off: no delayed-ACK stall on loopback.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Silence the per-request stderr lines."""

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        raw = self.rfile.read(length) if length > 0 else b""
        response = self.server.sandbox._handle(
            self.command, self.path, dict(self.headers.items()), raw, self.headers.get("Host")
        )
        if response.drop:
            self._drop(response.reset)
            return
        self._write(response)

    def _write(self, response: _Response) -> None:
        try:
            phrase = http.HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [
            f"HTTP/1.1 {response.status} {phrase}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + response.body)
        except OSError:
            self.close_connection = True

    def _drop(self, reset: bool) -> None:
        self.close_connection = True
        try:
            if reset:
                # Linger on with a zero timeout: close() sends RST instead of FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()
        except OSError:
            pass

    do_GET = _serve
    do_POST = _serve
    do_DELETE = _serve
    do_PUT = _serve
    do_PATCH = _serve


class GraphSandbox:
    """A local HTTP server that behaves like Graph API for WhatsApp Business phone numbers.

    It serves ``/{version}/...`` like ``https://graph.facebook.com`` (create, read, list numbers,
    request/verify code, register, deregister, set PIN, ``debug_token``), with Graph's errors,
    usage headers and rate limit, plus ``/_sandbox/...`` control endpoints and fault injection.
    All delays run on :attr:`clock`, which tests advance instead of sleeping.

    :param host: interface to bind; loopback only is intended.
    :param port: port to bind; 0 picks a free one.
    :param token: the main access token, reaching every WABA (default: random ``EAAsandbox...``).
    :param app_secret: if set, every call must carry a matching ``appsecret_proof``.
    :param waba_id: id of the WABA the sandbox starts with.
    :param rate_limit: calls per window per WABA; ``None`` for no limit.
    :param rate_window: the fixed window's length, in sandbox-clock seconds.
    :param fixed_code: the verification code to "send" every time; random when ``None``.
    :param name_review_delay: seconds from create until a pending display name is approved.
    :param connect_delay: seconds from register until the number is ``CONNECTED``.
    :param code_request_cooldown: minimum seconds between two ``request_code`` calls of a number.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        app_secret: str | None = None,
        waba_id: str = DEFAULT_WABA_ID,
        rate_limit: int | None = None,
        rate_window: float = 3600.0,
        fixed_code: str | None = None,
        name_review_delay: float = 0.0,
        connect_delay: float = 0.0,
        code_request_cooldown: float = 60.0,
    ) -> None:
        if rate_limit is not None and rate_limit < 1:
            raise ValueError("rate_limit must be at least 1 (or None)")
        if rate_window <= 0:
            raise ValueError("rate_window must be positive")
        if fixed_code is not None and not re.fullmatch(r"[0-9]{6}", fixed_code):
            raise ValueError("fixed_code must be 6 digits")
        self.host = host
        self._port = port
        self.token = token or "EAAsandbox" + secrets.token_hex(12)
        self.app_secret = app_secret
        self.default_waba_id = waba_id
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.fixed_code = fixed_code
        self.name_review_delay = name_review_delay
        self.connect_delay = connect_delay
        self.code_request_cooldown = code_request_cooldown
        self.clock = SandboxClock()
        self._window_origin = self.clock.now()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._faults = FaultQueue()
        self._state = self._fresh_state()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- lifecycle

    def _fresh_state(self) -> SandboxState:
        state = SandboxState()
        state.wabas[self.default_waba_id] = Waba(self.default_waba_id, "Sandbox WhatsApp Business Account")
        state.tokens[self.token] = TokenInfo(self.token, None, DEFAULT_SCOPES)
        return state

    def start(self) -> GraphSandbox:
        """Bind and serve in a daemon thread. Does nothing if already started."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = _Server((self.host, self._port), self)
            self._server = server
            self._port = server.server_address[1]
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="graph-sandbox", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close keep-alive connections and join the thread (bounded). Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)

    def __enter__(self) -> GraphSandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the configured one before :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765`` (no version, no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    def airflow_conn_json(self, conn_id_extra: dict[str, Any] | None = None) -> str:
        """The JSON an ``AIRFLOW_CONN_...`` environment variable takes to reach this sandbox.

        :param conn_id_extra: entries to add to (or override in) the connection's ``extra``.
        """
        extra: dict[str, Any] = {"api_version": "v26.0", "waba_id": self.default_waba_id}
        if self.app_secret is not None:
            extra["app_secret"] = self.app_secret
        extra.update(conn_id_extra or {})
        return json.dumps({"conn_type": "whatsapp_business", "host": self.url, "password": self.token, "extra": extra})

    # ---------------------------------------------------------------------- state and control

    def reset(self) -> None:
        """Back to the constructor's state: one WABA, the main token, no numbers, logs or faults."""
        with self._lock:
            self._state = self._fresh_state()
            self._faults.clear()

    def add_waba(self, waba_id: str | None = None, name: str = "Sandbox WhatsApp Business Account") -> str:
        """Add a WABA and return its id.

        :param waba_id: its id; a fresh numeric one when ``None``.
        :param name: its name.
        """
        with self._lock:
            if waba_id is None:
                candidate = int(self.default_waba_id) + len(self._state.wabas)
                while str(candidate) in self._state.wabas:
                    candidate += 1
                waba_id = str(candidate)
            self._state.wabas[waba_id] = Waba(waba_id, name)
            return waba_id

    def add_token(
        self, token: str, waba_ids: Iterable[str] | None = None, scopes: Iterable[str] = DEFAULT_SCOPES
    ) -> str:
        """Add an access token and return it.

        :param token: the token string.
        :param waba_ids: the WABAs it reaches; ``None`` for all.
        :param scopes: its permissions.
        """
        with self._lock:
            reach = None if waba_ids is None else frozenset(waba_ids)
            self._state.tokens[token] = TokenInfo(token, reach, tuple(scopes))
            return token

    def expire_token(self, token: str) -> None:
        """Make ``token`` answer 190/463 "Session has expired" from now on."""
        with self._lock:
            info = self._state.tokens.get(token)
            if info is None:
                info = self._state.tokens[token] = TokenInfo(token, None)
            info.expired = True

    def inject(self, fault: Fault, *, count: int = 1, method: str | None = None, path: str | None = None) -> None:
        """Apply ``fault`` to the next ``count`` matching Graph requests.

        :param fault: what to do, see :class:`Fault`.
        :param count: how many requests.
        :param method: only requests with this HTTP method.
        :param path: only requests whose path without ``/vNN.N`` matches this regex (``re.search``).
        """
        with self._lock:
            self._faults.add(fault, count, method, path)

    def clear_faults(self) -> None:
        """Drop all pending faults."""
        with self._lock:
            self._faults.clear()

    def _number(self, number_id: str) -> PhoneNumber:
        number = self._state.numbers.get(number_id)
        if number is None:
            raise KeyError(f"no phone number {number_id!r} in the sandbox")
        number.refresh(self.clock.now())
        return number

    def numbers(self, waba_id: str | None = None) -> list[dict[str, Any]]:
        """Copies of the numbers (Graph fields plus ``waba_id``, ``cc``, ``phone_number``, ``migrate``).

        :param waba_id: only this WABA's; all WABAs when ``None``.
        """
        with self._lock:
            now = self.clock.now()
            result = []
            for number in self._state.numbers.values():
                if waba_id is None or number.waba_id == waba_id:
                    number.refresh(now)
                    result.append(json.loads(json.dumps(number.node)))
            return result

    def number(self, number_id: str) -> dict[str, Any]:
        """A copy of one number; ``KeyError`` if unknown."""
        with self._lock:
            node: dict[str, Any] = json.loads(json.dumps(self._number(number_id).node))
            return node

    def register_calls(self, number_id: str) -> int:
        """How many register/deregister calls the number has spent (10 per 72 h are allowed)."""
        with self._lock:
            return len(self._number(number_id).register_calls)

    def last_code(self, number_id: str) -> str | None:
        """The last verification code "sent" to a number, or ``None``."""
        with self._lock:
            return self._number(number_id).last_code

    def approve_name(self, number_id: str) -> None:
        """Approve the display name now."""
        self.set_fields(number_id, name_status="APPROVED")

    def decline_name(self, number_id: str) -> None:
        """Decline the display name."""
        self.set_fields(number_id, name_status="DECLINED")

    def set_fields(self, number_id: str, **fields: Any) -> None:
        """Override node fields, e.g. ``status="BANNED"``; cancels pending automatic transitions of them."""
        with self._lock:
            number = self._number(number_id)
            number.node.update(fields)
            if "status" in fields:
                number.connect_at = None
            if "name_status" in fields:
                number.name_approve_at = None

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The Graph requests received so far (control endpoints excluded), oldest first."""
        with self._lock:
            return list(self._state.requests)

    def requests_to(self, method: str | None = None, path: str | None = None) -> list[ReceivedRequest]:
        """Received requests with this method and whose path matches the regex ``path`` (``re.search``)."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or re.search(path, r.path))
        ]

    def reset_requests(self) -> None:
        """Forget the received requests."""
        with self._lock:
            self._state.requests.clear()

    @property
    def schema_violations(self) -> list[SchemaViolation]:
        """Every schema violation received, in order."""
        with self._lock:
            return list(self._state.violations)

    @property
    def rejected_calls(self) -> int:
        """Calls rejected with 80007."""
        with self._lock:
            return len(self._state.rejected_call_times)

    @property
    def rejected_call_times(self) -> list[float]:
        """Sandbox-clock times of the calls rejected with 80007."""
        with self._lock:
            return list(self._state.rejected_call_times)

    @property
    def calls_per_window(self) -> dict[tuple[str, int], int]:
        """Calls served per ``(waba_id, window index)``; none ever exceeds ``rate_limit``."""
        with self._lock:
            return dict(self._state.calls_per_window)

    def state_snapshot(self) -> dict[str, Any]:
        """What ``GET /_sandbox/state`` answers."""
        with self._lock:
            return {
                "url": self.url,
                "default_waba_id": self.default_waba_id,
                "clock_offset": self.clock.offset,
                "wabas": [waba.node() for waba in self._state.wabas.values()],
                "numbers": self.numbers(),
                "counts": {
                    "wabas": len(self._state.wabas),
                    "numbers": len(self._state.numbers),
                    "requests": len(self._state.requests),
                    "schema_violations": len(self._state.violations),
                    "faults_pending": len(self._faults),
                },
                "rejected_calls": len(self._state.rejected_call_times),
                "schema_violations": [vars(v) for v in self._state.violations],
            }

    # ------------------------------------------------------------------------------- serving

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes, host: str | None) -> _Response:
        """Serve one request: control endpoint, fault, or Graph call. Runs in a handler thread."""
        parts = urlsplit(target)
        path = parts.path or "/"
        query = _last_values(parse_qs(parts.query, keep_blank_values=True))
        body, body_error = self._parse_body(headers, raw)
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            try:
                return self._control(method, path[len("/_sandbox") :].strip("/"), body)
            except (KeyError, ValueError, TypeError) as exc:
                return _Response.json(400, {"error": {"message": str(exc), "type": "SandboxControlError"}})
        match = VERSION_RE.match(path)
        version, sub_path = (match.group(1), match.group(2) or "/") if match else (None, path)
        record = ReceivedRequest(method, sub_path, query, body, headers, time=self.clock.now(), version=version)
        with self._lock:
            self._state.requests.append(record)
            fault = self._faults.take(method, sub_path)
        if fault is not None:
            record.fault = fault.name
            if fault.answers_without_applying:
                response = self._fault_response(fault)
                record.status = response.status
                return response
            if not fault.after_apply:
                if fault.kind == "drop":
                    return _Response(0, drop=True, reset=fault.reset)
                self._stopping.wait(fault.seconds)
        call = _Call(
            method=method,
            version=version,
            path=sub_path,
            query=query,
            params={**query, **body},
            headers=headers,
            host=host or f"{self.host}:{self._port}",
        )
        with self._lock:
            response = self._graph(call, body_error)
        record.status = response.status
        if fault is not None and fault.kind == "drop":
            record.status = None
            return _Response(0, drop=True, reset=fault.reset)
        if fault is not None and fault.kind == "malformed_json":
            response.body = response.body[: max(1, len(response.body) // 2)]
            response.status = record.status = fault.status
        if fault is not None and fault.kind == "delay" and fault.after_apply:
            self._stopping.wait(fault.seconds)
        return response

    @staticmethod
    def _parse_body(headers: dict[str, str], raw: bytes) -> tuple[dict[str, Any], str | None]:
        if not raw:
            return {}, None
        content_type = (_header(headers, "Content-Type") or "").lower()
        text = raw.decode("utf-8", errors="replace")
        if "json" in content_type or (not content_type and text.lstrip().startswith("{")):
            try:
                parsed = json.loads(text)
            except ValueError:
                return {}, "(#100) The request body is not valid JSON"
            if not isinstance(parsed, dict):
                return {}, "(#100) The JSON request body must be an object"
            return parsed, None
        return _last_values(parse_qs(text, keep_blank_values=True)), None

    @staticmethod
    def _fault_response(fault: Fault) -> _Response:
        headers = list(fault.headers)
        if fault.kind == "graph_error":
            error = GraphError(
                fault.code,
                fault.message,
                status=fault.status,
                type=fault.type,
                subcode=fault.subcode,
                user_msg=fault.error_user_msg,
                details=fault.message if fault.code >= 130000 else None,
                is_transient=fault.is_transient,
            )
            return _Response.json(fault.status, error.envelope(), headers + _trace_headers())
        return _Response(fault.status, fault.body, fault.content_type, headers)

    def _graph(self, call: _Call, body_error: str | None) -> _Response:
        """Dispatch a Graph call under the lock; every answer gets trace (and usage) headers."""
        try:
            payload = self._dispatch(call, body_error)
            status, body = 200, payload
        except GraphError as error:
            status, body = error.status, error.envelope()
            extra = error.headers
        else:
            extra = []
        headers = _trace_headers() + extra
        if call.waba_id is not None:
            headers += self._usage_headers(call.waba_id)
        return _Response.json(status, body, headers)

    # ------------------------------------------------------------------ auth, routing, limits

    def _authenticate(self, call: _Call) -> TokenInfo:
        authorization = _header(call.headers, "Authorization")
        token: Any = None
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        elif authorization and authorization.lower().startswith("oauth "):
            token = authorization[6:].strip()
        if not token:
            token = call.params.get("access_token")
        if not token:
            raise GraphError(190, "An access token is required to request this resource.", status=401)
        info = self._state.tokens.get(str(token))
        if info is None:
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token", status=401)
        if info.expired:
            raise GraphError(
                190,
                "Error validating access token: Session has expired. The current time is later than the expiry time.",
                status=401,
                subcode=463,
            )
        if self.app_secret is not None:
            proof = call.params.get("appsecret_proof")
            if not proof:
                raise _param_error("API calls from the server require an appsecret_proof argument")
            expected = hmac.new(self.app_secret.encode(), info.token.encode(), hashlib.sha256).hexdigest()
            if not isinstance(proof, str) or not hmac.compare_digest(proof.lower(), expected):
                raise _param_error("Invalid appsecret_proof provided in the API argument")
        return info

    def _dispatch(self, call: _Call, body_error: str | None) -> dict[str, Any]:
        if call.version is None:
            raise GraphError(2500, f"Unknown path components: {call.path}")
        segments = [segment for segment in call.path.split("/") if segment]
        token = self._authenticate(call)
        if body_error is not None:
            raise _param_error(body_error)
        if segments == ["debug_token"] and call.method == "GET":
            return self._debug_token(call)
        if not segments or len(segments) > 2:
            raise GraphError(2500, f"Unknown path components: {call.path}")
        object_id = segments[0]
        edge = segments[1] if len(segments) == 2 else None
        verb = call.method.lower()
        number = self._state.numbers.get(object_id)
        waba = self._state.wabas.get(object_id)
        if number is None and waba is None:
            raise GraphError(
                100,
                f"Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
                "missing permissions, or does not support this operation. Please read the Graph API documentation "
                "at https://developers.facebook.com/docs/graph-api",
                subcode=33,
                type="GraphMethodException",
            )
        target: Waba | PhoneNumber = waba if waba is not None else number  # type: ignore[assignment]
        call.waba_id = target.id if isinstance(target, Waba) else target.waba_id
        route = (call.method, "waba" if waba is not None else "number", edge)
        handlers = {
            ("POST", "waba", "phone_numbers"): self._create,
            ("GET", "waba", "phone_numbers"): self._list,
            ("GET", "waba", None): self._get_waba,
            ("GET", "number", None): self._get_number,
            ("POST", "number", None): self._update,
            ("POST", "number", "request_code"): self._request_code,
            ("POST", "number", "verify_code"): self._verify_code,
            ("POST", "number", "register"): self._register,
            ("POST", "number", "deregister"): self._deregister,
        }
        handler = handlers.get(route)
        if handler is None:
            if edge is not None:
                raise GraphError(2500, f"Unknown path components: /{edge}")
            raise GraphError(
                100,
                f"Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
                "missing permissions, or does not support this operation.",
                subcode=33,
                type="GraphMethodException",
            )
        needs_messaging = edge in ("register", "deregister") or (
            edge is None and call.method == "POST" and "pin" in call.params
        )
        if (
            not token.reaches(call.waba_id)
            or MANAGEMENT_SCOPE not in token.scopes
            or (needs_messaging and MESSAGING_SCOPE not in token.scopes)
        ):
            raise GraphError(200, "(#200) Permissions error", status=403)
        self._consume_rate(call.waba_id)
        return handler(call, target)

    def _window(self, waba_id: str) -> RateWindow:
        index = int((self.clock.now() - self._window_origin) // self.rate_window)
        window = self._state.windows.get(waba_id)
        if window is None or window.index != index:
            window = self._state.windows[waba_id] = RateWindow(index)
        return window

    def _consume_rate(self, waba_id: str) -> None:
        window = self._window(waba_id)
        if self.rate_limit is not None and window.count >= self.rate_limit:
            self._state.rejected_call_times.append(self.clock.now())
            raise GraphError(
                80007,
                "(#80007) Rate limit hit for WhatsApp Business Account",
                details=("Rate limit hit for WhatsApp Business Account " + waba_id),
            )
        window.count += 1
        self._state.calls_per_window[(waba_id, window.index)] = window.count

    def _usage_headers(self, waba_id: str) -> list[tuple[str, str]]:
        window = self._window(waba_id)
        limit = self.rate_limit if self.rate_limit is not None else NOMINAL_LIMIT
        percent = math.ceil(100 * window.count / limit)
        regain: float = 0
        if self.rate_limit is None:
            # Unlimited: never tell a well-behaved client to back off, nor to slow down (clients
            # commonly start pacing at 75-90 %).
            percent = min(percent, UNLIMITED_USAGE_CAP)
        elif window.count >= self.rate_limit:
            reset_at = self._window_origin + (window.index + 1) * self.rate_window
            # Real Graph sends whole minutes; scaled-down sandbox windows need the fraction. Rounded
            # up, so a client that waits exactly this long never lands just before the reset.
            regain = math.ceil(max(0.0, reset_at - self.clock.now()) / 60.0 * 10_000) / 10_000
        cputime, total_time = math.ceil(percent / 20), math.ceil(percent / 10)
        business = {
            waba_id: [
                {
                    "type": "whatsapp_business_management",
                    "call_count": percent,
                    "total_cputime": cputime,
                    "total_time": total_time,
                    "estimated_time_to_regain_access": regain,
                }
            ]
        }
        app = {"call_count": percent, "total_cputime": cputime, "total_time": total_time}
        return [
            ("X-Business-Use-Case-Usage", json.dumps(business, separators=(",", ":"))),
            ("X-App-Usage", json.dumps(app, separators=(",", ":"))),
        ]

    def _validate(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        coerced = schema.coerce(operation, params)
        violations = schema.validate(operation, coerced)
        if violations:
            self._state.violations.extend(violations)
            raise _param_error(violations[0].message)
        return coerced

    # ----------------------------------------------------------------------------- endpoints

    def _debug_token(self, call: _Call) -> dict[str, Any]:
        input_token = call.params.get("input_token")
        if not input_token:
            raise _param_error("(#100) The parameter input_token is required")
        info = self._state.tokens.get(str(input_token))
        scopes = list(info.scopes) if info is not None else []
        targets = sorted(self._state.wabas) if info is None or info.waba_ids is None else sorted(info.waba_ids)
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

    def _select(
        self, node: dict[str, Any], names: list[str], allowed: frozenset[str], node_type: str
    ) -> dict[str, Any]:
        for name in names:
            if name not in allowed:
                raise _param_error(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})")
        result = {name: node.get(name) for name in names}
        result["id"] = node["id"]
        return {"id": node["id"], **{k: v for k, v in result.items() if k != "id"}}

    def _number_view(self, number: PhoneNumber, names: list[str]) -> dict[str, Any]:
        number.refresh(self.clock.now())
        view = self._select(number.node, names, PHONE_NUMBER_FIELDS, "WhatsAppBusinessPhoneNumber")
        return json.loads(json.dumps(view))  # type: ignore[no-any-return]

    def _create(self, call: _Call, target: Waba | PhoneNumber) -> dict[str, Any]:
        params = self._validate(schema.CREATE, call.params)
        names = _parse_fields(params.get("fields"), ())
        self._select({"id": ""}, names, PHONE_NUMBER_FIELDS, "WhatsAppBusinessPhoneNumber")
        cc, national = str(params["cc"]), str(params["phone_number"])
        for existing in self._state.numbers.values():
            if (
                existing.waba_id == target.id
                and existing.node["cc"] == cc
                and existing.node["phone_number"] == national
            ):
                raise _param_error(
                    f"(#100) The phone number +{cc} {national} is already registered on this WhatsApp Business Account"
                )
        now = self.clock.now()
        number_id = str(self._state.next_number_id)
        self._state.next_number_id += 1
        verified_name = params.get("verified_name") or None
        preverified = bool(params.get("preverified_id"))
        node: dict[str, Any] = {
            "id": number_id,
            "display_phone_number": _display_number(cc, national),
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
            "waba_id": target.id,
            "cc": cc,
            "phone_number": national,
            "migrate": params.get("migrate_phone_number") is True,
        }
        number = PhoneNumber(node, created_at=now, preverified=preverified)
        if verified_name:
            number.name_approve_at = now + self.name_review_delay
        self._state.numbers[number_id] = number
        return self._number_view(number, names) if names else {"id": number_id}

    def _list(self, call: _Call, target: Waba | PhoneNumber) -> dict[str, Any]:
        params = self._validate(schema.LIST, call.params)
        names = _parse_fields(params.get("fields"), DEFAULT_LIST_FIELDS)
        self._select({"id": ""}, names, PHONE_NUMBER_FIELDS, "WhatsAppBusinessPhoneNumber")
        limit = int(params.get("limit", 25))
        numbers = [n for n in self._state.numbers.values() if n.waba_id == target.id]
        ids = [n.id for n in numbers]

        def position(cursor: Any) -> int:
            number_id = _decode_cursor(str(cursor))
            if number_id not in ids:
                raise _param_error("(#100) Invalid cursor")
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
        result: dict[str, Any] = {"data": [self._number_view(n, names) for n in page]}
        if not page:
            return result
        paging: dict[str, Any] = {
            "cursors": {"before": _encode_cursor(page[0].id), "after": _encode_cursor(page[-1].id)}
        }
        # Paging links leave out the token and the proof: the client sends its own credentials.
        base_query = {k: v for k, v in call.query.items() if k not in AUTH_PARAMS | {"after", "before"}}
        base_url = f"http://{call.host}/{call.version}/{target.id}/phone_numbers?"
        if end < len(numbers):
            paging["next"] = base_url + urlencode({**base_query, "after": paging["cursors"]["after"]})
        if start > 0:
            paging["previous"] = base_url + urlencode({**base_query, "before": paging["cursors"]["before"]})
        result["paging"] = paging
        return result

    def _get_waba(self, call: _Call, target: Waba | PhoneNumber) -> dict[str, Any]:
        assert isinstance(target, Waba)
        names = _parse_fields(call.params.get("fields"), DEFAULT_WABA_FIELDS)
        return self._select(target.node(), names, WABA_FIELDS, "WhatsAppBusinessAccount")

    def _get_number(self, call: _Call, target: Waba | PhoneNumber) -> dict[str, Any]:
        assert isinstance(target, PhoneNumber)
        self._validate(schema.GET, call.params)
        return self._number_view(target, _parse_fields(call.params.get("fields"), DEFAULT_NUMBER_FIELDS))

    def _update(self, call: _Call, target: Waba | PhoneNumber) -> dict[str, Any]:
        assert isinstance(target, PhoneNumber)
        params = self._validate(schema.UPDATE, call.params)
        if params.get("pin"):
            target.pin = str(params["pin"])
            target.node["is_pin_enabled"] = True
        return {"success": True}

    def _request_code(self, call: _Call, target: Waba | PhoneNumber) -> dict[str, Any]:
        assert isinstance(target, PhoneNumber)
        self._validate(schema.REQUEST_CODE, call.params)
        now = self.clock.now()
        if target.last_code_request is not None and now - target.last_code_request < self.code_request_cooldown:
            raise GraphError(
                136024,
                "Request code error: you have requested a code too many times. Wait before requesting a new one.",
                details="Too many code requests for this phone number; wait before requesting another code.",
            )
        code = self.fixed_code or f"{secrets.randbelow(10**6):06d}"
        target.pending_code = PendingCode(code, now)
        target.last_code = code
        target.last_code_request = now
        return {"success": True}

    def _verify_code(self, call: _Call, target: Waba | PhoneNumber) -> dict[str, Any]:
        assert isinstance(target, PhoneNumber)
        params = self._validate(schema.VERIFY_CODE, call.params)
        pending = target.pending_code
        if pending is None:
            raise _param_error("(#100) No verification code has been requested")
        if self.clock.now() - pending.issued_at > CODE_LIFETIME:
            target.pending_code = None
            target.node["code_verification_status"] = "EXPIRED"
            raise _param_error("(#100) The verification code has expired")
        if pending.wrong_attempts >= MAX_WRONG_CODES:
            target.pending_code = None
            raise GraphError(4, "(#4) Too many attempts, please request a new code")
        if not hmac.compare_digest(str(params["code"]), pending.code):
            pending.wrong_attempts += 1
            raise _param_error("(#100) The verification code you entered is incorrect")
        target.pending_code = None
        target.node["code_verification_status"] = "VERIFIED"
        return {"success": True}

    def _register_guard(self, number: PhoneNumber) -> None:
        """The 10-calls-per-72-h rule: raise 133016 while blocked, else record this call."""
        now = self.clock.now()
        if number.blocked_until is None or now >= number.blocked_until:
            number.blocked_until = None
            recent = [t for t in number.register_calls if now - t < REGISTER_WINDOW]
            if len(recent) >= REGISTER_LIMIT:
                number.blocked_until = recent[REGISTER_LIMIT - 1] + REGISTER_WINDOW
        if number.blocked_until is not None:
            until = iso_utc(self.clock.wall(number.blocked_until))
            raise GraphError(
                133016,
                "Account register deregister rate limit exceeded",
                user_title="Too many register/deregister calls",
                user_msg=f"This phone number made too many register and deregister calls. Try again after {until}.",
                details=f"Registration and deregistration of this phone number are blocked until {until}.",
            )
        number.register_calls.append(now)

    def _register(self, call: _Call, target: Waba | PhoneNumber) -> dict[str, Any]:
        assert isinstance(target, PhoneNumber)
        params = self._validate(schema.REGISTER, call.params)
        self._register_guard(target)
        verified = target.node["code_verification_status"] == "VERIFIED" or target.preverified or target.node["migrate"]
        if not verified:
            raise GraphError(
                133010,
                "Phone number not verified",
                details="Verify the phone number with request_code and verify_code before registering it.",
            )
        pin = str(params["pin"])
        if target.node["is_pin_enabled"] and target.pin is not None and pin != target.pin:
            raise GraphError(
                133005,
                "Two step verification PIN Mismatch",
                details="The PIN does not match the phone number's two-step verification PIN.",
            )
        now = self.clock.now()
        target.pin = pin
        target.node["is_pin_enabled"] = True
        target.node["platform_type"] = "CLOUD_API"
        target.node["last_onboarded_time"] = graph_time(self.clock.wall(now))
        target.connect_at = now + self.connect_delay
        target.refresh(now)
        return {"success": True}

    def _deregister(self, call: _Call, target: Waba | PhoneNumber) -> dict[str, Any]:
        assert isinstance(target, PhoneNumber)
        self._validate(schema.DEREGISTER, call.params)
        self._register_guard(target)
        target.connect_at = None
        target.node["status"] = "DISCONNECTED"
        target.node["platform_type"] = "NOT_APPLICABLE"
        return {"success": True}

    # ----------------------------------------------------------------------------- control

    def _control(self, method: str, path: str, body: dict[str, Any]) -> _Response:
        parts = path.split("/") if path else []
        if method == "GET" and parts == ["state"]:
            return _Response.json(200, self.state_snapshot())
        if method == "GET" and parts == ["requests"]:
            return _Response.json(200, {"requests": [r.as_dict() for r in self.requests]})
        if method == "GET" and len(parts) == 2 and parts[0] == "codes":
            with self._lock:
                number = self._state.numbers.get(parts[1])
                code = number.last_code if number is not None else None
            if code is None:
                return _Response.json(404, {"error": {"message": f"no verification code for {parts[1]}"}})
            return _Response.json(200, {"code": code})
        if method == "POST" and parts == ["faults"]:
            self.inject(
                Fault.from_dict(body), count=int(body.get("count", 1)), method=body.get("method"), path=body.get("path")
            )
            return _Response.json(200, {"success": True})
        if method in ("POST", "DELETE") and parts in (["faults", "clear"], ["faults"]):
            self.clear_faults()
            return _Response.json(200, {"success": True})
        if method == "POST" and parts == ["clock", "advance"]:
            self.clock.advance(float(body["seconds"]))
            return _Response.json(200, {"success": True, "offset": self.clock.offset})
        if method == "POST" and parts == ["reset"]:
            self.reset()
            return _Response.json(200, {"success": True})
        if method == "POST" and parts == ["requests", "reset"]:
            self.reset_requests()
            return _Response.json(200, {"success": True})
        if method == "POST" and len(parts) == 3 and parts[0] == "numbers":
            actions = {
                "approve_name": lambda: self.approve_name(parts[1]),
                "decline_name": lambda: self.decline_name(parts[1]),
                "fields": lambda: self.set_fields(parts[1], **body),
            }
            action = actions.get(parts[2])
            if action is not None:
                try:
                    action()
                except KeyError as exc:
                    return _Response.json(404, {"error": {"message": str(exc)}})
                return _Response.json(200, {"success": True})
        message = f"unknown sandbox control endpoint {method} /_sandbox/{path}"
        return _Response.json(404, {"error": {"message": message}})


def _trace_headers() -> list[tuple[str, str]]:
    return [("x-fb-trace-id", secrets.token_urlsafe(8)), ("x-fb-request-id", secrets.token_urlsafe(16))]


__all__ = ["GraphError", "GraphSandbox"]
