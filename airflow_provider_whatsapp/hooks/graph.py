"""The Graph protocol, free of any HTTP client: settings, request building, response parsing,
error classification, usage headers and the retry policy.

The synchronous hook (``requests``) and the asynchronous trigger client (``httpx``) both use this
module, so the two paths cannot drift apart.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from airflow_provider_whatsapp import __version__, validation
from airflow_provider_whatsapp.exceptions import (
    BLOCKED_CODES,
    EXCERPT_LENGTH,
    THROTTLE_CODES,
    TRANSIENT_CODES,
    GraphAPIError,
    GraphBlockedError,
    GraphConnectionError,
    GraphPermanentError,
    GraphResponseError,
    GraphThrottledError,
    GraphTransientError,
    InvalidInputError,
)

DEFAULT_HOST = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v26.0"
DEFAULT_TIMEOUT = 30.0
USER_AGENT = f"airflow-provider-whatsapp/{__version__}"
REGISTER_BLOCK = timedelta(hours=72)
_ISO_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True, repr=False)
class GraphSettings:
    """
    Everything needed to talk to Graph, read from an Airflow connection.

    :param token: the access token (connection password).
    :param host: scheme and host of the Graph API.
    :param api_version: Graph version, ``vNN.N``.
    :param app_secret: the app secret, to sign each call with ``appsecret_proof``.
    :param waba_id: default WhatsApp Business Account ID.
    :param timeout: seconds to wait for a response.
    """

    token: str
    host: str = DEFAULT_HOST
    api_version: str = DEFAULT_API_VERSION
    app_secret: str | None = None
    waba_id: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        # Secrets stay out of every repr, traceback and log line.
        return (
            f"GraphSettings(host={self.host!r}, api_version={self.api_version!r}, "
            f"waba_id={self.waba_id!r}, timeout={self.timeout!r}, token=***, "
            f"app_secret={'***' if self.app_secret else None})"
        )

    @classmethod
    def from_connection(cls, password: str | None, host: str | None, extra: Mapping[str, Any]) -> GraphSettings:
        """Validate a connection's fields; errors name the field and the rule."""
        if not password or not str(password).strip():
            raise InvalidInputError("password", "the connection must hold the access token in its password")
        raw_host = host or DEFAULT_HOST
        # Airflow connection URIs may split "https://host" into schema + host; accept both forms.
        checked_host = validation.host(raw_host)
        version = validation.api_version(extra.get("api_version") or DEFAULT_API_VERSION)
        timeout = DEFAULT_TIMEOUT
        if extra.get("timeout") not in (None, ""):
            timeout = validation.positive_number("timeout", extra["timeout"])
        waba_id = None
        if extra.get("waba_id") not in (None, ""):
            waba_id = validation.graph_id("waba_id", extra["waba_id"])
        app_secret = extra.get("app_secret") or None
        return cls(
            token=str(password).strip(),
            host=checked_host,
            api_version=version,
            app_secret=str(app_secret) if app_secret else None,
            waba_id=waba_id,
            timeout=timeout,
        )

    @property
    def appsecret_proof(self) -> str | None:
        """Hex HMAC-SHA256 of the token keyed with the app secret, as Graph requires."""
        if not self.app_secret:
            return None
        return hmac.new(self.app_secret.encode(), self.token.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class GraphRequest:
    """A Graph call, built once and sent by whichever client."""

    method: str
    url: str
    params: dict[str, str]
    json_body: dict[str, Any] | None
    headers: dict[str, str] = field(repr=False)

    @property
    def url_with_query(self) -> str:
        """The URL with the query already encoded: the clients' own param merging costs more
        per call than the whole rest of the hook."""
        return f"{self.url}?{urlencode(self.params)}" if self.params else self.url


def build_request(
    settings: GraphSettings,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    body: Mapping[str, Any] | None = None,
) -> GraphRequest:
    """Build a request: token in the ``Authorization`` header (never the URL), proof in the query."""
    query = {key: _param(value) for key, value in (params or {}).items() if value is not None}
    proof = settings.appsecret_proof
    if proof:
        query["appsecret_proof"] = proof
    headers = {
        "Authorization": f"Bearer {settings.token}",
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
    }
    return GraphRequest(
        method=method,
        url=f"{settings.host}/{settings.api_version}/{path.lstrip('/')}",
        params=query,
        json_body=dict(body) if body is not None else None,
        headers=headers,
    )


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- usage headers


@dataclass(frozen=True)
class RateLimitUsage:
    """
    The latest rate-limit usage Graph reported, as percentages of the limit.

    :param percent: the highest of call count, CPU time and total time, over every object reported.
    :param regain_seconds: how long until access is regained, when Graph said so (0 otherwise).
    :param business_usage: the parsed ``X-Business-Use-Case-Usage`` header.
    :param app_usage: the parsed ``X-App-Usage`` header.
    :param observed_at: ``time.monotonic()`` when the response arrived.
    """

    percent: float
    regain_seconds: float
    business_usage: dict[str, Any]
    app_usage: dict[str, Any]
    observed_at: float


def _number(value: Any) -> float:
    # Usage headers come from a proxy chain we do not control: anything unreadable counts as 0.
    if isinstance(value, bool):
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def _json_object(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        # A garbled header must not cost the response it came with.
        return {}
    return value if isinstance(value, dict) else {}


@functools.lru_cache(maxsize=256)
def _read_usage(business_raw: str | None, app_raw: str | None) -> tuple[float, float, dict[str, Any], dict[str, Any]]:
    # Cached on the raw header text: consecutive answers mostly repeat it, and parsing it on
    # every call was the largest cost of the hook itself. Callers only read the dicts.
    business = _json_object(business_raw)
    app = _json_object(app_raw)
    percent = 0.0
    regain_minutes = 0.0
    for entries in business.values():
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict):
                continue
            percent = max(percent, *(_number(entry.get(k)) for k in ("call_count", "total_cputime", "total_time")))
            regain_minutes = max(regain_minutes, _number(entry.get("estimated_time_to_regain_access")))
    percent = max(percent, *(_number(app.get(k)) for k in ("call_count", "total_cputime", "total_time")))
    return percent, regain_minutes * 60.0, business, app


def parse_usage(headers: Mapping[str, str], now: float | None = None) -> RateLimitUsage | None:
    """Read ``X-Business-Use-Case-Usage`` and ``X-App-Usage``; ``None`` when neither is there."""
    business_raw = headers.get("X-Business-Use-Case-Usage")
    app_raw = headers.get("X-App-Usage")
    if not business_raw and not app_raw:
        return None
    percent, regain_seconds, business, app = _read_usage(business_raw or None, app_raw or None)
    if not business and not app:
        return None
    return RateLimitUsage(
        percent=percent,
        regain_seconds=regain_seconds,
        business_usage=business,
        app_usage=app,
        observed_at=time.monotonic() if now is None else now,
    )


def retry_after_seconds(headers: Mapping[str, str], usage: RateLimitUsage | None) -> float | None:
    """The wait Graph asked for: ``Retry-After`` first, then the usage header's regain time."""
    raw = headers.get("Retry-After")
    if raw:
        seconds = _number(raw.strip())
        if seconds > 0:
            return seconds
    if usage is not None and usage.regain_seconds > 0:
        return usage.regain_seconds
    return None


# --------------------------------------------------------------------------- responses


def _excerpt(body: bytes) -> str:
    text = body[:EXCERPT_LENGTH].decode("utf-8", errors="replace")
    return " ".join(text.split())


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)[:1000]


