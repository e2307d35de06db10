"""Hook for the WhatsApp Business phone-number endpoints of Meta's Graph API."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import requests
import tenacity
from airflow.providers.common.compat.connection import get_async_connection
from airflow.providers.common.compat.sdk import BaseHook
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import (
    GraphAPIError,
    GraphConnectionError,
    GraphPermanentError,
    GraphResponseError,
    GraphThrottledError,
    GraphTransientError,
    InvalidInputError,
)
from airflow_provider_whatsapp.hooks.graph import (
    USER_AGENT,
    GraphRequest,
    GraphRetryPolicy,
    GraphSettings,
    RateLimitUsage,
    build_request,
    connection_error,
    normalise_digits,
    parse_response,
    parse_usage,
    retry_arguments,
    retry_policy_from_extra,
)

TRIGGER_USER_AGENT = f"{USER_AGENT} (trigger)"
# Graph's answer to a code requested again too soon.
CODE_REQUESTED_TOO_OFTEN = 136024
# Nodes listed per page when searching a WABA; Graph's maximum.
LIST_PAGE_SIZE = 100
# A cursor loop in a misbehaving proxy must not spin forever: 10,000 pages is a million numbers.
MAX_PAGES = 10_000
_QUERY_RE = re.compile(r"\?\S*")
# Connections of the event loop's shared client, and requests admitted to it at once.
ASYNC_POOL_SIZE = 20


def _sent_before_failure(exc: requests.RequestException) -> bool:
    """Whether a transport error happened after the request could have reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError)):
            return False
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return True


# Latest usage per Graph host and connection, for every hook in this process (see ``usage``).
_LATEST_USAGE: dict[str, RateLimitUsage] = {}


def _may_have_been_applied(error: GraphAPIError) -> bool:
    """A POST that failed this way may still have changed state on Graph's side."""
    if isinstance(error, GraphConnectionError):
        return error.request_sent
    if isinstance(error, GraphThrottledError):
        return False
    return isinstance(error, (GraphResponseError, GraphTransientError))


