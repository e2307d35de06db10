"""Trigger that waits, in the triggerer, for a phone number to reach a target state."""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_whatsapp.status import check_status, describe, fields_to_read


class PhoneNumberStatusTrigger(BaseTrigger):
    """
    Poll a phone number asynchronously until its fields match a target, then fire one event.

    Only reads; it serializes the connection ID and plain values, never the token. With a
    ``waba_id``, every trigger of the triggerer process waiting on a number of that WABA is served
    by one shared read of the WABA's list per interval
    (:class:`~airflow_provider_whatsapp.triggers.waba_poller.WabaStatusPoller`); a number missing
    from the list, or a trigger without a WABA, is read alone (``GET /{phone_number_id}``). The
    first read waits one ``poke_interval``: the sensor read just before deferring. The event's
    ``status`` is ``success``, ``failed`` (a terminal bad state), ``timeout`` or ``error`` (a
    Graph error that retries did not cure).

    :param phone_number_id: the phone-number ID to watch.
    :param target: node field to wanted value(s), e.g. ``{"status": ["CONNECTED"]}``.
    :param failure_states: node field to states that end the wait as a failure.
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business``.
    :param poke_interval: seconds between reads.
    :param deadline: ``time.time()`` after which the trigger gives up, or ``None``.
    :param waba_id: the number's WABA, to share one list read per interval with the other
        triggers waiting on that WABA; ``None`` reads the number alone.
    """

    def __init__(
        self,
        *,
        phone_number_id: str,
        target: Mapping[str, list[str]],
        failure_states: Mapping[str, list[str]],
        whatsapp_conn_id: str = "whatsapp_default",
        poke_interval: float = 60.0,
        deadline: float | None = None,
        waba_id: str | None = None,
    ) -> None:
        super().__init__()
        self.phone_number_id = phone_number_id
        self.target = {name: list(values) for name, values in target.items()}
        self.failure_states = {name: list(values) for name, values in failure_states.items()}
        self.whatsapp_conn_id = whatsapp_conn_id
        self.poke_interval = poke_interval
        self.deadline = deadline
        self.waba_id = waba_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(phone_number_id={self.phone_number_id!r}, target={self.target!r}, "
            f"waba_id={self.waba_id!r}, whatsapp_conn_id={self.whatsapp_conn_id!r})"
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "phone_number_id": self.phone_number_id,
                "target": self.target,
                "failure_states": self.failure_states,
                "whatsapp_conn_id": self.whatsapp_conn_id,
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
                "waba_id": self.waba_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_whatsapp.exceptions import GraphAPIError
        from airflow_provider_whatsapp.triggers.waba_poller import WabaStatusPoller

        # The hook's module pulls in aiohttp (slow on a busy triggerer): imported in a thread, so the
        # event loop running every other trigger is not blocked by the first of ours.
        hooks = await asyncio.to_thread(importlib.import_module, "airflow_provider_whatsapp.hooks.whatsapp_async")

        def new_hook() -> Any:
            return hooks.WhatsAppBusinessAsyncHook(whatsapp_conn_id=self.whatsapp_conn_id)

        # Built only for a number read alone: the WABA's poller has a hook of its own.
        hook = None
        fields = fields_to_read(self.target, self.failure_states)
        poller = None
        if self.waba_id:
            poller = WabaStatusPoller.for_waba(self.whatsapp_conn_id, self.waba_id, new_hook)
            subscription = poller.subscribe(self.phone_number_id, set(fields.split(",")), self.poke_interval)
        try:
            node: dict[str, Any] | None = None
            while True:
                if poller is not None:
                    # The WABA's poller hands over this number's node after each shared read.
                    try:
                        # Not wait_for, which on Python 3.11 can swallow the triggerer's cancel.
                        async with asyncio.timeout(None if self.deadline is None else self._time_left()):
                            node = await subscription.updates.get()
                    except TimeoutError:
                        yield self._timeout_event(node)
                        return
                else:
                    # The sensor read just before deferring: the first read waits one interval.
                    if self._time_left() < self.poke_interval:
                        yield self._timeout_event(node)
                        return
                    await asyncio.sleep(self.poke_interval)
                    node = None
                if node is None:
                    # No WABA, or the number is no longer in its WABA's list: read it alone.
                    hook = hook or new_hook()
                    try:
                        node = await hook.get_phone_number(self.phone_number_id, fields=fields, waba_id=self.waba_id)
                    except GraphAPIError as error:
                        yield TriggerEvent({"status": "error", "message": str(error), "error": error.to_dict()})
                        return
                check = check_status(node, self.target, self.failure_states)
                if check.failure:
                    yield TriggerEvent({"status": "failed", "message": check.failure, "node": check.node})
                    return
                if check.met:
                    yield TriggerEvent({"status": "success", "node": check.node})
                    return
                self.log.info("Phone number %s: %s", self.phone_number_id, describe(node, self.target))
        finally:
            if poller is not None:
                poller.unsubscribe(subscription)
            if hook is not None:
                await hook.aclose()

    def _time_left(self) -> float:
        return float("inf") if self.deadline is None else max(0.0, self.deadline - time.time())

    def _timeout_event(self, node: Mapping[str, Any] | None) -> TriggerEvent:
        seen = describe(node, self.target) if node is not None else "no read succeeded"
        return TriggerEvent({"status": "timeout", "message": f"gave up waiting: {seen}", "node": dict(node or {})})