def parse_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    usage: RateLimitUsage | None = None,
) -> dict[str, Any]:
    """Return the JSON object of a successful answer, or raise the right :class:`GraphAPIError`."""
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        # Deeply nested arrays from a broken proxy exhaust the decoder's recursion: not JSON to us.
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        raise graph_error_from(error, status, headers, usage)
    if 200 <= status < 300 and isinstance(payload, dict):
        return payload
    described = "not a JSON object" if body else "an empty body"
    if 200 <= status < 300:
        raise GraphResponseError(
            f"Graph answered HTTP {status} with {described}",
            http_status=status,
            excerpt=_excerpt(body),
            retry_after=retry_after_seconds(headers, usage),
        )
    error_class: type[GraphAPIError] = GraphPermanentError
    if status == 429:
        error_class = GraphThrottledError
    elif status >= 500:
        # A proxy's HTML page or an empty 5xx: the request may or may not have been served.
        error_class = GraphResponseError
    raise error_class(
        f"Graph answered HTTP {status} without a Graph error body",
        http_status=status,
        excerpt=_excerpt(body),
        is_transient=error_class is not GraphPermanentError,
        retry_after=retry_after_seconds(headers, usage),
    )


def graph_error_from(
    error: Mapping[str, Any],
    status: int | None,
    headers: Mapping[str, str],
    usage: RateLimitUsage | None = None,
) -> GraphAPIError:
    """Build the error class the reference prescribes from a Graph ``error`` object."""
    code = _int_or_none(error.get("code"))
    subcode = _int_or_none(error.get("error_subcode"))
    is_transient = error.get("is_transient") is True
    data = error.get("error_data")
    details = _text_or_none(data.get("details")) if isinstance(data, dict) else None
    kwargs: dict[str, Any] = {
        "code": code,
        "error_subcode": subcode,
        "type": _text_or_none(error.get("type")),
        "error_user_title": _text_or_none(error.get("error_user_title")),
        "error_user_msg": _text_or_none(error.get("error_user_msg")),
        "fbtrace_id": _text_or_none(error.get("fbtrace_id")),
        "is_transient": is_transient,
        "http_status": status,
        "details": details,
        "retry_after": retry_after_seconds(headers, usage),
    }
    message = _text_or_none(error.get("message")) or "(no message)"
    if code in BLOCKED_CODES:
        return GraphBlockedError(message, blocked_until=_blocked_until(code, kwargs), **kwargs)
    if code in THROTTLE_CODES:
        return GraphThrottledError(message, **kwargs)
    if is_transient or code in TRANSIENT_CODES or (status is not None and status >= 500):
        return GraphTransientError(message, **kwargs)
    return GraphPermanentError(message, **kwargs)


