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

    Only reads (``GET /{phone_number_id}``); it serializes the connection ID and plain values,
    never the token. The event's ``status`` is ``success``, ``failed`` (a terminal bad state),
    ``timeout`` or ``error`` (a Graph error that retries did not cure).

    :param phone_number_id: the phone-number ID to watch.
    :param target: node field to wanted value(s), e.g. ``{"status": ["CONNECTED"]}``.
    :param failure_states: node field to states that end the wait as a failure.
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business``.
    :param poke_interval: seconds between reads.
    :param deadline: ``time.time()`` after which the trigger gives up, or ``None``.
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
    ) -> None:
        super().__init__()
        self.phone_number_id = phone_number_id
        self.target = {name: list(values) for name, values in target.items()}
        self.failure_states = {name: list(values) for name, values in failure_states.items()}
        self.whatsapp_conn_id = whatsapp_conn_id
        self.poke_interval = poke_interval
        self.deadline = deadline

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(phone_number_id={self.phone_number_id!r}, target={self.target!r}, "
            f"whatsapp_conn_id={self.whatsapp_conn_id!r})"
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
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_whatsapp.exceptions import GraphAPIError

        # The hook's module pulls in requests, tenacity and httpx (a few hundred milliseconds on a
        # busy triggerer): imported in a thread, so the event loop running every other trigger
        # is not blocked by the first of ours.
        hooks = await asyncio.to_thread(importlib.import_module, "airflow_provider_whatsapp.hooks.whatsapp")
        hook = hooks.WhatsAppBusinessAsyncHook(whatsapp_conn_id=self.whatsapp_conn_id)
        fields = fields_to_read(self.target, self.failure_states)
        while True:
            try:
                node = await hook.get_phone_number(self.phone_number_id, fields=fields)
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
            if self.deadline is not None and time.time() + self.poke_interval > self.deadline:
                message = f"gave up waiting: {describe(node, self.target)}"
                yield TriggerEvent({"status": "timeout", "message": message, "node": check.node})
                return
            await asyncio.sleep(self.poke_interval)
