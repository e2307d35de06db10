"""Asynchronous access to the phone-number endpoints, for triggers running in the triggerer."""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar, cast

# Imported with this module, which triggers import in a thread: slow on a busy triggerer, it must
# not be first imported on the event loop, in the middle of a call.
import aiohttp
from airflow.providers.common.compat.connection import get_async_connection
from airflow.providers.common.compat.sdk import BaseHook
from asgiref.sync import sync_to_async

from airflow_provider_whatsapp.exceptions import GraphConnectionError
from airflow_provider_whatsapp.hooks import calls
from airflow_provider_whatsapp.hooks.calls import LIST_PAGE_SIZE, GraphCall
from airflow_provider_whatsapp.hooks.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    mask_secret_value,
    settings_from_connection,
    shared_view_for,
)
from airflow_provider_whatsapp.hooks.driving import conversation_steps, graph_exchange
from airflow_provider_whatsapp.hooks.exchange import (
    GraphExchange,
    RawResponse,
    Send,
    Sleep,
)
from airflow_provider_whatsapp.hooks.graph import (
    USER_AGENT,
    GraphRequest,
    GraphRetryPolicy,
    GraphSettings,
    connection_error,
)
from airflow_provider_whatsapp.hooks.metrics import StatsObserver
from airflow_provider_whatsapp.hooks.shared_view import Share, run_share
from airflow_provider_whatsapp.hooks.usage import ConnectionKey

T = TypeVar("T")

TRIGGER_USER_AGENT = f"{USER_AGENT} (trigger)"
#: The onboarding trigger's calls, told apart from the status triggers' in Graph's request logs.
ONBOARDING_USER_AGENT = f"{USER_AGENT} (onboarding trigger)"
# Connections of the event loop's shared session.
ASYNC_POOL_SIZE = 20