def _blocked_until(code: int | None, fields: Mapping[str, Any]) -> datetime | None:
    for text in (fields.get("details"), fields.get("error_user_msg")):
        match = _ISO_TIME_RE.search(text or "")
        if match:
            try:
                stamp = datetime.fromisoformat(match.group(0).replace("Z", "+00:00"))
            except ValueError:
                continue
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if code == 133016:
        # Graph did not say; the documented block is 72 hours from now, the latest it can end.
        return datetime.now(UTC) + REGISTER_BLOCK
    return None


# --------------------------------------------------------------------------- retry policy


@dataclass(frozen=True)
class GraphRetryPolicy:
    """
    How the hook and the trigger retry.

    :param max_attempts: attempts per call, the first included.
    :param max_total_wait: seconds of waiting (all retries of one call together) before giving up.
    :param backoff_initial: first backoff for transient errors, in seconds; doubles each retry.
    :param backoff_max: the largest single backoff for transient errors.
    :param max_throttle_wait: the largest single wait for a throttle, whatever Graph asked.
    :param usage_threshold: percent of a rate limit above which calls are slowed down.
    :param slowdown_wait: seconds between calls while usage is between the threshold and 100%.
    :param exhausted_wait: seconds to pause when usage reached 100% and Graph gave no regain time.
    """

    max_attempts: int = 5
    max_total_wait: float = 900.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    max_throttle_wait: float = 600.0
    usage_threshold: float = 90.0
    slowdown_wait: float = 1.0
    exhausted_wait: float = 60.0

    def __post_init__(self) -> None:
        if int(self.max_attempts) != self.max_attempts or self.max_attempts < 1:
            raise InvalidInputError("max_attempts", "must be a whole number of at least 1")
        for name in ("max_total_wait", "backoff_initial", "backoff_max", "max_throttle_wait", "exhausted_wait"):
            validation.positive_number(name, getattr(self, name))
        if not 0 < self.usage_threshold <= 100:
            raise InvalidInputError("usage_threshold", "must be a percentage above 0 and at most 100")
        if self.slowdown_wait < 0:
            raise InvalidInputError("slowdown_wait", "must not be negative")

    def should_retry(self, error: BaseException) -> bool:
        """Permanent errors never; transient, throttled, 5xx and connection errors yes."""
        if isinstance(error, GraphPermanentError):
            return False
        if isinstance(error, GraphAPIError):
            return isinstance(error, (GraphTransientError, GraphThrottledError, GraphConnectionError)) or (
                error.is_transient
            )
        return False

    def wait_for(self, error: BaseException | None, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if isinstance(error, GraphAPIError) and error.retry_after:
            # Graph told us how long; waiting less only earns another refusal.
            return min(float(error.retry_after), self.max_throttle_wait)
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, attempt - 1))
        # Full jitter on the upper half keeps many mapped tasks from retrying in lockstep.
        return base / 2 + random.uniform(0, base / 2)

    def pacing_wait(self, usage: RateLimitUsage | None, now: float | None = None) -> float:
        """How long to hold the next call back, given the latest usage Graph reported."""
        if usage is None or usage.percent < self.usage_threshold:
            return 0.0
        elapsed = (time.monotonic() if now is None else now) - usage.observed_at
        if usage.percent >= 100:
            wanted = usage.regain_seconds if usage.regain_seconds > 0 else self.exhausted_wait
            return max(0.0, min(wanted, self.max_throttle_wait) - elapsed)
        return max(0.0, self.slowdown_wait - elapsed)


