"""Command line: ``python -m airflow_provider_whatsapp.sandbox --port 8765``.

Serves until SIGINT or SIGTERM and prints the connection to export for Airflow.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from airflow_provider_whatsapp.sandbox.server import GraphSandbox
from airflow_provider_whatsapp.sandbox.state import DEFAULT_WABA_ID


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only loopback addresses (the sandbox accepts any token-looking call)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_whatsapp.sandbox",
        description="Serve a local Graph API sandbox for WhatsApp Business phone numbers.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    parser.add_argument("--token", default=None, help="the access token to accept (default: random)")
    parser.add_argument("--app-secret", default=None, help="require appsecret_proof signed with this secret")
    parser.add_argument("--waba-id", default=DEFAULT_WABA_ID, help="id of the WhatsApp Business Account")
    parser.add_argument("--rate-limit", type=int, default=None, help="calls per window per WABA (default: none)")
    parser.add_argument("--rate-window", type=float, default=3600.0, help="rate-limit window in seconds")
    parser.add_argument("--fixed-code", default=None, help="always send this 6-digit verification code")
    parser.add_argument("--name-review-delay", type=float, default=0.0, help="seconds until names are approved")
    parser.add_argument("--connect-delay", type=float, default=0.0, help="seconds from register to CONNECTED")
    parser.add_argument("--code-request-cooldown", type=float, default=60.0, help="seconds between code requests")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox until SIGINT/SIGTERM; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"refusing to bind {args.host!r}: the sandbox only serves on loopback")
    try:
        sandbox = GraphSandbox(
            host=args.host,
            port=args.port,
            token=args.token,
            app_secret=args.app_secret,
            waba_id=args.waba_id,
            rate_limit=args.rate_limit,
            rate_window=args.rate_window,
            fixed_code=args.fixed_code,
            name_review_delay=args.name_review_delay,
            connect_delay=args.connect_delay,
            code_request_cooldown=args.code_request_cooldown,
        )
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"Graph API sandbox serving on {sandbox.url}")
    print(f"WABA id: {sandbox.default_waba_id}")
    print(f"export AIRFLOW_CONN_WHATSAPP_DEFAULT='{sandbox.airflow_conn_json()}'", flush=True)
    try:
        # A timeout keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    print("Graph API sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
