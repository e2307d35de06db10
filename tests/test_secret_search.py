"""The secret search the leak tests rely on: it finds a secret however it was written down, counts
matches inside timestamps and IDs apart, and every secret the suite searches for is chance-proof."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_whatsapp.sandbox import DEFAULT_WABA_ID
from tests.secret_search import Haystack, chance_problem

PIN = "602917"
TOKEN = "EAAsandbox7c41d09be2a5"
# A secret JSON has to escape: a quote, a backslash and a non-ASCII letter.
ESCAPED = 'pa"ss\\wörd-4f7Q9'
PHONE_ID = "106540352242922"


def b64(text: str, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(text.encode()).decode()


FOUND = [
    pytest.param(PIN, f"something leaked {PIN} here", id="plain"),
    pytest.param(PIN, '{"pin":"' + PIN + '"}', id="in-json"),
    pytest.param(PIN, "GET /v26.0/x?body=%7B%22pin%22%3A%22" + PIN + "%22%7D", id="url-encoded-json"),
    pytest.param(PIN, f"%22{PIN}%22", id="url-encoded-quotes"),
    pytest.param(PIN, f"pin%20{PIN}", id="url-encoded-space"),
    pytest.param(PIN, f"pin%2520{PIN}", id="url-encoded-twice"),
    pytest.param(PIN, f"pin+{PIN}", id="form-encoded"),
    pytest.param(PIN, f"{PIN}.0", id="as-a-float"),
    pytest.param(PIN, f"api v26.{PIN}", id="after-a-version"),
    pytest.param(PIN, f"+1555010002{PIN}", id="glued-to-a-phone-number"),
    pytest.param(PIN, f"5550100021{PIN}9", id="between-digits"),
    pytest.param(PIN, f"id={PHONE_ID}{PIN}", id="glued-to-a-known-id"),
    pytest.param(PIN, f"pin={PIN}x", id="before-a-letter"),
    pytest.param(PIN, json.dumps(json.dumps({"pin": PIN})), id="json-in-json"),
    pytest.param(PIN, "Authorization: Basic " + b64(f"user:{PIN}"), id="base64-offset-0"),
    pytest.param(PIN, "x " + b64(f"u:{PIN}") + " y", id="base64-offset-1"),
    pytest.param(PIN, b64(f"pin {PIN} end"), id="base64-offset-2"),
    pytest.param(PIN, b64(f"{{'pin': '{PIN}'}}" + "\xff\xfe", urlsafe=True), id="base64-urlsafe"),
    pytest.param(PIN, quote(b64(f"pin={PIN}")), id="base64-url-encoded"),
    pytest.param(TOKEN, f"Bearer {TOKEN}", id="token-plain"),
    pytest.param(TOKEN, f"x{TOKEN}y", id="token-glued"),
    pytest.param(TOKEN, quote(f"access_token={TOKEN}", safe=""), id="token-url-encoded"),
    pytest.param(TOKEN, b64(f"Bearer {TOKEN}"), id="token-base64"),
    pytest.param(ESCAPED, json.dumps({"secret": ESCAPED}), id="json-escaped-ascii"),
    pytest.param(ESCAPED, json.dumps({"secret": ESCAPED}, ensure_ascii=False), id="json-escaped-unicode"),
    pytest.param(ESCAPED, json.dumps(json.dumps({"secret": ESCAPED})), id="json-escaped-twice"),
    pytest.param(ESCAPED, quote(json.dumps({"secret": ESCAPED})), id="json-then-url-encoded"),
]


@pytest.mark.parametrize(("secret", "text"), FOUND)
def test_the_search_finds_the_secret(secret: str, text: str) -> None:
    haystack = Haystack()
    haystack.know(PHONE_ID)
    haystack.add("logs", f"2026-11-25T03:44:35.123456Z {text} (done)")
    findings = haystack.search(secret)
    assert findings.found == {"logs": 1}, findings
    assert findings.ambiguous == {}


AMBIGUOUS = [
    pytest.param(f"2026-11-25T03:44:35.{PIN}+00:00", id="microseconds-of-a-timestamp"),
    pytest.param(f"run manual__2026-11-25T03:44:35.{PIN}+00:00 queued", id="run-id"),
    pytest.param(f"at 09:30:11,{PIN}", id="clock-time"),
    pytest.param(f"123e4567-e89b-12d3-a456-42{PIN}0000", id="uuid"),
    pytest.param(f"sha 3fa9c{PIN}bd0e41a77c2", id="hex-id"),
    pytest.param(f"created 1764057875.{PIN}", id="epoch-seconds"),
    pytest.param(f"took 0.4{PIN}113 s", id="full-precision-float"),
    pytest.param(f"phone_number_id=1065403{PIN}42", id="inside-a-known-id"),
]


@pytest.mark.parametrize("text", AMBIGUOUS)
def test_a_match_inside_a_timestamp_or_id_is_ambiguous_not_dropped(text: str) -> None:
    haystack = Haystack()
    haystack.know(f"1065403{PIN}42")
    haystack.add("logs", text)
    findings = haystack.search(PIN)
    assert findings.found == {}, findings
    assert findings.ambiguous == {"logs": 1}, findings
    assert findings.examples and findings.examples[0].startswith("ambiguous: "), findings


@pytest.mark.parametrize(
    "text",
    [f"{PIN[:5]} and {PIN[1:]}", f"{PIN[:3]} {PIN[3:]}", "***", b64(f"pin {PIN[:5]}"), quote(f"pin {PIN[1:]}")],
)
def test_partial_values_are_not_found(text: str) -> None:
    haystack = Haystack()
    haystack.add("logs", text)
    findings = haystack.search(PIN)
    assert (findings.found, findings.ambiguous) == ({}, {}), findings


def test_counts_by_source_and_occurrence() -> None:
    haystack = Haystack()
    haystack.add("xcom", {"pin": PIN, "again": f"%22{PIN}%22"})
    haystack.add("xcom", f"{PIN}.0")
    haystack.add("logs", f"2026-11-25T03:44:35.{PIN}Z and {b64(PIN)}")
    haystack.add("clean", "nothing here")
    findings = haystack.search(PIN)
    assert findings.found == {"xcom": 3, "logs": 1}
    assert findings.ambiguous == {"logs": 1}
    assert len(findings.examples) == 5


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("123456", "a run (123)"),
        ("654321", "a run (654)"),
        ("246810", "a run (246)"),
        ("000000", "starts with 0"),
        ("111111", "fewer than 5 distinct digits"),
        ("60291", "shorter than 6 digits"),
        ("EAAtoken", "shorter than 12 characters"),
        ("secret-secret-secret", "not a mix of letters and digits"),
    ],
)
def test_chance_problem_names_values_that_occur_by_chance(value: str, problem: str) -> None:
    found = chance_problem(value)
    assert found is not None and found.startswith(problem), found


def secrets_the_suite_searches_for() -> dict[str, str]:
    """Every fixed secret a test plants and then searches for, by where it is defined."""
    from tests import test_example_dags, test_lifecycle_hook, test_lifecycle_secrets
    from tests.e2e import test_deployment
    from tests.reliability import test_chain_retry, test_fault_matrix, test_load, test_secrets

    modules: list[Any] = [
        test_deployment,
        test_chain_retry,
        test_fault_matrix,
        test_load,
        test_secrets,
        test_example_dags,
        test_lifecycle_secrets,
        test_lifecycle_hook,
    ]
    names = (
        "PIN",
        "PREVERIFIED_PIN",
        "VARIABLE_PIN",
        "CONNECTION_PIN",
        "OTHER_PIN",
        "CODE",
        "WRONG_CODE",
        "APP_SECRET",
    )
    found = {
        f"{module.__name__}.{name}": getattr(module, name)
        for module in modules
        for name in names
        if hasattr(module, name)
    }
    found.update(
        {f"tests.test_lifecycle_hook.WRONG_CODES[{i}]": code for i, code in enumerate(test_lifecycle_hook.WRONG_CODES)}
    )
    return found


def test_every_planted_secret_is_chance_proof_and_distinct() -> None:
    secrets = secrets_the_suite_searches_for()
    assert len(secrets) >= 20, sorted(secrets)
    problems = {name: chance_problem(value) for name, value in secrets.items() if chance_problem(value)}
    assert problems == {}
    assert len(set(secrets.values())) == len(secrets), "two tests plant the same secret"
    assert not [name for name, value in secrets.items() if value in DEFAULT_WABA_ID]


@pytest.mark.parametrize(
    "text",
    ["", "[DAG TEST] starting task_id=create map_index=-1\n[DAG TEST] end task task_id=create"],
    ids=["empty", "no provider line"],
)
def test_output_that_holds_no_provider_line_is_refused_not_searched(text: str) -> None:
    haystack = Haystack()
    with pytest.raises(AssertionError, match="searching it proves nothing"):
        haystack.add_output("task output", text)
    assert haystack.parts == {}


def test_output_holding_a_provider_line_is_searched() -> None:
    haystack = Haystack()
    haystack.add_output("task output", f"[info] Phone number ID: {PHONE_ID} pin={PIN}")
    assert haystack.search(PIN).found == {"task output": 1}
