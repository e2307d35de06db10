"""Sandbox: versions, tokens, appsecret_proof, permissions, unknown objects, debug_token, envelope."""

from __future__ import annotations

import hashlib
import hmac
from importlib.metadata import entry_points
from typing import Any

import requests

from airflow_provider_whatsapp.sandbox import DEFAULT_WABA_ID

PLUGIN = "airflow_provider_whatsapp.sandbox.pytest_plugin"
if not any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]


def test_envelope_and_trace_headers(graph: Any) -> None:
    response = graph.get("999", token=None)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert response.headers["x-fb-trace-id"] and response.headers["x-fb-request-id"]
    err = graph.error(response)
    assert err["code"] == 190
    assert err["type"] == "OAuthException"
    assert err["message"] == "An access token is required to request this resource."
    assert "error_subcode" not in err
    assert err["is_transient"] is False
    assert len(err["fbtrace_id"]) >= 11


def test_missing_or_bad_version_is_2500(graph: Any, whatsapp_sandbox: Any) -> None:
    headers = {"Authorization": f"Bearer {whatsapp_sandbox.token}"}
    for path in ("/debug_token", f"/{DEFAULT_WABA_ID}", f"/26.0/{DEFAULT_WABA_ID}", f"/vX/{DEFAULT_WABA_ID}"):
        response = requests.get(whatsapp_sandbox.url + path, headers=headers, timeout=10)
        assert response.status_code == 400
        assert graph.error(response)["code"] == 2500
        assert "Unknown path components" in graph.error(response)["message"]


def test_any_version_is_accepted(whatsapp_sandbox: Any) -> None:
    headers = {"Authorization": f"Bearer {whatsapp_sandbox.token}"}
    for version in ("v19.0", "v26.0", "v30.1"):
        response = requests.get(f"{whatsapp_sandbox.url}/{version}/{DEFAULT_WABA_ID}", headers=headers, timeout=10)
        assert response.status_code == 200
        assert response.json() == {"id": DEFAULT_WABA_ID, "name": "Sandbox WhatsApp Business Account"}
    assert [r.version for r in whatsapp_sandbox.requests] == ["v19.0", "v26.0", "v30.1"]


def test_unknown_and_expired_tokens(graph: Any, whatsapp_sandbox: Any) -> None:
    response = graph.get(DEFAULT_WABA_ID, token="EAAnot-a-real-token")
    assert response.status_code == 401
    assert graph.error(response)["message"] == "Invalid OAuth access token - Cannot parse access token"

    whatsapp_sandbox.add_token("EAAshort-lived")
    assert graph.get(DEFAULT_WABA_ID, token="EAAshort-lived").status_code == 200
    whatsapp_sandbox.expire_token("EAAshort-lived")
    response = graph.get(DEFAULT_WABA_ID, token="EAAshort-lived")
    err = graph.error(response)
    assert response.status_code == 401
    assert (err["code"], err["error_subcode"]) == (190, 463)
    assert err["message"].startswith("Error validating access token: Session has expired")


def test_access_token_param_is_accepted(whatsapp_sandbox: Any) -> None:
    response = requests.get(
        f"{whatsapp_sandbox.url}/v26.0/{DEFAULT_WABA_ID}", params={"access_token": whatsapp_sandbox.token}, timeout=10
    )
    assert response.status_code == 200
    # The log keeps what was received, so a test can tell header from query-string tokens.
    assert whatsapp_sandbox.requests[0].query["access_token"] == whatsapp_sandbox.token


