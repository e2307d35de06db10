"""Sandbox: Graph unreachable for a while (``refuse_connections``), then back on the same port."""

from __future__ import annotations

import socket
from importlib.metadata import entry_points
from typing import Any

import pytest
import requests

from devtools.airflow_deployment import wait_until

PLUGIN = "airflow_provider_whatsapp.sandbox.pytest_plugin"
if not any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]

# Longer than any test here waits: the outage is still under way when each check runs.
LONG = 600.0


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    except ConnectionRefusedError:
        return True
    return False


def test_refuses_connections_and_applies_nothing(graph: Any, whatsapp_sandbox: Any) -> None:
    port = whatsapp_sandbox.port
    # This opens a keep-alive connection, which stays open when the outage begins.
    assert graph.get(f"{whatsapp_sandbox.default_waba_id}/phone_numbers").ok
    whatsapp_sandbox.refuse_connections(LONG)
    assert whatsapp_sandbox.unreachable
    assert refused(port)
    # The request on the open connection is reset unapplied, and recorded; the next one, on a new
    # connection, is refused before it is sent (nothing to record).
    with pytest.raises(requests.ConnectionError):
        graph.create()
    with pytest.raises(requests.ConnectionError, match="Connection refused"):
        graph.create()
    assert [(r.method, r.fault, r.status) for r in whatsapp_sandbox.requests] == [
        ("GET", None, 200),
        ("POST", "unreachable", None),
    ]
    assert whatsapp_sandbox.numbers() == [], "a request during the outage is never applied"
    with pytest.raises(RuntimeError):
        whatsapp_sandbox.refuse_connections(LONG)
    whatsapp_sandbox.stop()  # ends the outage for good: nothing serves again
    assert not whatsapp_sandbox.unreachable
    assert refused(port)


def test_serves_again_on_the_same_port_with_the_same_state(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    url = whatsapp_sandbox.url
    whatsapp_sandbox.refuse_connections(0.2)
    wait_until(lambda: not whatsapp_sandbox.unreachable, 60, "the outage to end", interval=0.1)
    assert whatsapp_sandbox.url == url
    assert graph.get(number_id).json()["id"] == number_id


def test_over_the_control_plane(whatsapp_sandbox: Any) -> None:
    answer = requests.post(f"{whatsapp_sandbox.url}/_sandbox/unreachable", json={"seconds": LONG}, timeout=10)
    assert answer.json() == {"success": True}
    assert whatsapp_sandbox.unreachable and refused(whatsapp_sandbox.port)


def test_needs_a_positive_time(whatsapp_sandbox: Any) -> None:
    with pytest.raises(ValueError, match="seconds"):
        whatsapp_sandbox.refuse_connections(0)
