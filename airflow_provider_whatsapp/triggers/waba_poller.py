"""One status read per WABA per interval, shared by every status trigger of a triggerer process.

A display name in review can take hours and every read spends the WABA's budget (200 calls an
hour by default). Instead of each waiting trigger reading its own number, the triggers that wait on
numbers of the same (connection, WABA) subscribe to one :class:`WabaStatusPoller`, which lists the
WABA's numbers (``GET /{waba_id}/phone_numbers``, all pages) once per interval — the shortest
interval any subscriber asked for — and hands each subscriber its own node. The poller lives in the
triggerer's event loop and stops when its last subscriber is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from airflow_provider_whatsapp.exceptions import GraphAPIError, GraphPermanentError

log = logging.getLogger(__name__)

#: What a subscriber is handed after each list read: its node, or ``None`` when the WABA's list
#: no longer holds the number (the subscriber then reads it alone).
NodeOrMissing = dict[str, Any] | None


class _Subscription:
    def __init__(self, phone_number_id: str, fields: set[str], interval: float) -> None:
        self.phone_number_id = phone_number_id
        self.fields = fields
        self.interval = interval
        # The sensor read just before deferring; a node read sooner than one interval later
        # would only fire the trigger into Airflow's resume race.
        self.not_before = asyncio.get_running_loop().time() + interval
        self.updates: asyncio.Queue[NodeOrMissing] = asyncio.Queue(maxsize=1)

    def hand(self, node: NodeOrMissing, read_at: float) -> None:
        if read_at < self.not_before:
            return
        # Only the latest node matters to a waiting trigger: an unread older one is replaced.
        if self.updates.full():
            self.updates.get_nowait()
        self.updates.put_nowait(node)


class WabaStatusPoller:
    """
    Lists one WABA's numbers once per interval for every status trigger waiting on one of them.

    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business``.
    :param waba_id: the WABA whose numbers are listed.
    :param hook_factory: builds the async hook (one per poller).
    """

    # By the loop itself, not its id(): an ended loop's id() can come back for a new loop.
    _pollers: dict[tuple[asyncio.AbstractEventLoop, str, str], WabaStatusPoller] = {}

    def __init__(self, whatsapp_conn_id: str, waba_id: str, hook_factory: Callable[[], Any]) -> None:
        self.whatsapp_conn_id = whatsapp_conn_id
        self.waba_id = waba_id
        self._hook = hook_factory()
        self._subscriptions: set[_Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.reads = 0

    @classmethod
    def for_waba(cls, whatsapp_conn_id: str, waba_id: str, hook_factory: Callable[[], Any]) -> WabaStatusPoller:
        """The poller of this event loop for (connection, WABA), created on first use."""
        loop = asyncio.get_running_loop()
        for stale in [key for key in cls._pollers if key[0].is_closed()]:
            # Its loop ended without its last trigger unsubscribing (a test's, an aborted run's).
            del cls._pollers[stale]
        key = (loop, whatsapp_conn_id, waba_id)
        poller = cls._pollers.get(key)
        if poller is None:
            poller = cls._pollers[key] = cls(whatsapp_conn_id, waba_id, hook_factory)
        return poller

    @property
    def subscribers(self) -> int:
        """How many triggers wait on this poller."""
        return len(self._subscriptions)

    def subscribe(self, phone_number_id: str, fields: set[str], interval: float) -> _Subscription:
        """Start receiving ``phone_number_id``'s node after each list read."""
        subscription = _Subscription(phone_number_id, fields, interval)
        self._subscriptions.add(subscription)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"whatsapp-poller-{self.waba_id}")
        self._wake.set()  # a shorter interval may have arrived
        return subscription

    def unsubscribe(self, subscription: _Subscription) -> None:
        """Stop serving a trigger (it fired, was cancelled, or moved to another triggerer)."""
        self._subscriptions.discard(subscription)
        if not self._subscriptions:
            key = (asyncio.get_running_loop(), self.whatsapp_conn_id, self.waba_id)
            if self._pollers.get(key) is self:
                del self._pollers[key]
            if self._task is not None:
                self._task.cancel()

    async def _run(self) -> None:
        try:
            await self._poll()
        finally:
            await self._hook.aclose()

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        last_read = loop.time()
        while self._subscriptions:
            interval = min(subscription.interval for subscription in self._subscriptions)
            delay = last_read + interval - loop.time()
            if delay > 0:
                self._wake.clear()
                try:
                    # Not wait_for, which on Python 3.11 can swallow a cancellation.
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                    continue  # a new subscriber may want a shorter interval: recompute
                except TimeoutError:
                    pass
            if not self._subscriptions:
                return
            last_read = loop.time()
            await self._read_and_hand(last_read)

    async def _read_and_hand(self, read_at: float) -> None:
        subscriptions = list(self._subscriptions)
        fields = sorted({"id"}.union(*(subscription.fields for subscription in subscriptions)))
        try:
            self.reads += 1
            nodes = await self._hook.list_phone_numbers(self.waba_id, fields=fields)
        except GraphPermanentError as error:
            # Not something waiting cures (a token or permission): each trigger reads alone and
            # ends with the error, as a trigger without a WABA would.
            log.warning("Listing WABA %s failed for good (%s); triggers read alone", self.waba_id, error)
            for subscription in subscriptions:
                subscription.hand(None, read_at)
            return
        except GraphAPIError as error:
            # Throttled, 5xx, timeout after the policy's retries: every trigger keeps waiting.
            log.warning("Listing WABA %s failed (%s); triggers keep waiting", self.waba_id, error)
            return
        by_id = {str(node.get("id")): node for node in nodes}
        for subscription in subscriptions:
            subscription.hand(by_id.get(subscription.phone_number_id), read_at)
