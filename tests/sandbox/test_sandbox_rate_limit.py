"""Sandbox: per-WABA fixed-window rate limit, usage headers and 80007."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from typing import Any

PLUGIN = "airflow_provider_whatsapp.sandbox.pytest_plugin"
if not any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]


def usage(response: Any, waba_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(response.headers["X-Business-Use-Case-Usage"])[waba_id][0]
    return entry


def test_limit_headers_80007_and_window_reset(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(rate_limit=4, rate_window=120.0)
    graph = graph_for(sandbox)
    waba = sandbox.default_waba_id
    number_id = graph.create()
    seen = []
    for _ in range(3):
        response = graph.get(number_id)
        assert response.status_code == 200
        seen.append(usage(response, waba))
    assert json.loads(response.headers["X-App-Usage"])["call_count"] == 100
    assert [u["call_count"] for u in seen] == [50, 75, 100]
    assert seen[0]["type"] == "whatsapp_business_management"
    assert seen[0]["estimated_time_to_regain_access"] == 0
    # The last allowed call already says how long until the window resets (fractional minutes).
    assert 0 < seen[-1]["estimated_time_to_regain_access"] <= 2.0

    rejected = graph.get(number_id)
    err = graph.error(rejected)
    assert rejected.status_code == 400
    assert err["code"] == 80007
    assert err["message"] == "(#80007) Rate limit hit for WhatsApp Business Account"
    assert err["type"] == "OAuthException"
    assert err["is_transient"] is False
    assert usage(rejected, waba)["call_count"] == 100
    assert usage(rejected, waba)["estimated_time_to_regain_access"] > 0
    # Calls on a number and on its WABA share the window; other WABAs have their own.
    assert graph.error(graph.get(f"{waba}/phone_numbers"))["code"] == 80007
    other = sandbox.add_waba()
    assert graph.get(other).status_code == 200
    assert sandbox.rejected_calls == 2
    assert len(sandbox.rejected_call_times) == 2

    sandbox.clock.advance(120)
    after = graph.get(number_id)
    assert after.status_code == 200
    assert usage(after, waba)["call_count"] == 25
    assert usage(after, waba)["estimated_time_to_regain_access"] == 0
    assert max(sandbox.calls_per_window.values()) <= 4
    assert sandbox.calls_per_window[(waba, 0)] == 4


def test_errors_on_waba_calls_carry_usage_headers(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    response = graph.post(f"{number_id}/verify_code", {"code": "000000"})
    assert response.status_code == 400
    assert usage(response, whatsapp_sandbox.default_waba_id)["call_count"] == 1
    # Without a limit, usage is reported against 200 calls per hour.
    assert "X-App-Usage" in response.headers


def test_unlimited_never_reports_full_usage(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(rate_window=3600.0)
    graph = graph_for(sandbox)
    number_id = graph.create()
    for _ in range(250):
        response = graph.get(number_id, params={"fields": "status"})
        assert response.status_code == 200
    assert usage(response, sandbox.default_waba_id)["call_count"] == 50
    assert usage(response, sandbox.default_waba_id)["estimated_time_to_regain_access"] == 0
    assert sandbox.rejected_calls == 0
