"""Asynchronous, read-only access to phone numbers, for triggers running in the triggerer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from airflow.providers.common.compat.connection import get_async_connection
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import GraphConnectionError
from airflow_provider_whatsapp.hooks.connection import CONN_TYPE, DEFAULT_CONN_ID, settings_from_connection
from airflow_provider_whatsapp.hooks.exchange import GraphExchange, RawResponse, Reply, Send, Sleep
from airflow_provider_whatsapp.hooks.graph import (
    LIST_PAGE_SIZE,
    MAX_PAGES,
    USER_AGENT,
    GraphRequest,
    GraphRetryPolicy,
    GraphSettings,
    build_request,
    connection_error,
    list_params,
    next_page_cursor,
    page_nodes,
)
from airflow_provider_whatsapp.hooks.usage import USAGE_STORE, CallScope, ConnectionKey

TRIGGER_USER_AGENT = f"{USER_AGENT} (trigger)"
# Connections of the event loop's shared client, and requests admitted to it at once.
ASYNC_POOL_SIZE = 20


class WhatsAppBusinessAsyncHook(BaseHook):
    """
    Read-only, asynchronous access to phone numbers, for triggers running in the triggerer.

    It can only read: a trigger never changes anything on Graph. Requests are built, paced,
    retried and parsed by the same exchange core as :class:`.WhatsAppBusinessHook`, and paced by
    the same process-wide rate-limit usage. One pooled HTTP client is shared by every instance in
    an event loop, so a thousand triggers do not open a thousand connections.

    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business``.
    :param retry_policy: how to retry and pace calls; defaults to the connection's extras.
    :param sleep: the coroutine function used to wait.
    """

    conn_name_attr = "whatsapp_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(whatsapp_conn_id={self.whatsapp_conn_id!r})"

    async def asettings(self) -> GraphSettings:
        """The connection's settings, looked up once per hook (common-compat's ``get_async_connection``)."""
        if self._settings is None:
            conn = await get_async_connection(self.whatsapp_conn_id, hook=self)
            settings, policy = settings_from_connection(conn)
            self._retry_policy = self._retry_policy or policy
            self._settings = settings
        return self._settings

    async def connection_key(self) -> ConnectionKey:
        """Whose rate-limit budgets this hook's calls spend."""
        return ConnectionKey((await self.asettings()).host, self.whatsapp_conn_id)

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
            # Building the client loads the CA bundle into a TLS context, which is slow on a busy
            # triggerer: off the event loop that serves every other trigger.
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
        # httpx's pool rescans every queued request at each hand-over, which grows quadratically
        # with a thousand triggers queued on a few connections; queueing here keeps its queue short.
        loop_id = id(asyncio.get_running_loop())
        entry = cls._gates.get(loop_id)
        if entry is None or entry[0] is not client:
            entry = cls._gates[loop_id] = (client, asyncio.Semaphore(ASYNC_POOL_SIZE))
        return entry[1]

    async def get_phone_number(
        self, phone_number_id: str, fields: str | list[str] | None = None, *, waba_id: str | None = None
    ) -> dict[str, Any]:
        """Read a phone-number node: ``GET /{phone_number_id}``; ``waba_id``, if known, paces it."""
        node_id = validation.graph_id("phone_number_id", phone_number_id)
        params = {"fields": validation.fields_param(fields)}
        return await self._call(node_id, params, CallScope(waba_id=waba_id, phone_number_id=node_id))

    async def list_phone_numbers(
        self, waba_id: str, fields: str | list[str] | None = None, limit: int = LIST_PAGE_SIZE
    ) -> list[dict[str, Any]]:
        """Every phone number of a WABA, all pages read: ``GET /{waba_id}/phone_numbers``."""
        waba = validation.graph_id("waba_id", waba_id)
        params = list_params(fields, limit)
        key = await self.connection_key()
        nodes: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = await self._call(f"{waba}/phone_numbers", params, CallScope(waba_id=waba))
            for node in page_nodes(page):
                if isinstance(node.get("id"), str):
                    USAGE_STORE.learn_waba(key, node["id"], waba)
                nodes.append(node)
            cursor = next_page_cursor(page, seen)
            if cursor is None:
                break
            params["after"] = cursor
        return nodes

    async def _call(self, path: str, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        settings = await self.asettings()
        assert self._retry_policy is not None
        request = build_request(settings, "GET", path, params=params)
        # Tells trigger traffic apart in Graph's (and the sandbox's) request logs.
        request.headers["User-Agent"] = TRIGGER_USER_AGENT
        exchange = GraphExchange(
            request,
            policy=self._retry_policy,
            connection=await self.connection_key(),
            scope=scope,
            log=self.log,
        )
        steps = exchange.steps()
        reply: Reply = None
        try:
            while True:
                action = steps.send(reply)
                if isinstance(action, Send):
                    reply = await self._transport(action.request, settings.timeout)
                elif isinstance(action, Sleep):
                    await self._sleep(action.seconds)
                    reply = None
                else:  # pragma: no cover - reads are never reconciled
                    raise AssertionError(f"a read-only exchange asked for {action!r}")
        except StopIteration as done:
            result: dict[str, Any] = done.value
            return result

    async def _transport(self, request: GraphRequest, timeout: float) -> RawResponse | GraphConnectionError:
        import httpx

        client = await self.shared_client()
        try:
            async with self._gate(client):
                response = await client.request(
                    request.method, request.url_with_query, headers=request.headers, timeout=timeout
                )
        except httpx.HTTPError as exc:
            sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            return connection_error(exc, request_sent=sent)
        return RawResponse(response.status_code, response.headers, response.content)