class WhatsAppBusinessHook(BaseHook):
    """
    Talk to the WhatsApp Business phone-number endpoints of Meta's Graph API.

    The connection holds the access token in ``password``; ``host`` defaults to
    ``https://graph.facebook.com``; extras: ``api_version`` (``vNN.N``, default ``v26.0``),
    ``app_secret`` (signs every call with ``appsecret_proof``), ``waba_id`` (default WhatsApp
    Business Account) and ``timeout`` (seconds). Any field of :class:`GraphRetryPolicy` may also be set
    as an extra (for example ``max_attempts`` or ``usage_threshold``).

    Transient errors, 5xx and connection failures are retried with exponential backoff and
    jitter; throttles wait the time Graph announced; permanent errors are raised at once. A POST
    that failed in a way that may have been applied is reconciled (looked up) before it is sent
    again, so a retry never creates a second number.

    :param whatsapp_conn_id: the Airflow connection to use.
    :param retry_policy: how to retry and pace calls; defaults to the connection's extras, then
        to :class:`GraphRetryPolicy` defaults.
    :param sleep: the function used to wait (tests and benchmarks may pass their own).
    """

    conn_name_attr = "whatsapp_conn_id"
    default_conn_name = "whatsapp_default"
    conn_type = "whatsapp_business"
    hook_name = "WhatsApp Business"

    def __init__(
        self,
        whatsapp_conn_id: str = default_conn_name,
        *,
        retry_policy: GraphRetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        logger_name: str | None = None,
    ) -> None:
        super().__init__(logger_name=logger_name)
        self.whatsapp_conn_id = whatsapp_conn_id
        self._retry_policy = retry_policy
        self._sleep = sleep
        self._settings: GraphSettings | None = None
        self._session: requests.Session | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(whatsapp_conn_id={self.whatsapp_conn_id!r})"

    @property
    def usage(self) -> RateLimitUsage | None:
        """The latest rate-limit usage Graph reported for this connection.

        Shared by every hook of the process on the same host and connection: each task builds
        its own hook, and a fresh task's first call must already be paced by what the previous
        task's last answer said.
        """
        key = self._usage_key()
        return None if key is None else _LATEST_USAGE.get(key)

    @usage.setter
    def usage(self, value: RateLimitUsage | None) -> None:
        key = self._usage_key()
        if key is None:
            return
        if value is None:
            _LATEST_USAGE.pop(key, None)
        else:
            _LATEST_USAGE[key] = value

    def _usage_key(self) -> str | None:
        return None if self._settings is None else f"{self._settings.host}|{self.whatsapp_conn_id}"

    # ------------------------------------------------------------------ connection

    @property
    def settings(self) -> GraphSettings:
        """The connection's settings, looked up once per hook on first use."""
        if self._settings is None:
            settings, policy = _settings_from(self.get_connection(self.whatsapp_conn_id))
            self._retry_policy = self._retry_policy or policy
            self._settings = settings
        return self._settings

    @property
    def retry_policy(self) -> GraphRetryPolicy:
        """The retry and pacing policy in force."""
        if self._retry_policy is None:
            _ = self.settings
        assert self._retry_policy is not None
        return self._retry_policy

    @property
    def default_waba_id(self) -> str | None:
        """The connection's ``waba_id`` extra, if any."""
        return self.settings.waba_id

    def get_conn(self) -> requests.Session:
        """Return the hook's one ``requests.Session``, reused for every call."""
        if self._session is None:
            self._session = requests.Session()
        return self._session

    def close(self) -> None:
        """Close the session's pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # ------------------------------------------------------------------ transport

    def _send_once(self, request: GraphRequest) -> dict[str, Any]:
        self._pace()
        try:
            response = self.get_conn().request(
                request.method,
                request.url_with_query,
                json=request.json_body,
                headers=request.headers,
                timeout=self.settings.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            error = connection_error(exc, request_sent=_sent_before_failure(exc))
            error.args = (f"{error.args[0]}: {_QUERY_RE.sub('?...', str(exc))[:300]}",)
            raise error from None
        usage = parse_usage(response.headers)
        if usage is not None:
            self.usage = usage
        return parse_response(response.status_code, response.headers, response.content, usage)

    def _pace(self) -> None:
        wait = self.retry_policy.pacing_wait(self.usage)
        if wait <= 0:
            return
        assert self.usage is not None
        self.log.info(
            "Rate-limit usage at %.0f%% (threshold %.0f%%): holding the next Graph call for %.2fs",
            self.usage.percent,
            self.retry_policy.usage_threshold,
            wait,
        )
        self._sleep(wait)
        if self.usage.percent >= 100:
            # The window Graph announced is over; the next response tells the new usage.
            self.usage = None

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        reconcile: Callable[[], dict[str, Any] | None] | None = None,
        accept_after_uncertain: Callable[[GraphAPIError], bool] | None = None,
    ) -> dict[str, Any]:
        """
        Send one Graph call with the hook's retry policy and return its JSON object.

        :param method: ``GET`` or ``POST``.
        :param path: the path after the version, for example ``123/phone_numbers``.
        :param params: query parameters (``fields``, ``limit``, ...).
        :param body: the JSON body of a POST.
        :param reconcile: for a POST that is not idempotent: called before sending again after a
            failure that may have been applied; a result it returns is taken as the call's result.
        :param accept_after_uncertain: for a POST whose effect cannot be read back: an error
            answered after a failure that may have been applied, that shows it was
            (``{"success": True}`` is returned instead).
        """
        request = build_request(self.settings, method, path, params=params, body=body)
        policy = self.retry_policy
        uncertain = False

        def attempt() -> dict[str, Any]:
            nonlocal uncertain
            if uncertain and reconcile is not None:
                found = reconcile()
                if found is not None:
                    self.log.info("Graph call %s %s had been applied before the failure; not sent again", method, path)
                    return found
            try:
                return self._send_once(request)
            except GraphAPIError as error:
                if uncertain and accept_after_uncertain is not None and accept_after_uncertain(error):
                    self.log.info("Graph call %s %s had been applied before the failure", method, path)
                    return {"success": True}
                if method != "GET" and _may_have_been_applied(error):
                    uncertain = True
                raise

        try:
            # Most calls succeed at once: tenacity's bookkeeping (a third of the hook's own cost
            # per call) is only paid when a retry is due.
            return attempt()
        except GraphAPIError as error:
            if policy.max_attempts < 2 or not policy.should_retry(error):
                raise
            failed_first = error
        retrying = tenacity.Retrying(
            sleep=self._sleep, **retry_arguments(policy, self.log, method, path, failed_first=failed_first)
        )
        return retrying(attempt)

    # ------------------------------------------------------------------ phone numbers

    def create_phone_number(
        self,
        waba_id: str,
        cc: str,
        phone_number: str,
        verified_name: str | None = None,
        migrate_phone_number: bool = False,
        preverified_id: str | None = None,
        fields: str | list[str] | None = None,
    ) -> dict[str, Any]:
        """
        Create a phone number on a WhatsApp Business Account: ``POST /{waba_id}/phone_numbers``.

        Returns Graph's answer: ``{"id": ...}``, plus the requested ``fields`` of the new node
        (read-after-write). A failure that may have been applied is looked up before retrying.
        """
        waba = validation.graph_id("waba_id", waba_id)
        country = validation.country_code(cc)
        number = validation.national_number(phone_number, country)
        name = validation.verified_name(verified_name)
        migrate = validation.boolean("migrate_phone_number", migrate_phone_number)
        preverified = validation.graph_id("preverified_id", preverified_id) if preverified_id else None
        wanted = validation.fields_param(fields)
        body: dict[str, Any] = {"cc": country, "phone_number": number}
        if name is not None:
            body["verified_name"] = name
        if migrate:
            body["migrate_phone_number"] = True
        if preverified:
            body["preverified_id"] = preverified
        return self.call(
            "POST",
            f"{waba}/phone_numbers",
            params={"fields": wanted},
            body=body,
            reconcile=lambda: self.find_phone_number(waba, country, number, fields=wanted),
        )

    def get_phone_number(self, phone_number_id: str, fields: str | list[str] | None = None) -> dict[str, Any]:
        """Read a phone-number node: ``GET /{phone_number_id}``."""
        node_id = validation.graph_id("phone_number_id", phone_number_id)
        return self.call("GET", node_id, params={"fields": validation.fields_param(fields)})

    def list_phone_numbers(
        self, waba_id: str, fields: str | list[str] | None = None, limit: int = LIST_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Yield every phone number of a WABA, following the cursors of every page."""
        waba = validation.graph_id("waba_id", waba_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_PAGE_SIZE:
            raise InvalidInputError("limit", f"must be a whole number from 1 to {LIST_PAGE_SIZE}")
        params: dict[str, Any] = {"fields": validation.fields_param(fields), "limit": limit}
        seen_cursors: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self.call("GET", f"{waba}/phone_numbers", params=params)
            data = page.get("data")
            if not isinstance(data, list):
                raise GraphResponseError("A phone_numbers page had no data list", excerpt=str(page)[:200])
            yield from (node for node in data if isinstance(node, dict))
            paging = page.get("paging")
            paging = paging if isinstance(paging, dict) else {}
            cursors = paging.get("cursors")
            cursor = cursors.get("after") if isinstance(cursors, dict) else None
            # Follow the cursor, not paging.next: Graph's next URL carries the token.
            if not paging.get("next") or not cursor or cursor in seen_cursors:
                return
            seen_cursors.add(cursor)
            params["after"] = cursor

    def find_phone_number(
        self, waba_id: str, cc: str, phone_number: str, fields: str | list[str] | None = None
    ) -> dict[str, Any] | None:
        """Return the WABA's node for ``cc`` + ``phone_number``, or ``None`` when it has none."""
        country = validation.country_code(cc)
        wanted_digits = country + validation.national_number(phone_number, country)
        names = {"id", "display_phone_number"}
        extra = validation.fields_param(fields)
        if extra:
            names.update(extra.split(","))
        for node in self.list_phone_numbers(waba_id, fields=sorted(names)):
            if normalise_digits(node.get("display_phone_number")) == wanted_digits:
                return node
        return None

    # ------------------------------------------------------------------ onboarding lifecycle

    def request_verification_code(
        self, phone_number_id: str, code_method: str = "SMS", language: str = "en_US"
    ) -> dict[str, Any]:
        """
        Ask Graph to send a verification code: ``POST /{phone_number_id}/request_code``.

        After a failure that may have been applied, Graph's "code requested too often" answer
        (136024) means the first request went through, and counts as success.
        """
        node_id = validation.graph_id("phone_number_id", phone_number_id)
        body = {"code_method": validation.code_method(code_method), "language": validation.language(language)}
        return self.call(
            "POST",
            f"{node_id}/request_code",
            body=body,
            accept_after_uncertain=lambda error: error.code == CODE_REQUESTED_TOO_OFTEN,
        )

    def verify_code(self, phone_number_id: str, code: str) -> dict[str, Any]:
        """Submit the verification code: ``POST /{phone_number_id}/verify_code``."""
        node_id = validation.graph_id("phone_number_id", phone_number_id)
        checked = validation.six_digits("code", code)
        _mask_value(checked)
        return self.call(
            "POST",
            f"{node_id}/verify_code",
            body={"code": checked},
            reconcile=lambda: self._success_if(node_id, "code_verification_status", "VERIFIED"),
        )

    def register_phone_number(
        self, phone_number_id: str, pin: str, data_localization_region: str | None = None
    ) -> dict[str, Any]:
        """
        Register the number for Cloud API messaging: ``POST /{phone_number_id}/register``.

        Safe to retry: a number that is already ``CONNECTED`` is not registered again (which
        would spend one of the 10 register calls Graph allows per 72 hours); its two-step PIN is
        set to ``pin`` instead, so the outcome is the same. The 72-hour block (133016) raises
        :class:`GraphBlockedError` at once, saying when the block ends.
        """
        node_id = validation.graph_id("phone_number_id", phone_number_id)
        checked_pin = validation.six_digits("pin", pin)
        region = validation.region(data_localization_region)
        _mask_value(checked_pin)
        if self.get_phone_number(node_id, fields="status").get("status") == "CONNECTED":
            self.log.info("Phone number %s is already registered; setting its PIN instead", node_id)
            return self.set_two_step_pin(node_id, checked_pin)
        body: dict[str, Any] = {"messaging_product": "whatsapp", "pin": checked_pin}
        if region:
            body["data_localization_region"] = region
        return self.call(
            "POST",
            f"{node_id}/register",
            body=body,
            reconcile=lambda: self._success_if(node_id, "status", "CONNECTED"),
        )

    def set_two_step_pin(self, phone_number_id: str, pin: str) -> dict[str, Any]:
        """Set the two-step verification PIN: ``POST /{phone_number_id}`` (idempotent)."""
        node_id = validation.graph_id("phone_number_id", phone_number_id)
        checked_pin = validation.six_digits("pin", pin)
        _mask_value(checked_pin)
        return self.call("POST", node_id, body={"pin": checked_pin})

    def deregister_phone_number(self, phone_number_id: str) -> dict[str, Any]:
        """Deregister the number from Cloud API: ``POST /{phone_number_id}/deregister``."""
        node_id = validation.graph_id("phone_number_id", phone_number_id)
        return self.call(
            "POST",
            f"{node_id}/deregister",
            reconcile=lambda: self._success_if(node_id, "status", "DISCONNECTED"),
        )

    def _success_if(self, phone_number_id: str, field: str, value: str) -> dict[str, Any] | None:
        node = self.get_phone_number(phone_number_id, fields=field)
        return {"success": True} if node.get(field) == value else None

    def test_connection(self) -> tuple[bool, str]:
        """Check the token with a read-only call (the WABA when the connection names one)."""
        try:
            settings = self.settings
            if settings.waba_id:
                node = self.call("GET", settings.waba_id, params={"fields": "id,name"})
                return True, (
                    f"Connected to WhatsApp Business Account {node.get('name', '')} ({node.get('id')}) "
                    f"with Graph {settings.api_version}"
                )
            node = self.call("GET", "me", params={"fields": "id,name"})
            return True, f"Connected as {node.get('name', '')} ({node.get('id')}) with Graph {settings.api_version}"
        except GraphPermanentError as error:
            return False, str(error)
        except Exception as error:
            return False, f"{type(error).__name__}: {error}"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Field behaviour of the connection form (also declared in the provider info)."""
        from airflow_provider_whatsapp.get_provider_info import CONNECTION_UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": CONNECTION_UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": CONNECTION_UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": CONNECTION_UI_FIELD_BEHAVIOUR["placeholders"],
        }


def _settings_from(conn: Any) -> tuple[GraphSettings, GraphRetryPolicy]:
    """Settings and retry policy of an Airflow connection, with its secrets masked."""
    extra = conn.extra_dejson if conn.extra else {}
    settings = GraphSettings.from_connection(conn.password, _host_of(conn.schema, conn.host), extra)
    # Airflow masks the password already; the app secret and the proof derived from the token
    # are ours to register with the masker.
    _mask_value(settings.token)
    if settings.app_secret:
        _mask_value(settings.app_secret)
        _mask_value(settings.appsecret_proof or "")
    return settings, retry_policy_from_extra(extra)


def _mask_value(secret: str) -> None:
    # Registered before use, so that no later log line can show it.
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(secret)


def _host_of(schema: str | None, host: str | None) -> str | None:
    if host and "://" not in host and schema in ("http", "https"):
        return f"{schema}://{host}"
    return host


class WhatsAppBusinessAsyncHook(BaseHook):
    """
    Read-only, asynchronous access to phone numbers, for triggers running in the triggerer.

    It can only read: a trigger never changes anything on Graph. Requests are built, paced,
    retried and parsed by the same code as :class:`WhatsAppBusinessHook`. One pooled HTTP client
    is shared by every instance in an event loop, so a thousand triggers do not open a thousand
    connections.

    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business``.
    :param retry_policy: how to retry and pace calls; defaults to the connection's extras.
    :param sleep: the coroutine function used to wait.
    """

    conn_name_attr = "whatsapp_conn_id"
    default_conn_name = "whatsapp_default"
    conn_type = "whatsapp_business"
    hook_name = "WhatsApp Business (async)"

    _clients: dict[int, Any] = {}
    _gates: dict[int, tuple[Any, asyncio.Semaphore]] = {}

    def __init__(
        self,
        whatsapp_conn_id: str = default_conn_name,
        *,
        retry_policy: GraphRetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.whatsapp_conn_id = whatsapp_conn_id
        self._retry_policy = retry_policy
        self._sleep = sleep or asyncio.sleep
        self._settings: GraphSettings | None = None
        self.usage: RateLimitUsage | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(whatsapp_conn_id={self.whatsapp_conn_id!r})"

    async def asettings(self) -> GraphSettings:
        """The connection's settings, looked up once per hook."""
        if self._settings is None:
            settings, policy = _settings_from(await get_async_connection(self.whatsapp_conn_id, hook=self))
            self._retry_policy = self._retry_policy or policy
            self._settings = settings
        return self._settings

    @staticmethod
    def _new_client() -> Any:
        import httpx

        return httpx.AsyncClient(
            limits=httpx.Limits(max_connections=ASYNC_POOL_SIZE, max_keepalive_connections=ASYNC_POOL_SIZE)
        )

    @classmethod
    async def shared_client(cls) -> Any:
        """The event loop's pooled ``httpx.AsyncClient``."""
        loop_id = id(asyncio.get_running_loop())
        client = cls._clients.get(loop_id)
        if client is None or client.is_closed:
            # Building the client loads the CA bundle into a TLS context (tens of milliseconds,
            # far more on a busy triggerer): off the event loop that serves every other trigger.
            built = await asyncio.to_thread(cls._new_client)
            client = cls._clients.get(loop_id)
            if client is None or client.is_closed:
                client = cls._clients[loop_id] = built
            else:  # another trigger of this loop built one meanwhile
                await built.aclose()
        return client

    @classmethod
    def _gate(cls, client: Any) -> asyncio.Semaphore:
        """Admits as many requests to ``client`` as it has connections; the rest queue here."""
        # httpx's pool rescans every queued request at each hand-over: with a thousand triggers
        # waiting on 20 connections that grows quadratically (+35 % CPU per poll at 1,000,
        # measured by benchmarks/bench_triggers.py). Queueing here keeps its own queue empty.
        loop_id = id(asyncio.get_running_loop())
        entry = cls._gates.get(loop_id)
        if entry is None or entry[0] is not client:
            entry = cls._gates[loop_id] = (client, asyncio.Semaphore(ASYNC_POOL_SIZE))
        return entry[1]

    async def get_phone_number(self, phone_number_id: str, fields: str | list[str] | None = None) -> dict[str, Any]:
        """Read a phone-number node: ``GET /{phone_number_id}``."""
        node_id = validation.graph_id("phone_number_id", phone_number_id)
        settings = await self.asettings()
        assert self._retry_policy is not None
        request = build_request(settings, "GET", node_id, params={"fields": validation.fields_param(fields)})
        # Tells trigger traffic apart in Graph's (and the sandbox's) request logs.
        request.headers["User-Agent"] = TRIGGER_USER_AGENT
        retrying = tenacity.AsyncRetrying(
            sleep=self._sleep, **retry_arguments(self._retry_policy, self.log, "GET", node_id)
        )
        async for attempt in retrying:
            with attempt:
                return await self._send_once(request, settings.timeout)
        raise AssertionError("tenacity ends with a result or an error")  # pragma: no cover

    async def _send_once(self, request: GraphRequest, timeout: float) -> dict[str, Any]:
        import httpx

        assert self._retry_policy is not None
        wait = self._retry_policy.pacing_wait(self.usage)
        if wait > 0:
            await self._sleep(wait)
        client = await self.shared_client()
        try:
            async with self._gate(client):
                response = await client.request(
                    request.method, request.url_with_query, headers=request.headers, timeout=timeout
                )
        except httpx.HTTPError as exc:
            sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            raise connection_error(exc, request_sent=sent) from None
        usage = parse_usage(response.headers)
        if usage is not None:
            self.usage = usage
        return parse_response(response.status_code, response.headers, response.content, usage)
