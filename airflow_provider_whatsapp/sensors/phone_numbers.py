"""Sensor that waits for a phone number to reach a target state, poking or deferred."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.hooks.mixin import WHATSAPP_GREEN, WhatsAppHookMixin
from airflow_provider_whatsapp.status import (
    DEFAULT_FAILURE_STATES,
    check_status,
    describe,
    fields_to_read,
    normalise_target,
)
from airflow_provider_whatsapp.triggers.phone_numbers import PhoneNumberStatusTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class PhoneNumberStatusSensor(WhatsAppHookMixin, BaseSensorOperator):
    """
    Wait until a phone number's fields match a target, for example ``status=CONNECTED``.

    Fails at once, without waiting for the timeout, when the number reaches a state it will not
    leave (``BANNED``, ``DELETED``, a ``DECLINED`` name, ...), naming the state. Returns the node
    (a dict) to XCom. With ``deferrable=True`` the wait runs in the triggerer
    (:class:`~airflow_provider_whatsapp.triggers.phone_numbers.PhoneNumberStatusTrigger`) and
    frees the worker slot.

    :param phone_number_id: the phone-number ID (templated).
    :param target: node field to wanted value or values, e.g.
        ``{"code_verification_status": "VERIFIED", "status": "CONNECTED"}`` (templated).
    :param failure_states: node field to states that fail the wait at once; defaults to
        ``DEFAULT_FAILURE_STATES``. A state that is also a target value is not a failure.
    :param waba_id: the number's WABA (templated); defaults to the connection's ``waba_id``
        extra. Deferred, every sensor waiting on numbers of one WABA shares one list read per
        interval in the triggerer; reads are paced by that WABA's rate limit. For a number
        created in the same DAG, ``"{{ ti.xcom_pull(task_ids='create_phone_number', key='waba_id') }}"``.
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poke_interval: seconds between reads (``BaseSensorOperator``).
    :param timeout: seconds before the sensor gives up (``BaseSensorOperator``).
    """

    template_fields: Sequence[str] = ("whatsapp_conn_id", "phone_number_id", "waba_id", "target")
    template_fields_renderers = {"target": "json"}
    ui_color = WHATSAPP_GREEN

    def __init__(
        self,
        *,
        phone_number_id: str,
        target: Mapping[str, Any],
        failure_states: Mapping[str, Sequence[str]] | None = None,
        waba_id: str | None = None,
        whatsapp_conn_id: str = "whatsapp_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.phone_number_id = phone_number_id
        self.target = target
        self.failure_states = normalise_target(
            failure_states if failure_states is not None else DEFAULT_FAILURE_STATES, "failure_states"
        )
        self.whatsapp_conn_id = whatsapp_conn_id
        self.deferrable = deferrable
        self.waba_id = waba_id

    def _checked(self) -> tuple[str, dict[str, list[str]]]:
        return validation.graph_id("phone_number_id", self.phone_number_id), normalise_target(self.target)

    def checked_waba_id(self) -> str | None:
        """The rendered ``waba_id``, else the connection's; ``None`` when neither names one."""
        if self.waba_id not in (None, ""):
            return validation.graph_id("waba_id", self.waba_id)
        return self.hook.default_waba_id

    def poke(self, context: Context) -> PokeReturnValue:
        phone_number_id, target = self._checked()
        node = self.hook.get_phone_number(
            phone_number_id, fields=fields_to_read(target, self.failure_states), waba_id=self.checked_waba_id()
        )
        check = check_status(node, target, self.failure_states)
        if check.failure:
            raise AirflowFailException(f"Phone number {phone_number_id}: {check.failure}")
        if not check.met:
            self.log.info("Phone number %s: %s", phone_number_id, describe(node, target))
        return PokeReturnValue(is_done=check.met, xcom_value=check.node)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        phone_number_id, target = self._checked()
        # One read first: a number already there needs no trip through the triggerer.
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        # Airflow itself ends the wait if the triggerer running it stalls past the timeout.
        self.defer(
            trigger=self.build_trigger(phone_number_id, target, self.checked_waba_id()),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def build_trigger(
        self, phone_number_id: str, target: dict[str, list[str]] | None = None, waba_id: str | None = None
    ) -> PhoneNumberStatusTrigger:
        """The trigger this sensor defers to: the connection ID and plain values, never the token."""
        return PhoneNumberStatusTrigger(
            phone_number_id=phone_number_id,
            target=target if target is not None else normalise_target(self.target),
            failure_states=self.failure_states,
            whatsapp_conn_id=self.whatsapp_conn_id,
            poke_interval=float(self.poke_interval),
            deadline=time.time() + float(self.timeout),
            waba_id=waba_id,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: return the node, or fail with what the trigger saw."""
        if event.get("status") == "success":
            self.log.info("Phone number %s reached %s", self.phone_number_id, self.target)
            return event.get("node")
        raise AirflowFailException(
            f"Phone number {self.phone_number_id}: {event.get('status')}: {event.get('message')}"
        )
