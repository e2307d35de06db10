"""The Graph protocol, free of any HTTP client: settings, request building, response parsing,
error classification and the retry and pacing policy.

The synchronous hook (``requests``) and the asynchronous hook (``aiohttp``) both use this module
through :mod:`~airflow_provider_whatsapp.hooks.exchange`, so the two paths cannot drift apart.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlencode

from airflow_provider_whatsapp import __version__, validation
from airflow_provider_whatsapp.exceptions import (
    EXCERPT_LENGTH,
    GraphAPIError,
    GraphBlockedError,
    GraphConnectionError,
    GraphPermanentError,
    GraphResponseError,
    GraphThrottledError,
    GraphTransientError,
    InvalidInputError,
    error_class_for,
)
from airflow_provider_whatsapp.hooks.usage import UsageReading, UsageReport, retry_after_header

DEFAULT_HOST = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v26.0"
DEFAULT_TIMEOUT = 30.0
USER_AGENT = f"airflow-provider-whatsapp/{__version__}"
REGISTER_BLOCK = timedelta(hours=72)
_QUERY_RE = re.compile(r"\?\S*")
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
    :param budget_store: where the deployment shares what it learns of Graph's budgets:
        ``airflow`` (Airflow Variables), ``process`` (nothing shared) or a ``redis://`` URL.
    """

    token: str
    host: str = DEFAULT_HOST
    api_version: str = DEFAULT_API_VERSION
    app_secret: str | None = None
    waba_id: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    budget_store: str = "process"

    def __repr__(self) -> str:
        # Secrets stay out of every repr, traceback and log line (a Redis URL may hold a password).
        return (
            f"GraphSettings(host={self.host!r}, api_version={self.api_version!r}, "
            f"waba_id={self.waba_id!r}, timeout={self.timeout!r}, token=***, "
            f"app_secret={'***' if self.app_secret else None}, budget_store={self.budget_store.split(':')[0]!r})"
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
        store = validation.budget_store(extra["budget_store"]) if extra.get("budget_store") else "process"
        return cls(
            token=str(password).strip(),
            host=checked_host,
            api_version=version,
            app_secret=str(app_secret) if app_secret else None,
            waba_id=waba_id,
            timeout=timeout,
            budget_store=store,
        )

    @functools.cached_property
    def app_fingerprint(self) -> str:
        """Which app's budgets the token spends, without the token: a short SHA-256 of it."""
        return hashlib.sha256(self.token.encode()).hexdigest()[:16]

    @functools.cached_property
    def appsecret_proof(self) -> str | None:
        """Hex HMAC-SHA256 of the token keyed with the app secret, as Graph requires (computed once)."""
        if not self.app_secret:
            return None
        return hmac.new(self.app_secret.encode(), self.token.encode(), hashlib.sha256).hexdigest()


class GraphRequest(NamedTuple):
    """
    A Graph call, built once and sent by whichever client.

    A tuple rather than a dataclass: one is built on every call, and a frozen dataclass's
    ``__init__`` costs several times as much.

    :param method: ``GET`` or ``POST``.
    :param path: the path after the version.
    :param url: the full URL without the query.
    :param params: the query parameters, already strings.
    :param json_body: the JSON body of a POST.
    :param headers: the headers, including the token: never part of the ``repr``.
    """

    method: str
    path: str
    url: str
    params: dict[str, str]
    json_body: dict[str, Any] | None
    headers: dict[str, str]

    def __repr__(self) -> str:
        return f"GraphRequest(method={self.method!r}, path={self.path!r}, url={self.url!r}, params={self.params!r})"

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
    path = path.lstrip("/")
    return GraphRequest(
        method=method,
        path=path,
        url=f"{settings.host}/{settings.api_version}/{path}",
        params=query,
        json_body=dict(body) if body is not None else None,
        headers=headers,
    )


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- responses


def retry_after_seconds(headers: Mapping[str, str], usage: UsageReport | None) -> float | None:
    """The wait Graph asked for: ``Retry-After`` first, then the usage headers' regain time."""
    seconds = retry_after_header(headers)
    if seconds > 0:
        return seconds
    if usage is not None and usage.regain_seconds > 0:
        return usage.regain_seconds
    return None


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
    usage: UsageReport | None = None,
) -> dict[str, Any]:
    """Return the JSON object of a successful answer, or raise the right :class:`.GraphAPIError`."""
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
    usage: UsageReport | None = None,
) -> GraphAPIError:
    """Build the error of the class :func:`~airflow_provider_whatsapp.exceptions.error_class_for`
    gives for a Graph ``error`` object."""
    code = _int_or_none(error.get("code"))
    subcode = _int_or_none(error.get("error_subcode"))
    is_transient = error.get("is_transient") in (True, "true", "True")
    details = _details(error.get("error_data"))
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
    error_class = error_class_for(code, subcode, is_transient=is_transient, http_status=status)
    if issubclass(error_class, GraphBlockedError):
        return error_class(message, blocked_until=_blocked_until(code, kwargs), **kwargs)
    return error_class(message, **kwargs)