def test_appsecret_proof(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(app_secret="s3cret")
    graph = graph_for(sandbox)
    assert graph.get(DEFAULT_WABA_ID).status_code == 200
    proof = hmac.new(b"s3cret", sandbox.token.encode(), hashlib.sha256).hexdigest()
    assert sandbox.requests[0].query["appsecret_proof"] == proof

    headers = {"Authorization": f"Bearer {sandbox.token}"}
    missing = requests.get(f"{sandbox.url}/v26.0/{DEFAULT_WABA_ID}", headers=headers, timeout=10)
    assert missing.status_code == 400
    assert graph.error(missing)["code"] == 100
    assert graph.error(missing)["type"] == "GraphMethodException"
    assert graph.error(missing)["message"] == "API calls from the server require an appsecret_proof argument"

    wrong = graph.get(DEFAULT_WABA_ID, params={"appsecret_proof": "0" * 64})
    assert graph.error(wrong)["message"] == "Invalid appsecret_proof provided in the API argument"


def test_restricted_tokens_get_200(graph: Any, whatsapp_sandbox: Any) -> None:
    other_waba = whatsapp_sandbox.add_waba(name="Other")
    number_id = graph.verified()
    whatsapp_sandbox.add_token("EAAother", waba_ids=[other_waba])
    whatsapp_sandbox.add_token("EAAmanage-only", scopes=["whatsapp_business_management"])

    response = graph.get(number_id, token="EAAother")
    assert response.status_code == 403
    assert graph.error(response)["code"] == 200
    assert graph.error(response)["message"] == "(#200) Permissions error"
    assert graph.get(other_waba, token="EAAother").status_code == 200

    assert graph.get(number_id, token="EAAmanage-only").status_code == 200
    register = graph.post(
        f"{number_id}/register", {"messaging_product": "whatsapp", "pin": "123456"}, token="EAAmanage-only"
    )
    assert register.status_code == 403
    assert graph.error(register)["code"] == 200
    assert graph.post(number_id, {"pin": "123456"}, token="EAAmanage-only").status_code == 403
    assert graph.post(f"{number_id}/deregister", token="EAAmanage-only").status_code == 403


def test_unknown_object_is_100_33(graph: Any) -> None:
    response = graph.get("123456789")
    err = graph.error(response)
    assert response.status_code == 400
    assert (err["code"], err["error_subcode"]) == (100, 33)
    assert err["message"].startswith("Unsupported get request. Object with ID '123456789' does not exist")
    post = graph.post("123456789/phone_numbers", {"cc": "1", "phone_number": "5550100001", "verified_name": "Acme"})
    assert graph.error(post)["message"].startswith("Unsupported post request.")


def test_debug_token_never_echoes_the_token(graph: Any, whatsapp_sandbox: Any) -> None:
    response = graph.get("debug_token", params={"input_token": whatsapp_sandbox.token})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["is_valid"] is True
    assert data["type"] == "SYSTEM_USER"
    assert data["expires_at"] == 0
    assert "whatsapp_business_management" in data["scopes"]
    assert data["granular_scopes"][0]["target_ids"] == [DEFAULT_WABA_ID]
    assert whatsapp_sandbox.token not in response.text

    unknown = graph.get("debug_token", params={"input_token": "EAAnope"}).json()["data"]
    assert unknown["is_valid"] is False


def test_waba_node_fields(graph: Any) -> None:
    node = graph.get(DEFAULT_WABA_ID, params={"fields": "id,name,currency,timezone_id,message_template_namespace"})
    assert set(node.json()) == {"id", "name", "currency", "timezone_id", "message_template_namespace"}
    bad = graph.get(DEFAULT_WABA_ID, params={"fields": "id,bogus"})
    assert (
        graph.error(bad)["message"]
        == "(#100) Tried accessing nonexisting field (bogus) on node type (WhatsAppBusinessAccount)"
    )


def test_form_encoded_body_and_authorization_header_are_logged(whatsapp_sandbox: Any) -> None:
    response = requests.post(
        f"{whatsapp_sandbox.url}/v26.0/{DEFAULT_WABA_ID}/phone_numbers",
        data={"cc": "44", "phone_number": "7700900123", "verified_name": "Acme UK"},
        headers={"Authorization": f"Bearer {whatsapp_sandbox.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    [logged] = whatsapp_sandbox.requests
    assert logged.method == "POST"
    assert logged.path == f"/{DEFAULT_WABA_ID}/phone_numbers"
    assert logged.body["cc"] == "44"
    assert logged.headers["Authorization"] == f"Bearer {whatsapp_sandbox.token}"
    assert logged.status == 200
    assert logged.fault is None
