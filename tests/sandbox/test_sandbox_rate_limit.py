"""Sandbox: a business-use-case budget per WABA (80008), the app's budget (code 4), usage headers
with whole-minute regain times, and the counters tests and benchmarks read."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from typing import Any

import pytest
import requests

from airflow_provider_whatsapp.sandbox import DEFAULT_WABA_ID, GraphSandbox

PLUGIN = "airflow_provider_whatsapp.sandbox.pytest_plugin"
if not any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]

SECOND_WABA_ID = str(int(DEFAULT_WABA_ID) + 1)
THIRD_WABA_ID = str(int(DEFAULT_WABA_ID) + 2)
HOUR = 3600.0


def business_usage(response: Any) -> dict[str, Any]:
    usage: dict[str, Any] = json.loads(response.headers["X-Business-Use-Case-Usage"])
    return usage


def usage(response: Any, waba_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = business_usage(response)[waba_id][0]
    return entry


def app_usage(response: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(response.headers["X-App-Usage"])
    return value


def test_waba_budget_80008_whole_minutes_and_window_reset(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(rate_limit=4, rate_window=HOUR)
    graph = graph_for(sandbox)
    waba = sandbox.default_waba_id
    number_id = graph.create()
    seen = [usage(graph.get(number_id), waba) for _ in range(3)]
    assert [u["call_count"] for u in seen] == [50, 75, 100]
    assert {u["type"] for u in seen} == {"whatsapp_business_management"}
    assert [u["estimated_time_to_regain_access"] for u in seen] == [0, 0, 60]

    # Half an hour and a bit later: 29.5 minutes remain, announced as 30 whole minutes.
    sandbox.clock.advance(30 * 60 + 30)
    rejected = graph.post(f"{waba}/phone_numbers", {"cc": "1", "phone_number": "5550100002", "verified_name": "Acme"})
    err = graph.error(rejected)
    assert rejected.status_code == 400
    assert (err["code"], err["type"], err["is_transient"]) == (80008, "OAuthException", False)
    assert err["message"] == (
        "(#80008) There have been too many calls to this WhatsApp Business account. Wait a bit and try again."
    )
    assert waba in err["error_data"]["details"]
    assert err["fbtrace_id"]
    assert usage(rejected, waba)["call_count"] == 100
    assert usage(rejected, waba)["estimated_time_to_regain_access"] == 30
    assert isinstance(usage(rejected, waba)["estimated_time_to_regain_access"], int)
    assert "Retry-After" not in rejected.headers
    # Refused: not applied, and nothing of the budget spent.
    assert len(sandbox.numbers()) == 1
    assert sandbox.calls_per_window == {(waba, 0): 4}
    assert sandbox.rejected_calls == 1
    assert sandbox.rejected_calls_by_waba() == {waba: 1}
    assert sandbox.rejected_calls_per_window == {(waba, 0): 1}
    assert sandbox.requests[-1].waba_id == waba

    assert sandbox.rate_window_start == sandbox.rate_window_origin
    sandbox.clock.advance(30 * 60)
    assert sandbox.rate_window_start == sandbox.rate_window_origin + HOUR
    after = graph.get(number_id)
    assert after.status_code == 200
    assert usage(after, waba)["call_count"] == 25
    assert usage(after, waba)["estimated_time_to_regain_access"] == 0
    assert sandbox.calls_per_window == {(waba, 0): 4, (waba, 1): 1}
    assert len(sandbox.rejected_call_times) == 1


@pytest.mark.parametrize(
    ("window", "advance", "minutes"),
    [(1.0, 0.0, 1), (90.0, 0.0, 2), (90.0, 45.0, 1), (HOUR, 30.0, 60), (HOUR, 90.0, 59)],
    ids=["tiny-window", "90-s-left", "45-s-left", "59.5-min-left", "58.5-min-left"],
)
def test_regain_time_is_whole_minutes_rounded_up(
    whatsapp_sandbox_factory: Any, graph_for: Any, window: float, advance: float, minutes: int
) -> None:
    sandbox = whatsapp_sandbox_factory(rate_limit=1, rate_window=window)
    graph = graph_for(sandbox)
    # Start at a window boundary, so the time left is what the case says (less the little the
    # call itself takes: every case keeps 30 s from a change of the answer).
    sandbox.clock.advance(sandbox.rate_window_start + window - sandbox.clock.now())
    sandbox.clock.advance(advance)
    answer = graph.get(sandbox.default_waba_id)
    assert answer.status_code == 200
    assert usage(answer, sandbox.default_waba_id)["estimated_time_to_regain_access"] == minutes


def test_budgets_are_per_waba(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(wabas=3, rate_limit=2, waba_rate_limits={THIRD_WABA_ID: 5})
    graph = graph_for(sandbox)
    assert sandbox.waba_ids == [DEFAULT_WABA_ID, SECOND_WABA_ID, THIRD_WABA_ID]
    assert [sandbox.rate_limit_for(w) for w in sandbox.waba_ids] == [2, 2, 5]
    number_id = graph.create()
    assert graph.get(number_id).status_code == 200
    assert graph.error(graph.get(DEFAULT_WABA_ID))["code"] == 80008
    assert graph.error(graph.get(number_id))["code"] == 80008

    # An exhausted WABA says nothing about the others: each answers with its own header only.
    second = graph.get(SECOND_WABA_ID)
    assert second.status_code == 200
    assert business_usage(second) == {
        SECOND_WABA_ID: [
            {
                "type": "whatsapp_business_management",
                "call_count": 50,
                "total_cputime": 3,
                "total_time": 5,
                "estimated_time_to_regain_access": 0,
            }
        ]
    }
    statuses = [graph.get(THIRD_WABA_ID).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [400]
    assert sandbox.calls_per_window == {(DEFAULT_WABA_ID, 0): 2, (SECOND_WABA_ID, 0): 1, (THIRD_WABA_ID, 0): 5}
    assert sandbox.rejected_calls_by_waba() == {DEFAULT_WABA_ID: 2, THIRD_WABA_ID: 1}
    assert sandbox.calls_by_waba() == {DEFAULT_WABA_ID: 2, SECOND_WABA_ID: 1, THIRD_WABA_ID: 5}


def test_number_calls_count_against_their_own_waba(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(wabas=2)
    graph = graph_for(sandbox)
    created = graph.post(
        f"{SECOND_WABA_ID}/phone_numbers", {"cc": "1", "phone_number": "5550100001", "verified_name": "Acme"}
    )
    number_id = created.json()["id"]
    read = graph.get(number_id)
    assert list(business_usage(read)) == [SECOND_WABA_ID]
    assert [r.waba_id for r in sandbox.requests] == [SECOND_WABA_ID, SECOND_WABA_ID]
    assert sandbox.calls_per_window == {(SECOND_WABA_ID, 0): 2}


def test_register_answers_carry_the_whatsapp_usage_type(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.verified()
    registered = graph.register(number_id, pin="730418")
    assert registered.status_code == 200
    assert usage(registered, whatsapp_sandbox.default_waba_id)["type"] == "whatsapp"
    deregistered = graph.post(f"{number_id}/deregister", {"messaging_product": "whatsapp"})
    assert usage(deregistered, whatsapp_sandbox.default_waba_id)["type"] == "whatsapp"
    assert usage(graph.get(number_id), whatsapp_sandbox.default_waba_id)["type"] == "whatsapp_business_management"


def test_calls_about_no_waba_count_against_the_app_only(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(rate_limit=1)
    graph = graph_for(sandbox)
    answers = [
        graph.get("debug_token", {"input_token": sandbox.token}),
        graph.get("me"),
        graph.get("999000111222333"),
    ]
    assert [a.status_code for a in answers] == [200, 400, 400]
    for answer in answers:
        assert "X-Business-Use-Case-Usage" not in answer.headers
        assert set(app_usage(answer)) == {"call_count", "total_cputime", "total_time"}
    assert [r.waba_id for r in sandbox.requests] == [None, None, None]
    assert sandbox.calls_per_window == {}
    assert sandbox.app_calls_per_window == {0: 3}
    # A token that cannot see a WABA learns nothing of its usage either.
    sandbox.add_token("EAAelsewhere", waba_ids=["1"])
    denied = graph.get(DEFAULT_WABA_ID, token="EAAelsewhere")
    assert denied.status_code == 403
    assert "X-Business-Use-Case-Usage" not in denied.headers
    # Unauthenticated calls are counted against nothing.
    assert "X-App-Usage" not in graph.get(DEFAULT_WABA_ID, token=None).headers
    assert sandbox.app_calls_per_window == {0: 4}


def test_app_budget_answers_code_4(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(wabas=2, app_rate_limit=3, rate_window=HOUR)
    graph = graph_for(sandbox)
    first = [graph.get(DEFAULT_WABA_ID), graph.get(SECOND_WABA_ID), graph.get("debug_token", {"input_token": "x"})]
    assert [app_usage(a)["call_count"] for a in first] == [33, 66, 100]
    rejected = graph.post(
        f"{SECOND_WABA_ID}/phone_numbers", {"cc": "1", "phone_number": "5550100001", "verified_name": "Acme"}
    )
    err = graph.error(rejected)
    assert (rejected.status_code, err["code"], err["type"]) == (400, 4, "OAuthException")
    assert err["message"] == "(#4) Application request limit reached"
    assert err["fbtrace_id"]
    assert app_usage(rejected)["call_count"] == 100
    # The WABA's own budget is far from spent, and says so.
    assert usage(rejected, SECOND_WABA_ID)["call_count"] < 100
    assert "Retry-After" not in rejected.headers
    assert sandbox.numbers() == []
    assert (sandbox.rejected_calls, sandbox.app_rejected_calls, sandbox.rejected_calls_by_waba()) == (1, 1, {})
    assert [(r.code, r.waba_id) for r in sandbox.rate_limit_rejections] == [(4, SECOND_WABA_ID)]

    sandbox.clock.advance(HOUR)
    assert graph.get(SECOND_WABA_ID).status_code == 200


def test_errors_on_waba_calls_carry_usage_headers(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    response = graph.post(f"{number_id}/verify_code", {"code": "000000"})
    assert response.status_code == 400
    assert usage(response, whatsapp_sandbox.default_waba_id)["call_count"] == 1
    # Without a limit, usage is reported against 200 calls per hour (2 calls: 1 %).
    assert app_usage(response)["call_count"] == 1


def test_unlimited_never_reports_full_usage(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(rate_window=HOUR)
    graph = graph_for(sandbox)
    number_id = graph.create()
    for _ in range(250):
        response = graph.get(number_id, params={"fields": "status"})
        assert response.status_code == 200
    assert usage(response, sandbox.default_waba_id)["call_count"] == 50
    assert usage(response, sandbox.default_waba_id)["estimated_time_to_regain_access"] == 0
    assert app_usage(response)["call_count"] == 50
    assert sandbox.rejected_calls == 0


def test_limited_waba_does_not_slow_the_unlimited_app(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(rate_limit=2)
    graph = graph_for(sandbox)
    graph.get(DEFAULT_WABA_ID)
    answer = graph.get(DEFAULT_WABA_ID)
    assert usage(answer, DEFAULT_WABA_ID)["call_count"] == 100
    assert app_usage(answer)["call_count"] == 1  # 2 of a nominal 200


def test_add_waba_with_a_budget_and_reset(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(rate_limit=5, waba_rate_limits={DEFAULT_WABA_ID: 1})
    graph = graph_for(sandbox)
    added = sandbox.add_waba(rate_limit=2)
    assert added == SECOND_WABA_ID
    assert sandbox.add_waba("777000111") == "777000111"
    assert [sandbox.rate_limit_for(w) for w in sandbox.waba_ids] == [1, 2, 5]
    assert [graph.get(added).status_code for _ in range(3)] == [200, 200, 400]
    assert graph.get(DEFAULT_WABA_ID).ok
    sandbox.reset()
    # The constructor's WABAs and budgets, nothing counted.
    assert sandbox.waba_ids == [DEFAULT_WABA_ID]
    assert (sandbox.calls_per_window, sandbox.rejected_calls) == ({}, 0)
    assert sandbox.rate_limit_for(added) == 5
    assert graph.get(DEFAULT_WABA_ID).ok
    assert graph.error(graph.get(DEFAULT_WABA_ID))["code"] == 80008


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": 0}, "rate_limit"),
        ({"app_rate_limit": -1}, "app_rate_limit"),
        ({"rate_limit": 2.5}, "rate_limit"),
        ({"wabas": 0}, "wabas"),
        ({"waba_rate_limits": {"123": 5}}, "123"),
        ({"waba_rate_limits": {DEFAULT_WABA_ID: 0}}, DEFAULT_WABA_ID),
        ({"waba_id": "waba-1"}, "waba_id"),
        ({"rate_window": 0}, "rate_window"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GraphSandbox(**options)


def test_rate_limits_over_the_control_plane(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(wabas=2, rate_limit=1, app_rate_limit=100)
    graph = graph_for(sandbox)
    graph.get(DEFAULT_WABA_ID)
    graph.get(DEFAULT_WABA_ID)
    snapshot = requests.get(f"{sandbox.url}/_sandbox/rate_limits", timeout=10).json()
    assert snapshot["limits"] == {DEFAULT_WABA_ID: 1, SECOND_WABA_ID: 1}
    assert snapshot["app_limit"] == 100
    assert snapshot["calls_per_window"] == [[DEFAULT_WABA_ID, 0, 1]]
    assert [(r["waba_id"], r["code"]) for r in snapshot["rejections"]] == [(DEFAULT_WABA_ID, 80008)]
    state = requests.get(f"{sandbox.url}/_sandbox/state", timeout=10).json()
    assert state["waba_ids"] == [DEFAULT_WABA_ID, SECOND_WABA_ID]
    assert state["rejected_calls_by_waba"] == {DEFAULT_WABA_ID: 1}
    logged = requests.get(f"{sandbox.url}/_sandbox/requests", timeout=10).json()["requests"]
    assert [r["waba_id"] for r in logged] == [DEFAULT_WABA_ID, DEFAULT_WABA_ID]
