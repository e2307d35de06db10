"""Usage keyed as Graph keys it: per app per WABA, and per app."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy
from airflow_provider_whatsapp.hooks.usage import (
    CallScope,
    ConnectionKey,
    UsageStore,
    parse_usage_headers,
)

WABA_A, WABA_B = "102290129340398", "104996122399160"
NUMBER = "106540352242922"
CONN = ConnectionKey("https://graph.facebook.com", "whatsapp_default")


def business(waba: str, percent: float, regain_minutes: float = 0, kind: str = "whatsapp_business_management") -> str:
    entry = {"type": kind, "call_count": percent, "total_cputime": 1, "total_time": 1}
    entry["estimated_time_to_regain_access"] = regain_minutes
    return json.dumps({waba: [entry]})


def record(store: UsageStore, headers: dict[str, str], scope: CallScope, now: float = 0.0) -> None:
    report = parse_usage_headers(headers, now)
    assert report is not None
    store.record(CONN, scope, report)


def test_an_exhausted_waba_does_not_hold_back_another() -> None:
    store = UsageStore()
    policy = GraphRetryPolicy()
    record(store, {"X-Business-Use-Case-Usage": business(WABA_A, 100, regain_minutes=30)}, CallScope(waba_id=WABA_A))
    record(store, {"X-Business-Use-Case-Usage": business(WABA_B, 10)}, CallScope(waba_id=WABA_B))

    def wait(waba: str) -> float:
        return max((policy.pacing_wait(r, now=1.0) for r in store.readings(CONN, CallScope(waba_id=waba))), default=0)

    assert wait(WABA_B) == 0.0
    # B's 10 % did not replace A's 100 %: A is still held for its regain time (capped).
    assert wait(WABA_A) == pytest.approx(min(30 * 60.0, policy.max_throttle_wait) - 1.0)


def test_app_usage_paces_every_call_of_the_connection() -> None:
    store = UsageStore()
    record(store, {"X-App-Usage": json.dumps({"call_count": 100, "total_time": 5})}, CallScope(waba_id=WABA_A))
    readings = store.readings(CONN, CallScope(waba_id=WABA_B))
    assert [r.percent for r in readings] == [100.0]
    assert [r.percent for r in store.readings(CONN, CallScope())] == [100.0]
    other = ConnectionKey(CONN.host, "another_connection")
    assert store.readings(other, CallScope()) == []


def test_a_number_is_paced_by_the_waba_its_answers_name() -> None:
    store = UsageStore()
    scope = CallScope(phone_number_id=NUMBER)
    assert store.waba_of(CONN, scope) is None
    record(store, {"X-Business-Use-Case-Usage": business(WABA_B, 95, kind="whatsapp")}, scope)
    assert store.waba_of(CONN, scope) == WABA_B
    assert [r.percent for r in store.readings(CONN, scope)] == [95.0]
    # An explicit WABA wins over what was learned.
    assert store.waba_of(CONN, CallScope(waba_id=WABA_A, phone_number_id=NUMBER)) == WABA_A


def test_learned_from_create_and_list_results() -> None:
    store = UsageStore()
    store.learn_waba(CONN, NUMBER, WABA_A)
    assert store.waba_of(CONN, CallScope(phone_number_id=NUMBER)) == WABA_A
    store.learn_waba(CONN, "not-an-id", WABA_A)
    assert store.waba_of(CONN, CallScope(phone_number_id="not-an-id")) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Business-Use-Case-Usage": "not json"},
        {"X-Business-Use-Case-Usage": "[1, 2]"},
        {"X-Business-Use-Case-Usage": json.dumps({"../etc": [{"call_count": 100}]})},
        {"X-Business-Use-Case-Usage": json.dumps({WABA_A: [{"call_count": -5}]})},
        {"X-Business-Use-Case-Usage": json.dumps({WABA_A: [{"call_count": 1e12}]})},
        {"X-Business-Use-Case-Usage": json.dumps({WABA_A: [{"call_count": "NaN"}]})},
        {"X-Business-Use-Case-Usage": json.dumps({WABA_A: "100"})},
        {"X-App-Usage": json.dumps({"call_count": True})},
        {"X-App-Usage": "{"},
    ],
    ids=["not-json", "not-object", "key-not-id", "negative", "absurd", "nan", "not-list", "bool", "truncated"],
)
def test_unreadable_usage_is_unknown_never_a_crash(headers: dict[str, str]) -> None:
    assert parse_usage_headers(headers) is None


def test_absurd_regain_time_never_waits_longer_than_max_throttle_wait() -> None:
    policy = GraphRetryPolicy(max_throttle_wait=120.0)
    report = parse_usage_headers({"X-Business-Use-Case-Usage": business(WABA_A, 100, regain_minutes=10_000)}, 0.0)
    assert report is not None
    reading = report.business[WABA_A]
    # 10,000 minutes is not a time Graph gives: unknown, so the exhausted wait applies (capped).
    assert reading.regain_seconds == 0
    assert policy.pacing_wait(reading, now=0.0) == min(policy.exhausted_wait, 120.0)
    big = parse_usage_headers({"X-Business-Use-Case-Usage": business(WABA_A, 100, regain_minutes=60)}, 0.0)
    assert big is not None
    assert policy.pacing_wait(big.business[WABA_A], now=0.0) == 120.0


def test_slowdown_above_threshold_and_none_below() -> None:
    policy = GraphRetryPolicy(usage_threshold=80, slowdown_wait=2.0)
    readings: dict[float, Any] = {}
    for percent in (50, 85):
        report = parse_usage_headers({"X-Business-Use-Case-Usage": business(WABA_A, percent)}, 10.0)
        assert report is not None
        readings[percent] = report.business[WABA_A]
    assert policy.pacing_wait(readings[50], now=10.0) == 0
    assert policy.pacing_wait(readings[85], now=10.5) == pytest.approx(1.5)
    assert policy.pacing_wait(readings[85], now=13.0) == 0


def test_exhausted_without_header_is_recorded_for_its_budget() -> None:
    store = UsageStore()
    store.record_exhausted(CONN, WABA_A, 90.0, now=5.0)
    reading = store.business_reading(CONN, WABA_A)
    assert reading is not None and reading.percent == 100 and reading.regain_seconds == 90.0
    assert store.app_reading(CONN) is None