def retry_policy_from_extra(extra: Mapping[str, Any]) -> GraphRetryPolicy:
    """A :class:`GraphRetryPolicy` with any of its fields overridden by connection extras."""
    overrides: dict[str, Any] = {}
    for spec in fields(GraphRetryPolicy):
        value = extra.get(spec.name)
        if value in (None, ""):
            continue
        if spec.name == "slowdown_wait":
            overrides[spec.name] = validation.positive_number(spec.name, value) if value not in (0, "0") else 0.0
        else:
            number = validation.positive_number(spec.name, value)
            overrides[spec.name] = int(number) if spec.name == "max_attempts" else number
    return GraphRetryPolicy(**overrides)


def retry_arguments(
    policy: GraphRetryPolicy, log: Any, method: str, path: str, *, failed_first: BaseException | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying``/``AsyncRetrying``: one retry policy for both.

    :param failed_first: the error of a first attempt already made outside tenacity (the sync
        hook's fast path). Tenacity then owns attempts 2 to ``max_attempts``: it waits for that
        error before its first attempt, and counts and logs attempts from 2.
    """
    import tenacity

    done = 0 if failed_first is None else 1

    def log_wait(error: BaseException | None, seconds: float, next_attempt: int) -> None:
        log.warning(
            "Graph call %s %s failed (%s, code=%s, subcode=%s); retrying in %.2fs (attempt %d of %d)",
            method,
            path,
            type(error).__name__,
            getattr(error, "code", None),
            getattr(error, "error_subcode", None),
            seconds,
            next_attempt,
            policy.max_attempts,
        )

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log_wait(error, state.upcoming_sleep, state.attempt_number + done + 1)

    def wait(state: tenacity.RetryCallState) -> float:
        return policy.wait_for(state.outcome.exception() if state.outcome else None, state.attempt_number + done)

    arguments: dict[str, Any] = {
        "retry": tenacity.retry_if_exception(policy.should_retry),
        "wait": wait,
        "stop": (
            tenacity.stop_after_attempt(policy.max_attempts - done) | tenacity.stop_before_delay(policy.max_total_wait)
        ),
        "before_sleep": log_retry,
        "reraise": True,
    }
    if failed_first is not None:
        first_wait = policy.wait_for(failed_first, 1)

        def wait_out_first_failure(state: tenacity.RetryCallState) -> None:
            if state.attempt_number == 1:
                log_wait(failed_first, first_wait, 2)
                state.retry_object.sleep(first_wait)  # type: ignore[attr-defined]

        arguments["before"] = wait_out_first_failure
    return arguments


def connection_error(exc: BaseException, *, request_sent: bool) -> GraphConnectionError:
    """Describe a transport failure without the URL's query (it may carry the proof)."""
    kind = type(exc).__name__
    where = "after the request was sent (it may have been applied)" if request_sent else "before the request was sent"
    return GraphConnectionError(f"{kind} {where}", request_sent=request_sent, excerpt=None)


def normalise_digits(text: str | None) -> str:
    """Digits of a displayed phone number, to compare ``+1 555-010-0001`` with ``15550100001``."""
    return "".join(ch for ch in (text or "") if ch.isdigit())
