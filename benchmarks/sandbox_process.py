"""Runs a :class:`GraphSandbox` in its own process, so the sandbox's Python work never shares a GIL
with the client being measured; the parent asks for its counters over stdin/stdout.

Protocol: the child prints one JSON line ``{"url", "token", "conn"}`` once serving; then for each
command line read on stdin (``stats``, ``reset``, ``advance <seconds>``...) it prints one JSON
line; EOF or ``quit`` stops it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class _ConnectionCounter:
    """Counts the TCP connections the server accepts, and the most open at once."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.accepted = 0
        self.peak_open = 0
        self._accept = server.get_request
        server.get_request = self

    def __call__(self) -> Any:
        accepted = self._accept()
        self.accepted += 1
        with self.server.connections_lock:
            self.peak_open = max(self.peak_open, len(self.server.connections) + 1)
        return accepted


def _stats(sandbox: Any, counter: _ConnectionCounter) -> dict[str, Any]:
    requests = sandbox.requests
    return {
        "accepted_connections": counter.accepted,
        "peak_open_connections": counter.peak_open,
        "rejected_call_times": sandbox.rejected_call_times,
        "rejected_calls_by_waba": sandbox.rejected_calls_by_waba(),
        "calls_per_window": [[waba, index, count] for (waba, index), count in sandbox.calls_per_window.items()],
        "requests": len(requests),
        "statuses": [r.status for r in requests],
        "request_times": [r.time for r in requests],
        "numbers": [
            {
                "id": n["id"],
                "status": n["status"],
                "cc": n["cc"],
                "phone_number": n["phone_number"],
                "register_calls": sandbox.register_calls(n["id"]),
            }
            for n in sandbox.numbers()
        ],
        "rejected_calls": sandbox.rejected_calls,
        "clock_now": sandbox.clock.now(),
        "window_origin": sandbox.rate_window_origin,
        "window_start": sandbox.rate_window_start,
    }


def main() -> None:
    from airflow_provider_whatsapp.sandbox.server import GraphSandbox

    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    extra = options.pop("conn_extra", {})
    with GraphSandbox(**options) as sandbox:
        counter = _ConnectionCounter(sandbox._server)
        print(
            json.dumps(
                {
                    "url": sandbox.url,
                    "token": sandbox.token,
                    "conn": sandbox.airflow_conn_json(extra),
                    "waba_ids": list(getattr(sandbox, "waba_ids", [sandbox.default_waba_id])),
                }
            ),
            flush=True,
        )
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "quit":
                break
            answer: dict[str, Any] = {"success": True}
            if command == "stats":
                answer = _stats(sandbox, counter)
            elif command == "reset":
                # Keeps each measured batch from paying for the numbers of the batches before it.
                answer = {"numbers": len(sandbox.numbers()), "not_ok": sum(r.status != 200 for r in sandbox.requests)}
                sandbox.reset()
                sandbox.reset_requests()
            elif command == "reset_connections":
                counter.accepted = counter.peak_open = 0
            elif command == "advance":
                # Moves the sandbox clock: a benchmark's client "sleeps" by advancing it.
                sandbox.clock.advance(float(argument))
                answer = {"offset": sandbox.clock.offset}
            elif command == "clock":
                answer = {"now": sandbox.clock.now()}
            elif command == "connect":
                sandbox.set_fields(argument, status="CONNECTED")
            elif command == "connect_all":
                for number in sandbox.numbers():
                    sandbox.set_fields(number["id"], status="CONNECTED")
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
