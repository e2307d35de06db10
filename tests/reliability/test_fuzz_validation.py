"""Property-based tests of input validation: every input is either accepted in normal form or
rejected with InvalidInputError naming the field; secrets are never echoed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import InvalidInputError
from tests.fuzz import BOTH_WAYS, FuzzRun

EXAMPLES = 300
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.text(alphabet="0123456789 +-().", max_size=20),
    st.lists(st.integers(), max_size=3),
)


def outcome(check: Callable[[Any], Any], field: str, value: Any) -> Any:
    try:
        return check(value)
    except InvalidInputError as error:
        assert error.field == field
        assert str(error).startswith(f"{field}: ")
        return error


@BOTH_WAYS
def test_country_code(fuzz: FuzzRun) -> None:
    @given(value=anything)
    def check(value: Any) -> None:
        result = outcome(validation.country_code, "cc", value)
        if isinstance(result, str):
            assert result.isdigit() and result.isascii() and 1 <= len(result) <= 3 and result[0] != "0"

    fuzz.run(check, max_examples=EXAMPLES)


@BOTH_WAYS
def test_national_number(fuzz: FuzzRun) -> None:
    @given(value=anything, cc=st.sampled_from(["1", "44", "358"]))
    def check(value: Any, cc: str) -> None:
        result = outcome(lambda v: validation.national_number(v, cc), "phone_number", value)
        if isinstance(result, str):
            assert result.isdigit() and result.isascii()
            assert len(cc) + len(result) <= validation.MAX_E164_DIGITS

    fuzz.run(check, max_examples=EXAMPLES)


@BOTH_WAYS
def test_graph_id(fuzz: FuzzRun) -> None:
    @given(value=anything)
    def check(value: Any) -> None:
        result = outcome(lambda v: validation.graph_id("phone_number_id", v), "phone_number_id", value)
        if isinstance(result, str):
            assert result.isdigit() and result.isascii()

    fuzz.run(check, max_examples=EXAMPLES)


@BOTH_WAYS
def test_verified_name(fuzz: FuzzRun) -> None:
    @given(value=anything)
    def check(value: Any) -> None:
        result = outcome(validation.verified_name, "verified_name", value)
        if isinstance(result, str):
            assert 2 <= len(result.strip()) <= 75

    fuzz.run(check, max_examples=EXAMPLES)


@BOTH_WAYS
def test_six_digits_never_echoes_the_secret(fuzz: FuzzRun) -> None:
    @given(value=anything | st.text(alphabet="0123456789", min_size=4, max_size=8))
    def check(value: Any) -> None:
        result = outcome(lambda v: validation.six_digits("pin", v), "pin", value)
        if isinstance(result, InvalidInputError) and isinstance(value, (str, int)) and len(str(value).strip()) >= 3:
            assert str(value).strip() not in str(result)
        elif isinstance(result, str):
            assert len(result) == 6 and result.isdigit() and result.isascii()

    fuzz.run(check, max_examples=EXAMPLES)


@pytest.mark.parametrize(
    ("check", "field"),
    [
        (validation.code_method, "code_method"),
        (validation.language, "language"),
        (validation.region, "data_localization_region"),
        (validation.api_version, "api_version"),
        (validation.host, "host"),
        (lambda v: validation.positive_number("timeout", v), "timeout"),
        (lambda v: validation.boolean("migrate_phone_number", v), "migrate_phone_number"),
        (validation.fields_param, "fields"),
    ],
)
@BOTH_WAYS
def test_other_validators_raise_only_invalid_input(check: Callable[[Any], Any], field: str, fuzz: FuzzRun) -> None:
    @given(value=anything)
    def run(value: Any) -> None:
        outcome(check, field, value)

    fuzz.run(run, max_examples=EXAMPLES)
