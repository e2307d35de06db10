"""Sandbox: create, read and list phone numbers; paging; duplicates; schema validation."""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from airflow_provider_whatsapp.sandbox import DEFAULT_WABA_ID

PLUGIN = "airflow_provider_whatsapp.sandbox.pytest_plugin"
if not any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]

CREATE = f"{DEFAULT_WABA_ID}/phone_numbers"


def test_create_returns_id_and_node_defaults(graph: Any, whatsapp_sandbox: Any) -> None:
    response = graph.post(CREATE, {"cc": "1", "phone_number": "5550100001", "verified_name": "Acme Support"})
    assert response.status_code == 200
    assert list(response.json()) == ["id"]
    number_id = response.json()["id"]
    assert number_id == "106540352242922"
    node = whatsapp_sandbox.number(number_id)
    assert re.sub(r"\D", "", node["display_phone_number"]) == "15550100001"
    assert node["display_phone_number"].startswith("+1 ")
    assert node | {"display_phone_number": None, "name_status": None} == {
        "id": number_id,
        "display_phone_number": None,
        "verified_name": "Acme Support",
        "code_verification_status": "NOT_VERIFIED",
        "name_status": None,
        "status": "PENDING",
        "quality_rating": "NA",
        "platform_type": "NOT_APPLICABLE",
        "throughput": {"level": "NOT_APPLICABLE"},
        "account_mode": "LIVE",
        "is_pin_enabled": False,
        "is_official_business_account": False,
        "last_onboarded_time": None,
        "messaging_limit_tier": "TIER_250",
        "waba_id": DEFAULT_WABA_ID,
        "cc": "1",
        "phone_number": "5550100001",
        "migrate": False,
    }
    # name_review_delay defaults to 0: approved on first read.
    assert node["name_status"] == "APPROVED"
    assert graph.create("5550100002") == "106540352242923"


def test_create_read_after_write(graph: Any) -> None:
    response = graph.post(
        CREATE,
        {"cc": "1", "phone_number": "5550100001", "verified_name": "Acme"},
        params={"fields": "status,verified_name"},
    )
    assert response.json() == {"id": response.json()["id"], "status": "PENDING", "verified_name": "Acme"}


def test_create_preverified_and_migrate(graph: Any, whatsapp_sandbox: Any) -> None:
    pre = graph.create("5550100001", name="", preverified_id="987654")
    node = whatsapp_sandbox.number(pre)
    assert node["code_verification_status"] == "VERIFIED"
    assert node["name_status"] == "AVAILABLE_WITHOUT_REVIEW"
    migrated = graph.create("5550100002", name="", migrate_phone_number=True)
    assert whatsapp_sandbox.number(migrated)["migrate"] is True
    assert whatsapp_sandbox.schema_violations == []


def test_duplicate_number_is_100(graph: Any, whatsapp_sandbox: Any) -> None:
    graph.create("5550100001")
    response = graph.post(CREATE, {"cc": "1", "phone_number": "5550100001", "verified_name": "Acme"})
    err = graph.error(response)
    assert response.status_code == 400
    assert err["code"] == 100
    assert "error_subcode" not in err
    assert (
        err["message"]
        == "(#100) The phone number +1 5550100001 is already registered on this WhatsApp Business Account"
    )
    assert len(whatsapp_sandbox.numbers()) == 1
    # The same number on another WABA is a different node.
    other = whatsapp_sandbox.add_waba()
    assert graph.post(f"{other}/phone_numbers", {"cc": "1", "phone_number": "5550100001", "verified_name": "Acme"}).ok
    assert len(whatsapp_sandbox.numbers()) == 2
    assert len(whatsapp_sandbox.numbers(other)) == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {"cc": "1", "phone_number": "+15550100001", "verified_name": "Acme"},
            "Param phone_number does not match pattern",
        ),
        ({"cc": "1", "phone_number": "555-0100", "verified_name": "Acme"}, "Param phone_number"),
        ({"cc": "1234", "phone_number": "5550100001", "verified_name": "Acme"}, "Param cc does not match pattern"),
        ({"cc": "01", "phone_number": "5550100001", "verified_name": "Acme"}, "Param cc must not start with 0"),
        ({"cc": "999", "phone_number": "1234567890123", "verified_name": "Acme"}, "at most 15 digits"),
        ({"cc": "1", "phone_number": "5550100001"}, "The parameter verified_name is required"),
        ({"cc": "1", "phone_number": "5550100001", "verified_name": "A"}, "at least 2 characters"),
        ({"cc": "1", "phone_number": "5550100001", "verified_name": "A" * 76}, "at most 75 characters"),
        ({"phone_number": "5550100001", "verified_name": "Acme"}, "The parameter cc is required"),
        ({"cc": 1, "phone_number": "5550100001", "verified_name": "Acme"}, "Param cc must be a string"),
        (
            {"cc": "1", "phone_number": "5550100001", "verified_name": "Acme", "migrate_phone_number": "yes"},
            "Param migrate_phone_number must be a boolean",
        ),
    ],
)
def test_create_schema_violations(graph: Any, whatsapp_sandbox: Any, body: dict[str, Any], needle: str) -> None:
    response = graph.post(CREATE, body)
    err = graph.error(response)
    assert response.status_code == 400
    assert err["code"] == 100
    assert err["type"] == "GraphMethodException"
    assert needle in err["message"]
    assert whatsapp_sandbox.schema_violations
    assert whatsapp_sandbox.numbers() == []


