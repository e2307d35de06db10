"""Sandbox: fault injection."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from typing import Any

import pytest
import requests

from airflow_provider_whatsapp.sandbox import DEFAULT_WABA_ID, Fault

PLUGIN = "airflow_provider_whatsapp.sandbox.pytest_plugin"
if not any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]

CREATE = f"{DEFAULT_WABA_ID}/phone_numbers"
BODY = {"cc": "1", "phone_number": "5550100001", "verified_name": "Acme"}


def test_graph_error_fault(graph: Any, whatsapp_sandbox: Any) -> None:
    whatsapp_sandbox.inject(
        Fault.graph_error(131000, message="Something went wrong", is_transient=True, error_user_msg="Try later"),
        count=2,
        method="POST",
        path=r"/phone_numbers$",
    )
    assert graph.get(DEFAULT_WABA_ID).status_code == 200
    for _ in range(2):
        response = graph.post(CREATE, BODY)
        err = graph.error(response)
        assert (response.status_code, err["code"], err["is_transient"]) == (400, 131000, True)
        assert err["error_user_msg"] == "Try later"
    assert whatsapp_sandbox.numbers() == []
    assert graph.post(CREATE, BODY).status_code == 200
    assert [r.fault for r in whatsapp_sandbox.requests] == [None, "graph_error", "graph_error", None]


def test_graph_error_with_subcode_and_status(graph: Any, whatsapp_sandbox: Any) -> None:
    whatsapp_sandbox.inject(Fault.graph_error(190, 463, message="Session has expired", http_status=401))
    response = graph.get(DEFAULT_WABA_ID)
    assert response.status_code == 401
    assert (graph.error(response)["code"], graph.error(response)["error_subcode"]) == (190, 463)


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        (Fault.http(500, b"oops"), 500, "text/plain"),
        (Fault.html(502), 502, "text/html; charset=utf-8"),
    ],
)
def test_raw_faults(graph: Any, whatsapp_sandbox: Any, fault: Fault, status: int, content_type: str) -> None:
    whatsapp_sandbox.inject(fault, method="POST")
    response = graph.post(CREATE, BODY)
    assert response.status_code == status
    assert response.headers["Content-Type"] == content_type
    assert whatsapp_sandbox.numbers() == []
    assert whatsapp_sandbox.requests[-1].status == status


@pytest.mark.parametrize(("status", "applied"), [(200, True), (500, False)])
def test_malformed_json(graph: Any, whatsapp_sandbox: Any, status: int, applied: bool) -> None:
    whatsapp_sandbox.inject(Fault.malformed_json(status), method="POST")
    response = graph.post(CREATE, BODY)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    # A cut 2xx answer means the server did the work; the client cannot tell.
    assert len(whatsapp_sandbox.numbers()) == int(applied)
    assert whatsapp_sandbox.requests[-1].fault == "malformed_json"


def test_http_fault_headers(graph: Any, whatsapp_sandbox: Any) -> None:
    whatsapp_sandbox.inject(Fault.http(503, b"busy", headers={"Retry-After": "1"}))
    response = graph.get(DEFAULT_WABA_ID)
    assert (response.status_code, response.headers["Retry-After"], response.text) == (503, "1", "busy")


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_whole_seconds(graph: Any, whatsapp_sandbox: Any, status: int) -> None:
    whatsapp_sandbox.inject(Fault.http(status, b"slow down", retry_after=7))
    response = graph.get(DEFAULT_WABA_ID)
    assert (response.status_code, response.headers["Retry-After"]) == (status, "7")
    assert Fault.from_dict({"kind": "http", "status": status, "retry_after": 7}) == Fault.http(status, retry_after=7)
    for wrong in (-1, 1.5, True):
        with pytest.raises(ValueError, match="retry_after"):
            Fault.http(status, retry_after=wrong)  # type: ignore[arg-type]


@pytest.mark.parametrize("reset", [False, True])
def test_drop_after_apply(graph: Any, whatsapp_sandbox: Any, reset: bool) -> None:
    whatsapp_sandbox.inject(Fault.drop(after_apply=True, reset=reset), method="POST", path=r"/phone_numbers$")
    with pytest.raises(requests.ConnectionError):
        graph.post(CREATE, BODY)
    assert len(whatsapp_sandbox.numbers()) == 1
    [logged] = whatsapp_sandbox.requests
    assert (logged.fault, logged.status) == ("drop", None)
    # The session recovers on a new connection.
    assert graph.get(DEFAULT_WABA_ID).status_code == 200


def test_drop_before_apply(graph: Any, whatsapp_sandbox: Any) -> None:
    whatsapp_sandbox.inject(Fault.drop(after_apply=False), method="POST")
    with pytest.raises(requests.ConnectionError):
        graph.post(CREATE, BODY)
    assert whatsapp_sandbox.numbers() == []


def test_delay_after_apply_is_a_read_timeout(whatsapp_sandbox: Any) -> None:
    whatsapp_sandbox.inject(Fault.delay(2.0), method="POST")
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            f"{whatsapp_sandbox.url}/v26.0/{CREATE}",
            json=BODY,
            headers={"Authorization": f"Bearer {whatsapp_sandbox.token}"},
            timeout=0.3,
        )
    assert len(whatsapp_sandbox.numbers()) == 1
    assert whatsapp_sandbox.requests[0].fault == "delay"


def test_delay_answers_eventually(graph: Any, whatsapp_sandbox: Any) -> None:
    whatsapp_sandbox.inject(Fault.delay(0.05, after_apply=False))
    assert graph.get(DEFAULT_WABA_ID).status_code == 200


def test_method_and_path_filters_and_clear(graph: Any, whatsapp_sandbox: Any) -> None:
    whatsapp_sandbox.inject(Fault.http(500), count=5, method="GET", path="request_code")
    whatsapp_sandbox.inject(Fault.http(500), count=5, path=r"^/nothing$")
    number_id = graph.create()
    assert graph.post(f"{number_id}/request_code", {"code_method": "SMS", "language": "en_US"}).ok
    whatsapp_sandbox.inject(Fault.http(500), count=5, method="GET")
    whatsapp_sandbox.clear_faults()
    assert graph.get(number_id).ok
    assert all(r.fault is None for r in whatsapp_sandbox.requests)


def test_fault_from_dict() -> None:
    assert Fault.from_dict({"kind": "http", "status": 503, "body": "busy"}) == Fault.http(503, b"busy")
    assert Fault.from_dict({"kind": "drop", "reset": True}) == Fault.drop(reset=True)
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "explode"})