class WhatsAppBusinessAsyncHook(BaseHook):
    """
    Asynchronous access to the phone-number endpoints, for triggers running in the triggerer.

    It drives the same endpoint conversations (:mod:`~airflow_provider_whatsapp.hooks.calls`)
    as :class:`~airflow_provider_whatsapp.hooks.whatsapp.WhatsAppBusinessHook`: requests are
    built, paced, retried, parsed and, after a failure that may have been applied, looked up by
    the same code, and paced by the same process-wide rate-limit usage. Status triggers only read
    (:meth:`get_phone_number`, :meth:`list_phone_numbers`); the onboarding trigger runs whole
    onboardings through :meth:`converse`. One pooled HTTP session is shared by every instance in
    an event loop, so a thousand triggers do not open a thousand connections.

    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business``.
    :param retry_policy: how to retry and pace calls; defaults to the connection's extras.
    :param sleep: the coroutine function used to wait.
    :param wait_out_budgets: seconds the policy is willing to wait for a spent budget at least
        (see :meth:`~airflow_provider_whatsapp.hooks.graph.GraphRetryPolicy.waiting_out`).
    :param mask_call_secrets: register the secrets a call carries (codes, PINs) with Airflow's
        masker before sending it. The onboarding trigger turns it off: it masks its one PIN
        itself, and each of its numbers' one-time codes lives only in one request body, never in
        a template, a log line or an event, where registering thousands of them would make the
        masker's pattern grow, and its cost, with every number the triggerer ever onboards.
    :param user_agent: the ``User-Agent`` of its calls, which tells a trigger's traffic apart in
        Graph's request logs.
    """

    conn_name_attr = "whatsapp_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "WhatsApp Business (async)"

    def __init__(
        self,
        whatsapp_conn_id: str = default_conn_name,
        *,
        retry_policy: GraphRetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        wait_out_budgets: float | None = None,
        mask_call_secrets: bool = True,
        user_agent: str = TRIGGER_USER_AGENT,
    ) -> None:
        super().__init__()
        self.whatsapp_conn_id = whatsapp_conn_id
        self._retry_policy = retry_policy
        self._wait_out_budgets = wait_out_budgets
        self._mask_call_secrets = mask_call_secrets
        self._user_agent = user_agent
        self._acquired: asyncio.Future[None] | None = None
        self._sleep = sleep or asyncio.sleep
        self._settings: GraphSettings | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(whatsapp_conn_id={self.whatsapp_conn_id!r})"

    async def asettings(self) -> GraphSettings:
        """The connection's settings, looked up once per hook (common-compat's ``get_async_connection``)."""
        if self._settings is None:
            conn = await get_async_connection(self.whatsapp_conn_id, hook=self)
            settings, policy = settings_from_connection(conn)
            self._retry_policy = self._retry_policy or policy
            if self._wait_out_budgets is not None:
                self._retry_policy = self._retry_policy.waiting_out(self._wait_out_budgets)
            self._settings = settings
        return self._settings

    async def connection_key(self) -> ConnectionKey:
        """Whose rate-limit budgets this hook's calls spend."""
        settings = await self.asettings()
        return ConnectionKey(settings.host, settings.app_fingerprint)

    async def __aenter__(self) -> WhatsAppBusinessAsyncHook:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Let go of the event loop's shared session; the last hook of the loop to let go closes it."""
        acquired, self._acquired = self._acquired, None
        if acquired is not None:
            await acquired
            await _SESSIONS.release()

    async def get_phone_number(
        self, phone_number_id: str, fields: str | list[str] | None = None, *, waba_id: str | None = None
    ) -> dict[str, Any]:
        """Read a phone-number node: ``GET /{phone_number_id}``; ``waba_id``, if known, paces it."""
        return await self.converse(calls.get_phone_number(phone_number_id, fields, waba_id=waba_id))

    async def list_phone_numbers(
        self, waba_id: str, fields: str | list[str] | None = None, limit: int = LIST_PAGE_SIZE
    ) -> list[dict[str, Any]]:
        """Every phone number of a WABA, all pages read: ``GET /{waba_id}/phone_numbers``."""
        return await self.converse(calls.list_phone_numbers(waba_id, fields, limit))

    async def converse(
        self, conversation: Generator[Any, Any, T], answer: Callable[[Any], Awaitable[Any]] | None = None
    ) -> T:
        """
        Drive a conversation (see :mod:`~airflow_provider_whatsapp.hooks.calls`) to its result.

        :param conversation: yields :class:`~airflow_provider_whatsapp.hooks.calls.GraphCall` s,
            each sent with the hook's retry and pacing policy (see
            :func:`~airflow_provider_whatsapp.hooks.driving.conversation_steps`).
        :param answer: answers whatever else the conversation yields (for example the onboarding
            conversation's need of a verification code).
        """
        settings = await self.asettings()
        connection = await self.connection_key()
        assert self._retry_policy is not None
        policy = self._retry_policy
        shared = shared_view_for(settings.budget_store)
        observer = StatsObserver(self.whatsapp_conn_id)

        def exchange_for(graph_call: GraphCall) -> GraphExchange:
            if self._mask_call_secrets:
                for secret in graph_call.secrets:
                    mask_secret_value(secret)
            if graph_call.note:
                self.log.info("%s", graph_call.note)
            # Tells trigger traffic apart in Graph's (and the sandbox's) request logs.
            return graph_exchange(
                settings,
                graph_call,
                policy=policy,
                connection=connection,
                log=self.log,
                user_agent=self._user_agent,
                shared=shared,
                observer=observer,
            )

        steps = conversation_steps(conversation, exchange_for)
        reply: Any = None
        try:
            while True:
                action = steps.send(reply)
                if isinstance(action, Send):
                    reply = await self._transport(action.request, settings)
                elif isinstance(action, Sleep):
                    await self._sleep(action.seconds)
                    reply = None
                elif isinstance(action, Share):
                    assert shared is not None
                    # Off the loop: a Variable goes through the triggerer's supervisor, Redis over a socket.
                    reply = await sync_to_async(run_share)(shared.backend, action)
                elif answer is not None:
                    reply = await answer(action)
                else:
                    raise TypeError(f"the conversation needs {type(action).__name__}, which only a graph call can be")
        except StopIteration as done:
            return cast(T, done.value)

    async def _transport(self, request: GraphRequest, settings: GraphSettings) -> RawResponse | GraphConnectionError:
        if self._acquired is None:
            # Set before the first await: the hook's concurrent first calls share one acquisition.
            self._acquired = asyncio.ensure_future(_SESSIONS.acquire())
        await asyncio.shield(self._acquired)
        session, proxy = _SESSIONS.session, _SESSIONS.proxy_for(settings.host)
        try:
            async with session.request(
                request.method,
                request.url_with_query,
                json=request.json_body,
                headers=request.headers,
                proxy=proxy,
                timeout=aiohttp.ClientTimeout(total=settings.timeout),
                allow_redirects=False,
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Refused, unresolvable or timed out while connecting: the request never left.
            sent = not isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
            return connection_error(exc, request_sent=sent)
        return RawResponse(response.status, response.headers, body)


class _LoopSessions:
    """One pooled ``aiohttp`` session per event loop, shared by every hook running in it.

    A triggerer runs a thousand triggers in one loop: they share one pool of connections instead
    of opening one each. The session is closed when the last hook using it lets go, so a loop
    that ends (a test's, ``airflow dags test``'s) leaves nothing open behind.
    """

    def __init__(self) -> None:
        # By the loop itself, held weakly: an ended loop's id() can come back for a new loop.
        self._entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = weakref.WeakKeyDictionary()
        self._proxies: dict[str, str | None] = {}

    @property
    def session(self) -> Any:
        return self._entries[asyncio.get_running_loop()][0]

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is None or entry[0].closed:
            # Loading a CA bundle into a TLS context is slow on a busy triggerer: once per process,
            # and off the loop that serves every other trigger.
            context = await asyncio.to_thread(_tls_context)
            entry = self._entries.get(loop)
            if entry is None or entry[0].closed:
                connector = aiohttp.TCPConnector(limit=ASYNC_POOL_SIZE, ssl=context)
                # No cookies, no environment: .netrc credentials would replace the token.
                session = aiohttp.ClientSession(
                    connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
                )
                entry = self._entries[loop] = [session, 0]
        entry[1] += 1

    async def release(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._entries[loop]
            await entry[0].close()

    def proxy_for(self, host: str) -> str | None:
        """The environment's proxy for the Graph host (``HTTPS_PROXY``, ``NO_PROXY``), read once per host."""
        if host not in self._proxies:
            import urllib.request
            from urllib.parse import urlsplit

            parts = urlsplit(host)
            bypass = urllib.request.proxy_bypass(parts.hostname or "")
            self._proxies[host] = None if bypass else urllib.request.getproxies().get(parts.scheme or "https")
        return self._proxies[host]


@functools.cache
def _tls_context() -> Any:
    """The TLS context of Graph calls: the CA bundle the environment names, as ``requests`` reads
    it, or ``True`` for aiohttp's own default context (which it makes once)."""
    import os
    import ssl

    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return ssl.create_default_context(cafile=bundle) if bundle else True


_SESSIONS = _LoopSessions()