def _details(data: Any) -> str | None:
    # error_data comes as an object, a plain string, or an object encoded as a JSON string.
    if isinstance(data, str):
        try:
            decoded = json.loads(data)
        except (ValueError, RecursionError):
            return _text_or_none(data)
        data = decoded if isinstance(decoded, dict) else data
    if isinstance(data, dict):
        return _text_or_none(data.get("details"))
    return _text_or_none(data) if data not in (None, "") else None


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
    :param defer_wait_over: in an operator, a wait for a budget longer than this defers the task to
        the triggerer until the budget is regained, instead of sleeping in its worker slot.
    """

    max_attempts: int = 5
    max_total_wait: float = 900.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    max_throttle_wait: float = 600.0
    usage_threshold: float = 90.0
    slowdown_wait: float = 1.0
    exhausted_wait: float = 60.0
    defer_wait_over: float = 30.0

    def __post_init__(self) -> None:
        if int(self.max_attempts) != self.max_attempts or self.max_attempts < 1:
            raise InvalidInputError("max_attempts", "must be a whole number of at least 1")
        for name in (
            "max_total_wait",
            "backoff_initial",
            "backoff_max",
            "max_throttle_wait",
            "exhausted_wait",
            "defer_wait_over",
        ):
            validation.positive_number(name, getattr(self, name))
        if not 0 < self.usage_threshold <= 100:
            raise InvalidInputError("usage_threshold", "must be a percentage above 0 and at most 100")
        if self.slowdown_wait < 0:
            raise InvalidInputError("slowdown_wait", "must not be negative")

    def waiting_out(self, seconds: float) -> GraphRetryPolicy:
        """This policy, but willing to wait at least ``seconds`` for a spent budget to be regained.

        For a trigger: waiting in the triggerer holds no worker slot, so Graph's own regain time
        (up to an hour) is waited out rather than given up on.
        """
        throttle_wait = max(self.max_throttle_wait, seconds)
        return replace(
            self, max_throttle_wait=throttle_wait, max_total_wait=max(self.max_total_wait, 2 * throttle_wait)
        )

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
        if isinstance(error, GraphThrottledError):
            # Throttled without a time: a blind exponential would hammer a budget that is spent.
            return min(self.exhausted_wait, self.max_throttle_wait)
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, attempt - 1))
        # Full jitter on the upper half keeps many mapped tasks from retrying in lockstep.
        return base / 2 + random.uniform(0, base / 2)

    def pacing_wait(self, reading: UsageReading | None, now: float | None = None) -> float:
        """How long to hold the next call back, given the latest usage Graph reported for its budget."""
        if reading is None or reading.percent < self.usage_threshold:
            return 0.0
        elapsed = (time.monotonic() if now is None else now) - reading.observed_at
        if reading.percent >= 100:
            wanted = reading.regain_seconds if reading.regain_seconds > 0 else self.exhausted_wait
            return max(0.0, min(wanted, self.max_throttle_wait) - elapsed)
        return max(0.0, min(self.slowdown_wait, self.max_throttle_wait) - elapsed)


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


def connection_error(exc: BaseException, *, request_sent: bool) -> GraphConnectionError:
    """Describe a transport failure without the URL's query (it may carry the proof)."""
    kind = type(exc).__name__
    where = "after the request was sent (it may have been applied)" if request_sent else "before the request was sent"
    cause = _QUERY_RE.sub("?...", str(exc))[:300]
    return GraphConnectionError(f"{kind} {where}: {cause}", request_sent=request_sent, excerpt=None)


def normalise_digits(text: str | None) -> str:
    """Digits of a displayed phone number, to compare ``+1 555-010-0001`` with ``15550100001``."""
    return "".join(ch for ch in (text or "") if ch.isdigit())
