"""Input rules for Graph parameters, checked before any request is sent.

Each function returns the normalised value or raises :class:`.InvalidInputError` naming the field
and the rule. The hook and the operators call the same functions, so a rule lives in one place.
"""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_whatsapp.exceptions import InvalidInputError

API_VERSION_RE = re.compile(r"^v\d{1,3}\.\d$")
LANGUAGE_RE = re.compile(r"^[a-z]{2}_[A-Z]{2}$")
SIX_DIGITS_RE = re.compile(r"^\d{6}$")
# Separators people type inside national numbers; anything else is an error.
NUMBER_SEPARATORS_RE = re.compile(r"[\s\-.()]")
CODE_METHODS = ("SMS", "VOICE")
DATA_LOCALIZATION_REGIONS = (
    "AE", "AU", "BH", "BR", "CA", "CH", "DE", "GB", "ID", "IN", "JP", "KR", "SG", "ZA",
)  # fmt: skip
MAX_E164_DIGITS = 15


def _text(field: str, value: Any) -> str:
    if value is None:
        raise InvalidInputError(field, "is required (got None; a template that renders to None?)")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInputError(field, f"must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text or text == "None":
        raise InvalidInputError(field, "must not be empty")
    return text


def graph_id(field: str, value: Any) -> str:
    """A Graph object ID (WABA, phone number, preverified number): digits only."""
    text = _text(field, value)
    if not text.isdigit() or not text.isascii():
        raise InvalidInputError(field, f"must be a numeric Graph ID (digits only), got {text!r}")
    return text


def country_code(value: Any) -> str:
    """``cc``: 1-3 digits, no leading zero, no ``+``."""
    text = _text("cc", value)
    if text.startswith("+"):
        raise InvalidInputError("cc", "must be the dial code digits without '+', for example '1' or '44'")
    if not (text.isascii() and text.isdigit()) or not 1 <= len(text) <= 3 or text.startswith("0"):
        raise InvalidInputError("cc", f"must be 1-3 digits without a leading zero, got {text!r}")
    return text


def national_number(value: Any, cc: str) -> str:
    """``phone_number``: the number without country code; separators are stripped."""
    text = _text("phone_number", value)
    if "+" in text:
        raise InvalidInputError("phone_number", "must not contain '+': put the country code in cc and the rest here")
    digits = NUMBER_SEPARATORS_RE.sub("", text)
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise InvalidInputError(
            "phone_number",
            "must hold digits only (spaces, dashes, dots and parentheses are allowed); "
            "letters are not, and the country code goes in cc",
        )
    if len(cc) + len(digits) > MAX_E164_DIGITS:
        raise InvalidInputError(
            "phone_number",
            f"cc + phone_number must be at most {MAX_E164_DIGITS} digits (E.164), got {len(cc) + len(digits)}",
        )
    return digits


def verified_name(value: Any) -> str | None:
    """``verified_name``: 2-75 characters when given."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError("verified_name", f"must be a string, got {type(value).__name__}")
    if not 2 <= len(value.strip()) <= 75:
        raise InvalidInputError("verified_name", f"must be 2-75 characters, got {len(value.strip())}")
    return value.strip()


def boolean(field: str, value: Any) -> bool:
    """A flag that may arrive rendered from a template as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidInputError(field, f"must be true or false, got {value!r}")


def fields_param(value: Any) -> str | None:
    """``fields``: a comma-separated string or a list of field names."""
    if value is None or value == "" or value == []:
        return None
    if not isinstance(value, (str, list, tuple)):
        raise InvalidInputError("fields", f"must be a comma-separated string or a list of names, got {value!r}")
    names = value.split(",") if isinstance(value, str) else list(value)
    cleaned = [str(name).strip() for name in names]
    if not all(re.fullmatch(r"[a-z_][a-z0-9_{}.(),]*", name) for name in cleaned):
        raise InvalidInputError("fields", f"must be Graph field names separated by commas, got {value!r}")
    return ",".join(cleaned)


def code_method(value: Any) -> str:
    """``code_method``: SMS or VOICE."""
    text = _text("code_method", value).upper()
    if text not in CODE_METHODS:
        raise InvalidInputError("code_method", f"must be one of {', '.join(CODE_METHODS)}, got {value!r}")
    return text


def language(value: Any) -> str:
    """``language``: a locale such as ``en_US``."""
    text = _text("language", value)
    if not LANGUAGE_RE.match(text):
        raise InvalidInputError("language", f"must look like en_US (xx_XX), got {text!r}")
    return text


def six_digits(field: str, value: Any) -> str:
    """A verification code or a two-step PIN: exactly 6 digits. The value is never echoed."""
    if value is None:
        raise InvalidInputError(field, "is required (got None; a template that renders to None?)")
    text = value if isinstance(value, str) else str(value) if isinstance(value, int) else None
    if text is None or not SIX_DIGITS_RE.match(text):
        # The value is a secret: say what is wrong with it without repeating it.
        raise InvalidInputError(field, "must be exactly 6 digits (0-9), with no spaces or other characters")
    return text


def region(value: Any) -> str | None:
    """``data_localization_region``: one of the documented local-storage regions."""
    if value is None or value == "":
        return None
    text = _text("data_localization_region", value).upper()
    if text not in DATA_LOCALIZATION_REGIONS:
        raise InvalidInputError(
            "data_localization_region",
            f"must be one of {', '.join(DATA_LOCALIZATION_REGIONS)}, got {value!r}",
        )
    return text


def api_version(value: Any) -> str:
    """Connection extra ``api_version``: ``vNN.N``."""
    text = _text("api_version", value)
    if not API_VERSION_RE.match(text):
        raise InvalidInputError("api_version", f"must look like v26.0 (vNN.N), got {text!r}")
    return text


def host(value: Any) -> str:
    """Connection ``host``: an http(s) URL."""
    text = _text("host", value).rstrip("/")
    if not re.match(r"^https?://[^/\s]+$", text):
        raise InvalidInputError(
            "host", f"must be a URL with scheme and no path, such as https://graph.facebook.com, got {text!r}"
        )
    return text


def positive_number(field: str, value: Any) -> float:
    """A positive number of seconds (or a positive count)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(field, f"must be a positive number, got {value!r}") from None
    if not number > 0 or number != number or number == float("inf"):
        raise InvalidInputError(field, f"must be a positive number, got {value!r}")
    return number


BUDGET_STORES = ("airflow", "process")


def budget_store(value: Any) -> str:
    """``budget_store``: ``airflow``, ``process``, or a ``redis://`` / ``rediss://`` URL."""
    text = _text("budget_store", value)
    if text in BUDGET_STORES or text.startswith(("redis://", "rediss://", "unix://")):
        return text
    raise InvalidInputError("budget_store", "must be 'airflow', 'process' or a redis:// URL")
