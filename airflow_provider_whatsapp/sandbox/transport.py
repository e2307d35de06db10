"""The HTTP transport: a threading HTTP/1.1 server that hands each request to the sandbox and writes
its answer, plus the parsing of query strings and bodies into Graph parameters."""

from __future__ import annotations

import contextlib
import http
import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from airflow_provider_whatsapp.sandbox.answers import HttpAnswer


@dataclass(frozen=True)
class IncomingRequest:
    """One HTTP request as read from the socket.

    :param method: HTTP method.
    :param target: the request target: path and query string.
    :param headers: request headers as received.
    :param body: the raw body.
    :param host: the ``Host`` header, if any.
    """

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    host: str | None


RequestServer = Callable[[IncomingRequest], HttpAnswer]


def last_values(pairs: dict[str, list[str]]) -> dict[str, str]:
    """One value per parameter, the last one winning, as Graph reads repeated parameters."""
    return {key: values[-1] for key, values in pairs.items()}


def header_value(headers: dict[str, str], name: str) -> str | None:
    """The value of header ``name``, whatever its case."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def body_parameters(headers: dict[str, str], raw: bytes) -> tuple[dict[str, Any], str | None]:
    """The parameters of a JSON or form body, and the Graph error message if the body is unusable."""
    if not raw:
        return {}, None
    content_type = (header_value(headers, "Content-Type") or "").lower()
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or (not content_type and text.lstrip().startswith("{")):
        try:
            parsed = json.loads(text)
        except ValueError:
            return {}, "(#100) The request body is not valid JSON"
        if not isinstance(parsed, dict):
            return {}, "(#100) The JSON request body must be an object"
        return parsed, None
    return last_values(parse_qs(text, keep_blank_values=True)), None


class SandboxHTTPServer(ThreadingHTTPServer):
    """Serves every request through ``serve``, one thread per connection.

    :param address: ``(host, port)`` to bind.
    :param serve: answers one request.
    """

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs when hundreds of clients connect at once
    # (a triggerer full of sensors): each drop costs the client a retransmit timeout of seconds.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], serve: RequestServer) -> None:
        self.serve = serve
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def close_connections(self) -> None:
        """Shut down every keep-alive connection so their handler threads finish at once."""
        with self.connections_lock:
            sockets = list(self.connections)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in one write and Nagle is off: no delayed-ACK stall on loopback.
    disable_nagle_algorithm = True
    server: SandboxHTTPServer

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
        request = IncomingRequest(self.command, self.path, dict(self.headers.items()), raw, self.headers.get("Host"))
        answer = self.server.serve(request)
        if answer.drop:
            self._drop(answer.reset)
            return
        self._write(answer)

    def _write(self, answer: HttpAnswer) -> None:
        try:
            phrase = http.HTTPStatus(answer.status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [
            f"HTTP/1.1 {answer.status} {phrase}",
            f"Content-Type: {answer.content_type}",
            f"Content-Length: {len(answer.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in answer.headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + answer.body)
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
