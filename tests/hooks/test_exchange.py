"""The exchange core driven by hand: no HTTP client, no sleeping, every decision visible."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import GraphConnectionError, GraphPermanentError, GraphThrottledError
from airflow_provider_whatsapp.hooks.exchange import (
    GraphExchange,
    RawResponse,
    Reconcile,
    Send,
    Sleep,
)
from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy, GraphSettings, build_request
from airflow_provider_whatsapp.hooks.usage import CallScope, ConnectionKey, UsageStore

WABA_A, WABA_B = "102290129340398", "104996122399160"
NUMBER = "106540352242922"
SETTINGS = GraphSettings(token="EAAunit7f3c9e1b2d4a", app_secret="s3cr3t-unit-9d1f")
CONN = ConnectionKey(SETTINGS.host, "whatsapp_default")
POLICY = GraphRetryPolicy(max_attempts=4, backoff_initial=1.0, backoff_max=4.0, exhausted_wait=30.0)
LOG = logging.getLogger("test_exchange")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ok(payload: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> RawResponse:
    return RawResponse(200, headers or {}, json.dumps(payload or {"id": NUMBER}).encode())


def graph_error(code: int, headers: dict[str, str] | None = None, **extra: Any) -> RawResponse:
    body = {"error": {"code": code, "message": f"error {code}", "fbtrace_id": "Ax1", **extra}}
    return RawResponse(400, headers or {}, json.dumps(body).encode())


def buc(waba: str, percent: float, regain_minutes: float = 0) -> dict[str, str]:
    entry = {"type": "whatsapp_business_management", "call_count": percent, "total_cputime": 1, "total_time": 1}
    entry["estimated_time_to_regain_access"] = regain_minutes
    return {"X-Business-Use-Case-Usage": json.dumps({waba: [entry]})}


def drive(
    exchange: GraphExchange,
    replies: list[Any],
    clock: Clock,
    reconcile: Callable[[], Any] | None = None,
) -> tuple[list[Any], Any]:
    """Run the exchange with scripted replies; return the actions it took and its result or error."""
    actions: list[Any] = []
    steps = exchange.steps()
    reply: Any = None
    try:
        for _ in range(50):
            action = steps.send(reply)
            actions.append(action)
            if isinstance(action, Sleep):
                clock.now += action.seconds
                reply = None
            elif isinstance(action, Send):
                reply = replies.pop(0)
            else:
                assert isinstance(action, Reconcile) and reconcile is not None
                reply = reconcile()
    except StopIteration as done:
        return actions, done.value
    except Exception as error:
        return actions, error
    raise AssertionError("the exchange did not end within 50 steps")


def exchange_for(
    method: str, path: str, scope: CallScope, store: UsageStore, clock: Clock, **kwargs: Any
) -> GraphExchange:
    request = build_request(
        SETTINGS, method, path, params={"fields": "id"}, body={"cc": "1"} if method == "POST" else None
    )
    return GraphExchange(
        request, policy=POLICY, connection=CONN, scope=scope, log=LOG, usage_store=store, clock=clock, **kwargs
    )


def sends(actions: list[Any]) -> int:
    return sum(isinstance(action, Send) for action in actions)


def sleeps(actions: list[Any]) -> list[float]:
    return [action.seconds for action in actions if isinstance(action, Sleep)]


class TestRequestBuilding:
    def test_token_in_header_proof_in_query_never_the_token(self) -> None:
        request = build_request(SETTINGS, "GET", "/123/phone_numbers", params={"fields": "id", "limit": 5, "x": None})
        assert request.url == f"https://graph.facebook.com/{SETTINGS.api_version}/123/phone_numbers"
        assert request.path == "123/phone_numbers"
        assert request.headers["Authorization"] == f"Bearer {SETTINGS.token}"
        assert request.params["appsecret_proof"] == SETTINGS.appsecret_proof
        assert "x" not in request.params and request.params["limit"] == "5"
        assert SETTINGS.token not in request.url_with_query
        assert SETTINGS.token not in repr(request) and SETTINGS.app_secret not in repr(SETTINGS)

    def test_booleans_as_graph_spells_them(self) -> None:
        request = build_request(SETTINGS, "POST", "1/phone_numbers", params={"migrate": True}, body={"a": 1})
        assert request.params["migrate"] == "true"
        assert request.json_body == {"a": 1}


class TestPacing:
    def test_call_to_a_fresh_waba_goes_out_while_another_is_exhausted(self) -> None:
        store, clock = UsageStore(), Clock()
        first = exchange_for("GET", WABA_A, CallScope(waba_id=WABA_A), store, clock)
        actions, _ = drive(first, [ok({"id": WABA_A}, buc(WABA_A, 100, regain_minutes=30))], clock)
        assert sends(actions) == 1
        to_b = exchange_for("GET", WABA_B, CallScope(waba_id=WABA_B), store, clock)
        actions, result = drive(to_b, [ok({"id": WABA_B}, buc(WABA_B, 10))], clock)
        assert sleeps(actions) == [] and result == {"id": WABA_B}
        # ...and A is still held back for its own regain time, B's answer did not replace it.
        to_a = exchange_for("GET", WABA_A, CallScope(waba_id=WABA_A), store, clock)
        actions, _ = drive(to_a, [ok({"id": WABA_A}, buc(WABA_A, 1))], clock)
        assert sleeps(actions) == [POLICY.max_throttle_wait]

    def test_a_number_call_is_paced_by_its_waba_once_known(self) -> None:
        store, clock = UsageStore(), Clock()
        scope = CallScope(phone_number_id=NUMBER)
        actions, _ = drive(exchange_for("GET", NUMBER, scope, store, clock), [ok(headers=buc(WABA_A, 100, 2))], clock)
        assert sleeps(actions) == []  # unknown WABA: only app-level usage, none known
        actions, _ = drive(exchange_for("GET", NUMBER, scope, store, clock), [ok(headers=buc(WABA_A, 5))], clock)
        assert sleeps(actions) == [120.0]


class TestRetries:
    def test_throttle_waits_the_announced_time_then_succeeds(self) -> None:
        store, clock = UsageStore(), Clock()
        exchange = exchange_for("GET", WABA_A, CallScope(waba_id=WABA_A), store, clock)
        actions, result = drive(exchange, [graph_error(80008, buc(WABA_A, 100, 1)), ok({"id": WABA_A})], clock)
        assert result == {"id": WABA_A}
        # One wait of the announced minute: the pacing before the retry finds it already served.
        assert sleeps(actions) == [60.0]

    def test_throttle_without_time_waits_exhausted_wait_and_marks_the_waba(self) -> None:
        store, clock = UsageStore(), Clock()
        exchange = exchange_for("GET", WABA_A, CallScope(waba_id=WABA_A), store, clock)
        actions, _ = drive(exchange, [graph_error("80008"), ok({"id": WABA_A})], clock)  # type: ignore[arg-type]
        assert sleeps(actions) == [POLICY.exhausted_wait]
        reading = store.business_reading(CONN, WABA_A)
        assert reading is not None and reading.percent == 100

    def test_permanent_error_is_sent_once(self) -> None:
        store, clock = UsageStore(), Clock()
        actions, error = drive(exchange_for("GET", NUMBER, CallScope(), store, clock), [graph_error(100)], clock)
        assert isinstance(error, GraphPermanentError) and sends(actions) == 1

    def test_gives_up_after_max_attempts(self) -> None:
        store, clock = UsageStore(), Clock()
        replies = [graph_error(2) for _ in range(POLICY.max_attempts)]
        actions, error = drive(exchange_for("GET", NUMBER, CallScope(), store, clock), replies, clock)
        assert error.code == 2 and sends(actions) == POLICY.max_attempts

    def test_gives_up_before_passing_max_total_wait(self) -> None:
        store, clock = UsageStore(), Clock()
        policy = GraphRetryPolicy(max_attempts=10, max_total_wait=100.0, max_throttle_wait=600.0)
        exchange = exchange_for("GET", NUMBER, CallScope(), store, clock)
        exchange.policy = policy
        replies = [graph_error(4, {"Retry-After": "60"}) for _ in range(3)]
        actions, error = drive(exchange, replies, clock)
        assert isinstance(error, GraphThrottledError)
        assert sends(actions) == 2 and sum(sleeps(actions)) <= 100.0

    def test_uncertain_post_is_reconciled_not_sent_again(self) -> None:
        store, clock = UsageStore(), Clock()
        exchange = exchange_for(
            "POST", f"{WABA_A}/phone_numbers", CallScope(waba_id=WABA_A), store, clock, reconciles=True
        )
        dropped = GraphConnectionError("dropped after sending", request_sent=True)
        actions, result = drive(exchange, [dropped], clock, reconcile=lambda: {"id": NUMBER})
        assert result == {"id": NUMBER}
        assert sends(actions) == 1 and any(isinstance(a, Reconcile) for a in actions)

    def test_refused_connection_is_retried_without_reconciling(self) -> None:
        store, clock = UsageStore(), Clock()
        exchange = exchange_for(
            "POST", f"{WABA_A}/phone_numbers", CallScope(waba_id=WABA_A), store, clock, reconciles=True
        )
        refused = GraphConnectionError("refused", request_sent=False)
        actions, result = drive(exchange, [refused, ok()], clock, reconcile=lambda: pytest.fail("not uncertain"))
        assert result == {"id": NUMBER} and sends(actions) == 2

    def test_an_error_showing_the_first_attempt_applied_counts_as_success(self) -> None:
        store, clock = UsageStore(), Clock()
        exchange = exchange_for(
            "POST",
            f"{NUMBER}/request_code",
            CallScope(phone_number_id=NUMBER),
            store,
            clock,
            accept_after_uncertain=lambda error: error.code == 136024,
        )
        timed_out = GraphConnectionError("read timeout", request_sent=True)
        _, result = drive(exchange, [timed_out, graph_error(136024, error_subcode=2388367)], clock)
        assert result == {"success": True}
