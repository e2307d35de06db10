"""Command line: ``python -m airflow_provider_whatsapp.sandbox --port 8765``.

Serves until SIGINT or SIGTERM, and prints every ``export`` the example DAGs need to run against
it (the connection, and the two-step PIN as a Variable and as a connection) and the WABA IDs it
serves. Every other line it prints is a shell comment, so the whole output can be pasted. With
``--port``, ``--token`` and ``--two-step-pin`` given, the exports are the same on every start.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import secrets
import shlex
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


def waba_rate_limit(text: str) -> tuple[str, int]:
    """``WABA_ID=N`` as ``(waba_id, n)``, for ``--waba-rate-limit``."""
    match = re.fullmatch(r"\s*([0-9]+)\s*=\s*([0-9]+)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not WABA_ID=N (digits on both sides)")
    return match.group(1), int(match.group(2))


def two_step_pin(text: str) -> str:
    """A 6-digit PIN, for ``--two-step-pin``."""
    if not re.fullmatch(r"[0-9]{6}", text):
        raise argparse.ArgumentTypeError("the two-step PIN must be 6 digits")
    return text


def argument_parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_whatsapp.sandbox",
        description="Serve a local Graph API sandbox for WhatsApp Business phone numbers.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    parser.add_argument("--token", default=None, help="the access token to accept (default: random)")
    parser.add_argument("--app-secret", default=None, help="require appsecret_proof signed with this secret")
    parser.add_argument("--waba-id", default=DEFAULT_WABA_ID, help="ID of the (first) WhatsApp Business Account")
    parser.add_argument(
        "--wabas", type=int, default=1, help="how many WABAs to serve: --waba-id, then --waba-id + 1, ... (default 1)"
    )
    parser.add_argument("--rate-limit", type=int, default=None, help="calls per window per WABA (default: none)")
    parser.add_argument(
        "--waba-rate-limit",
        type=waba_rate_limit,
        action="append",
        default=[],
        metavar="WABA_ID=N",
        help="calls per window of one WABA instead of --rate-limit (repeatable)",
    )
    parser.add_argument("--app-rate-limit", type=int, default=None, help="calls per window for the app (default: none)")
    parser.add_argument("--rate-window", type=float, default=3600.0, help="rate-limit window in seconds")
    parser.add_argument(
        "--rate-window-from-first-call",
        action="store_true",
        help="each WABA's rate-limit windows start at its first call (default: at the sandbox's start)",
    )
    parser.add_argument("--fixed-code", default=None, help="always send this 6-digit verification code")
    parser.add_argument("--name-review-delay", type=float, default=0.0, help="seconds until names are approved")
    parser.add_argument("--connect-delay", type=float, default=0.0, help="seconds from register to CONNECTED")
    parser.add_argument("--code-request-cooldown", type=float, default=60.0, help="seconds between code requests")
    parser.add_argument(
        "--two-step-pin", type=two_step_pin, default=None, help="the PIN printed for the example DAGs (default: random)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox until SIGINT/SIGTERM; return the exit status."""
    parser = argument_parser()
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
            wabas=args.wabas,
            rate_limit=args.rate_limit,
            waba_rate_limits=dict(args.waba_rate_limit),
            app_rate_limit=args.app_rate_limit,
            rate_window=args.rate_window,
            rate_window_from_first_call=args.rate_window_from_first_call,
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
    pin = args.two_step_pin or f"{secrets.randbelow(10**6):06d}"
    others = [waba_id for waba_id in sandbox.waba_ids if waba_id != sandbox.default_waba_id]
    print(f"# Graph API sandbox serving on {sandbox.url}")
    print(f"# WABA IDs: {sandbox.default_waba_id} (the connection's waba_id){''.join(', ' + w for w in others)}")
    print("# Paste these into the shell that runs the example DAGs (airflow dags test <dag_id>):")
    for name, value in sandbox.example_dag_environment(pin).items():
        print(f"export {name}={shlex.quote(value)}")
    if args.port == 0 or args.token is None or args.two_step_pin is None:
        # A random port, token or PIN changes the exports on every start, and the pasted ones go stale.
        same = f"--port {sandbox.port} --token {shlex.quote(sandbox.token)} --two-step-pin {pin}"
        print(f"# The same exports after a restart: start it with {same}")
    # The last start-up line: a script reading the exports knows it has them all.
    print("# Serving until Ctrl-C")
    sys.stdout.flush()
    try:
        # A timeout keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    print("# Graph API sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
