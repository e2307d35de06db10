"""Property-based tests: whatever Graph (or a proxy in front of it) answers, the hook raises only
GraphAPIError, and never retries a permanent error."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_whatsapp.exceptions import GraphAPIError, GraphPermanentError
from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy, parse_response
from airflow_provider_whatsapp.hooks.usage import parse_usage_headers
from tests.fuzz import BOTH_WAYS, FuzzRun
from tests.policies import FAST_POLICY

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
# Graph-like error objects with every field possibly of the wrong type.
error_objects = st.fixed_dictionaries(
    {},
    optional={
        "message": json_values,
        "type": json_values,
        "code": st.integers(-5, 200_000) | json_values,
        "error_subcode": st.integers(-5, 3_000_000) | json_values,
        "is_transient": json_values,
        "error_user_title": json_values,
        "error_user_msg": json_values,
        "error_data": json_values | st.fixed_dictionaries({"details": json_values}),
        "fbtrace_id": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    error_objects.map(lambda error: json.dumps({"error": error}).encode()),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
)
usage_values = st.one_of(
    st.text(max_size=60),
    json_values.map(json.dumps),
    st.dictionaries(
        st.text(max_size=20),
        st.lists(
            st.dictionaries(st.sampled_from(["call_count", "estimated_time_to_regain_access", "type"]), json_values)
        ),
        max_size=3,
    ).map(json.dumps),
)
header_maps = st.fixed_dictionaries(
    {},
    optional={
        "X-Business-Use-Case-Usage": usage_values,
        "X-App-Usage": usage_values,
        "Retry-After": st.text(max_size=12) | st.integers(-10, 10**9).map(str),
        "Content-Type": st.sampled_from(["application/json", "text/html", "text/plain", ""]),
    },
)
statuses = st.integers(100, 599)


@BOTH_WAYS
def test_any_answer_is_a_dict_or_a_graph_api_error(fuzz: FuzzRun) -> None:
    @given(status=statuses, headers=header_maps, body=bodies)
    def check(status: int, headers: dict[str, str], body: bytes) -> None:
        usage = parse_usage_headers(headers)
        try:
            node = parse_response(status, headers, body, usage)
        except GraphAPIError as error:
            # The text users see says what HTTP status it was and carries Graph's own fields; the
            # XCom form holds the same, as plain JSON.
            text = str(error)
            assert text.startswith("Graph API error: "), text
            assert f"http_status={status}" in text, text
            if error.code is not None:
                assert f"code={error.code}" in text, text
            if error.fbtrace_id is not None:
                assert f"fbtrace_id={error.fbtrace_id}" in text, text
            details = json.loads(json.dumps(error.to_dict()))
            assert (details["http_status"], details["code"], details["fbtrace_id"]) == (
                status,
                error.code,
                error.fbtrace_id,
            )
            if isinstance(error, GraphPermanentError):
                assert not GraphRetryPolicy().should_retry(error)
            wait = GraphRetryPolicy().wait_for(error, 1)
            assert 0 <= wait <= GraphRetryPolicy().max_throttle_wait
        else:
            assert 200 <= status < 300
            assert isinstance(node, dict)

    fuzz.run(check, max_examples=400)


@BOTH_WAYS
def test_usage_headers_never_crash(fuzz: FuzzRun) -> None:
    @given(headers=header_maps)
    def check(headers: dict[str, str]) -> None:
        usage = parse_usage_headers(headers)
        if usage is not None:
            for reading in [*usage.business.values(), *([usage.app] if usage.app else [])]:
                assert 0 <= reading.percent <= 1000
                assert 0 <= reading.regain_seconds <= 24 * 3600
                assert 0 <= GraphRetryPolicy().pacing_wait(reading) <= GraphRetryPolicy().max_throttle_wait

    fuzz.run(check, max_examples=400)


@pytest.fixture
def fuzz_hook(make_hook: Any, whatsapp_connection: Any) -> Any:
    return make_hook(retry_policy=FAST_POLICY)


@BOTH_WAYS
def test_over_http_only_graph_errors_and_no_retry_of_permanent_ones(
    fuzz_hook: Any, whatsapp_connection: Any, tally: Counter[str], fuzz: FuzzRun
) -> None:
    @given(status=statuses.filter(lambda s: s >= 200), headers=header_maps, body=bodies)
    def check(status: int, headers: dict[str, str], body: bytes) -> None:
        from airflow_provider_whatsapp.sandbox import Fault

        sandbox = whatsapp_connection
        sandbox.clear_faults()
        sandbox.reset_requests()
        headers = {k: v for k, v in headers.items() if v.isprintable() and "\n" not in v and "\r" not in v}
        content_type = headers.pop("Content-Type", "application/json") or "application/json"
        # Every attempt gets the same answer, so the request count is the attempt count.
        sandbox.inject(
            Fault.http(status, body, content_type=content_type, headers=headers), count=FAST_POLICY.max_attempts + 1
        )
        error: GraphAPIError | None = None
        try:
            fuzz_hook.get_phone_number("106540352242922")
        except GraphAPIError as raised:
            error = raised
        attempts = len(sandbox.requests)
        tally["fuzzed HTTP answers served"] += attempts
        if isinstance(error, GraphPermanentError):
            assert attempts == 1, f"{type(error).__name__} was retried {attempts - 1} times"
        elif error is not None:
            assert 1 <= attempts <= FAST_POLICY.max_attempts
        else:
            # Only a JSON object is success, and it takes one attempt.
            assert 200 <= status < 300
            assert attempts == 1

    fuzz.run(check, max_examples=120)
