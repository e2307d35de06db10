"""Graph's error codes classified as Meta documents them, whatever shape the answer takes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import (
    GraphBlockedError,
    GraphPermanentError,
    GraphResponseError,
    GraphThrottledError,
    GraphTransientError,
)
from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy, parse_response

THROTTLED = [4, 17, 32, 341, 613, *range(80001, 80010), 80014, 130429, 131056]
TRANSIENT = [1, 2, 131000, 131016, 133004]
BLOCKED = [133008, 133015, 133016]
PERMANENT = [0, 3, 10, 100, 102, 104, 190, 200, 299, 300, 368, 131005, 131008, 131009, 131031, 131037, 131045]
PERMANENT += [133000, 133005, 133006, 133010, 136025, 200000, 80010, 80015]


def answer(error: dict[str, Any], status: int = 400, headers: dict[str, str] | None = None) -> Any:
    body = json.dumps({"error": {"message": "m", "fbtrace_id": "AbCdEf012", **error}}).encode()
    try:
        parse_response(status, headers or {}, body)
    except Exception as raised:
        return raised
    raise AssertionError("an error answer parsed as success")


@pytest.mark.parametrize("code", THROTTLED)
@pytest.mark.parametrize("as_text", [False, True], ids=["int", "string"])
def test_throttle_codes_wait_and_retry(code: int, as_text: bool) -> None:
    error = answer({"code": str(code) if as_text else code})
    assert type(error) is GraphThrottledError
    assert error.code == code
    assert GraphRetryPolicy().should_retry(error)


@pytest.mark.parametrize("code", TRANSIENT)
def test_transient_codes_retry_with_backoff(code: int) -> None:
    error = answer({"code": code})
    assert type(error) is GraphTransientError
    assert GraphRetryPolicy().should_retry(error)


@pytest.mark.parametrize("code", BLOCKED)
def test_blocked_codes_fail_fast(code: int) -> None:
    error = answer({"code": code})
    assert type(error) is GraphBlockedError
    assert not GraphRetryPolicy().should_retry(error)


@pytest.mark.parametrize("code", PERMANENT)
def test_every_other_code_is_permanent(code: int) -> None:
    error = answer({"code": code})
    assert type(error) is GraphPermanentError
    assert not GraphRetryPolicy().should_retry(error)


def test_code_requested_too_often_waits_but_not_eligible_is_permanent() -> None:
    too_often = answer({"code": 136024, "error_subcode": "2388367"})
    assert type(too_often) is GraphThrottledError
    assert too_often.error_subcode == 2388367
    # Without a time from Graph the policy waits the exhausted wait, never a quick backoff.
    policy = GraphRetryPolicy(backoff_initial=0.01, exhausted_wait=42.0)
    assert policy.wait_for(too_often, 1) == 42.0
    assert type(answer({"code": 136024, "error_subcode": 2388091})) is GraphPermanentError


def test_is_transient_and_5xx_make_an_unknown_code_transient() -> None:
    assert type(answer({"code": 999999, "is_transient": True})) is GraphTransientError
    assert type(answer({"code": 999999}, status=503)) is GraphTransientError
    assert type(answer({"code": 999999})) is GraphPermanentError


@pytest.mark.parametrize(
    ("error_data", "details"),
    [
        ({"messaging_product": "whatsapp", "details": "Number is not registered"}, "Number is not registered"),
        ("Number is not registered", "Number is not registered"),
        (json.dumps({"details": "encoded object"}), "encoded object"),
        (None, None),
    ],
    ids=["object", "plain-string", "json-string", "missing"],
)
def test_error_data_as_object_or_string(error_data: Any, details: str | None) -> None:
    error = answer({"code": 100, "error_subcode": 133010, "error_data": error_data})
    assert error.details == details
    assert error.error_subcode == 133010
    assert error.fbtrace_id == "AbCdEf012"
    assert "code=100" in str(error) and "subcode=133010" in str(error) and "fbtrace_id=AbCdEf012" in str(error)


def test_throttle_carries_the_regain_time_of_the_usage_headers() -> None:
    from airflow_provider_whatsapp.hooks.usage import parse_usage_headers

    headers = {
        "X-Business-Use-Case-Usage": json.dumps(
            {
                "102290129340398": [
                    {"type": "whatsapp_business_management", "call_count": 100, "estimated_time_to_regain_access": 3}
                ]
            }
        )
    }
    error = answer({"code": 80008}, headers=headers)
    assert error.retry_after is None  # the caller passes the parsed usage
    body = json.dumps({"error": {"code": 80008, "message": "too many"}}).encode()
    with pytest.raises(GraphThrottledError) as raised:
        parse_response(400, headers, body, parse_usage_headers(headers))
    assert raised.value.retry_after == 180.0


def test_retry_after_header_wins_over_the_usage_header() -> None:
    body = json.dumps({"error": {"code": 4, "message": "app limit"}}).encode()
    with pytest.raises(GraphThrottledError) as raised:
        parse_response(400, {"Retry-After": "7"}, body)
    assert raised.value.retry_after == 7.0


def test_non_graph_bodies() -> None:
    assert type(answer_raw(502, b"<html>Bad gateway</html>")) is GraphResponseError
    assert type(answer_raw(429, b"")) is GraphThrottledError
    assert type(answer_raw(404, b"not found")) is GraphPermanentError
    error = answer_raw(200, b"[1, 2]")
    assert type(error) is GraphResponseError and "not a JSON object" in str(error)


def answer_raw(status: int, body: bytes) -> Any:
    try:
        parse_response(status, {}, body)
    except Exception as raised:
        return raised
    raise AssertionError("parsed as success")


def test_the_docs_table_lists_exactly_the_codes_of_the_table() -> None:
    import re
    from pathlib import Path

    from airflow_provider_whatsapp.exceptions import ERROR_CLASS_BY_CODE

    page = (Path(__file__).resolve().parents[2] / "docs" / "rate_limits.rst").read_text()
    documented: dict[str, set[int]] = {}
    for name, codes in re.findall(r"\* - ``(Graph\w+Error)``\n\s+- ([^\n]+)", page):
        numbers: set[int] = set()
        for first, last in re.findall(r"\b(\d+)(?:-(\d+))?\b", codes.split(";")[0]):
            numbers.update(range(int(first), int(last or first) + 1))
        documented[name] = numbers
    for name in ("GraphThrottledError", "GraphTransientError", "GraphBlockedError"):
        in_code = {code for code, error_class in ERROR_CLASS_BY_CODE.items() if error_class.__name__ == name}
        assert documented[name] == in_code, name


@pytest.mark.parametrize(
    ("error", "code"),
    [({"code": 133006}, 133006), ({"code": 136024, "error_subcode": 2388091}, 2388091), ({"code": 200000}, 200000)],
    ids=["by code", "by subcode", "cannot add"],
)
def test_an_onboarding_error_says_its_way_forward(error: dict[str, Any], code: int) -> None:
    from airflow_provider_whatsapp.exceptions import WAY_FORWARD

    raised = answer(error)
    assert raised.way_forward == WAY_FORWARD[code]
    assert f"way forward: {WAY_FORWARD[code]}" in str(raised)
    assert raised.to_dict()["way_forward"] == WAY_FORWARD[code]


def test_an_error_without_a_documented_way_forward_says_none() -> None:
    raised = answer({"code": 100, "error_subcode": 33})
    assert raised.way_forward is None and "way forward" not in str(raised)
    assert raised.to_dict()["way_forward"] is None


def test_the_docs_table_of_ways_forward_is_the_table() -> None:
    import re
    from pathlib import Path

    from airflow_provider_whatsapp.exceptions import WAY_FORWARD

    page = (Path(__file__).resolve().parents[2] / "docs" / "rate_limits.rst").read_text()
    # From the section's heading to the next one's underline.
    section = page.split("Onboarding errors and the way forward\n", 1)[1].split("\n---", 1)[0]
    documented = {int(code): text for code, text in re.findall(r"\* - (\d+)\n\s+- ([^\n]+)", section)}
    assert documented == dict(WAY_FORWARD)