def test_form_values_are_coerced(whatsapp_sandbox: Any) -> None:
    response = requests.post(
        f"{whatsapp_sandbox.url}/v26.0/{CREATE}",
        params={"cc": "1", "phone_number": "5550100001", "migrate_phone_number": "true"},
        headers={"Authorization": f"Bearer {whatsapp_sandbox.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert whatsapp_sandbox.number(response.json()["id"])["migrate"] is True


def test_get_number_fields(graph: Any) -> None:
    number_id = graph.create()
    default = graph.get(number_id).json()
    assert set(default) == {"id", "display_phone_number", "verified_name", "quality_rating", "code_verification_status"}
    picked = graph.get(number_id, params={"fields": "status,name_status,throughput"}).json()
    assert picked == {
        "id": number_id,
        "status": "PENDING",
        "name_status": "APPROVED",
        "throughput": {"level": "NOT_APPLICABLE"},
    }
    bad = graph.get(number_id, params={"fields": "status,waba_id"})
    assert graph.error(bad)["message"] == (
        "(#100) Tried accessing nonexisting field (waba_id) on node type (WhatsAppBusinessPhoneNumber)"
    )


def test_list_pages_230_numbers(graph: Any, whatsapp_sandbox: Any) -> None:
    created = [graph.create(f"55501{i:05d}") for i in range(230)]
    pages: list[list[str]] = []
    response = graph.get(CREATE, params={"limit": 100, "fields": "id,status"})
    for _ in range(10):
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([n["id"] for n in body["data"]])
        assert all(set(n) == {"id", "status"} for n in body["data"])
        assert body["paging"]["cursors"]["before"] and body["paging"]["cursors"]["after"]
        next_url = body["paging"].get("next")
        if not next_url:
            break
        assert whatsapp_sandbox.token not in next_url
        assert "access_token" not in next_url
        assert urlsplit(next_url).netloc == urlsplit(whatsapp_sandbox.url).netloc
        assert parse_qs(urlsplit(next_url).query)["limit"] == ["100"]
        # The next link works as given, with the token in the header only.
        response = graph.session.get(
            next_url, headers={"Authorization": f"Bearer {whatsapp_sandbox.token}"}, timeout=10
        )
    assert [len(p) for p in pages] == [100, 100, 30]
    assert [i for p in pages for i in p] == created


def test_list_defaults_before_cursor_and_limit_range(graph: Any) -> None:
    ids = [graph.create(f"555010000{i}") for i in range(5)]
    first = graph.get(CREATE).json()
    assert [n["id"] for n in first["data"]] == ids
    assert set(first["data"][0]) == {
        "id",
        "display_phone_number",
        "verified_name",
        "quality_rating",
        "code_verification_status",
        "status",
    }
    assert "next" not in first["paging"]
    second = graph.get(
        CREATE,
        params={"limit": 2, "after": graph.get(CREATE, params={"limit": 2}).json()["paging"]["cursors"]["after"]},
    )
    assert [n["id"] for n in second.json()["data"]] == ids[2:4]
    back = graph.get(CREATE, params={"limit": 2, "before": second.json()["paging"]["cursors"]["before"]})
    assert [n["id"] for n in back.json()["data"]] == ids[:2]
    for limit in (0, 101, "x"):
        response = graph.get(CREATE, params={"limit": limit})
        assert response.status_code == 400
        assert graph.error(response)["code"] == 100
    assert graph.error(graph.get(CREATE, params={"after": "!!!"}))["message"] == "(#100) Invalid cursor"


def test_empty_list(graph: Any) -> None:
    assert graph.get(CREATE).json() == {"data": []}
