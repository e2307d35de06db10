"""Trigger that onboards many numbers in the triggerer, holding no worker slot while it works or waits."""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: Graph's budgets regain within an hour; announced in whole minutes. A trigger waits that out.
BUDGET_WAIT = 65 * 60.0


def import_code_source(path: str) -> Any:
    """The callable a dotted ``module.attribute`` path names; ``InvalidInputError`` naming the rule otherwise."""
    from airflow_provider_whatsapp.exceptions import InvalidInputError

    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise InvalidInputError("code_source", f"must be a dotted path 'module.callable', got {path!r}")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise InvalidInputError("code_source", f"{path!r} cannot be imported: {error}") from error
    if not callable(found):
        raise InvalidInputError("code_source", f"{path!r} is not callable")
    return found


class PhoneNumberOnboardingTrigger(BaseTrigger):
    """
    Onboard many numbers (create, code, verify, register) in the triggerer, then fire one event.

    It plans from one list read per WABA and runs a few numbers of each WABA at once with the
    async hook, each WABA paced by its own budget (see
    :class:`~airflow_provider_whatsapp.onboarding.runner.OnboardingRunner`); a spent budget is
    waited out here, where waiting holds no worker slot. It serializes the connection ID, the
    PIN's Variable or connection name and plain values, never the token or the PIN. Restarted on
    another triggerer (its triggerer died), it plans again from what Graph holds, so nothing is
    created or registered twice. The event's ``status`` is ``done`` with the ``report``, or
    ``error`` with a ``message`` when the run could not start (a missing connection or PIN).

    :param numbers: the rows to onboard: ``cc``, ``phone_number``, ``verified_name``, and
        optionally ``waba_id``, ``preverified_id``, ``migrate_phone_number``, ``key``,
        ``code_requested``.
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business``.
    :param pin_variable: the Variable holding the two-step PIN (or ``pin_conn_id``).
    :param pin_conn_id: a connection whose password is the PIN (or ``pin_variable``).
    :param code_source: dotted path of a callable answering a
        :class:`~airflow_provider_whatsapp.onboarding.conversation.CodeRequest` with the code Graph
        sent (or ``None``); without one, numbers stop once their code is requested.
    :param numbers_per_waba: numbers of one WABA onboarded at once.
    :param deadline: ``time.time()`` by which the trigger reports what it has; ``None`` for none.
    :param data_localization_region: local storage the numbers are registered with, if any.
    :param not_before: ``time.time()`` before which the event is not fired, however soon the work
        is done (see the provider option ``[whatsapp] onboarding_resume_grace``).
    """

    def __init__(
        self,
        *,
        numbers: list[dict[str, Any]],
        whatsapp_conn_id: str = "whatsapp_default",
        pin_variable: str | None = None,
        pin_conn_id: str | None = None,
        code_source: str | None = None,
        numbers_per_waba: int = 4,
        deadline: float | None = None,
        data_localization_region: str | None = None,
        not_before: float | None = None,
    ) -> None:
        super().__init__()
        self.numbers = [dict(number) for number in numbers]
        self.whatsapp_conn_id = whatsapp_conn_id
        self.pin_variable = pin_variable
        self.pin_conn_id = pin_conn_id
        self.code_source = code_source
        self.numbers_per_waba = numbers_per_waba
        self.deadline = deadline
        self.data_localization_region = data_localization_region
        self.not_before = not_before

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(numbers={len(self.numbers)}, whatsapp_conn_id={self.whatsapp_conn_id!r}, "
            f"code_source={self.code_source!r})"
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "numbers": self.numbers,
                "whatsapp_conn_id": self.whatsapp_conn_id,
                "pin_variable": self.pin_variable,
                "pin_conn_id": self.pin_conn_id,
                "code_source": self.code_source,
                "numbers_per_waba": self.numbers_per_waba,
                "deadline": self.deadline,
                "data_localization_region": self.data_localization_region,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The hook's module pulls in aiohttp (slow on a busy triggerer): imported in a thread, so the
        # event loop running every other trigger is not blocked by this one.
        hooks = await asyncio.to_thread(importlib.import_module, "airflow_provider_whatsapp.hooks.whatsapp_async")
        await asyncio.to_thread(importlib.import_module, "airflow_provider_whatsapp.onboarding.runner")
        from airflow_provider_whatsapp.hooks.connection import aread_pin
        from airflow_provider_whatsapp.onboarding.runner import OnboardingRunner

        hook = hooks.WhatsAppBusinessAsyncHook(
            whatsapp_conn_id=self.whatsapp_conn_id,
            wait_out_budgets=BUDGET_WAIT,
            mask_call_secrets=False,
            user_agent=hooks.ONBOARDING_USER_AGENT,
        )
        try:
            await hook.asettings()
            pin = await aread_pin(pin_variable=self.pin_variable, pin_conn_id=self.pin_conn_id)
            # The code source's module is the user's, and may be slow to import: off the loop.
            source = await asyncio.to_thread(import_code_source, self.code_source) if self.code_source else None
        except Exception as error:  # a connection, Variable or PIN that cannot be had
            # Nothing was sent: said in the task's failure, not lost in the triggerer's log.
            await hook.aclose()
            yield TriggerEvent({"status": "error", "message": f"{type(error).__name__}: {error}"})
            return
        runner = OnboardingRunner(
            hook,
            pin=pin,
            code_source=source,
            numbers_per_waba=self.numbers_per_waba,
            deadline=self.deadline,
            data_localization_region=self.data_localization_region,
        )
        started = time.monotonic()
        try:
            report = await runner.run(self.numbers)
        finally:
            await hook.aclose()
        self.log.info("Onboarded %d rows in %.1fs: %s", len(self.numbers), time.monotonic() - started, report["counts"])
        if self.not_before is not None and self.not_before > time.time():
            # Fired too soon after its task deferred, the event can meet a scheduler that has not
            # yet taken in the deferral, and the task would be retried for nothing.
            await asyncio.sleep(self.not_before - time.time())
        yield TriggerEvent({"status": "done", "report": compact_report(report)})


#: The keys every entry of a report has; an event leaves out those that are ``None``.
ENTRY_KEYS = (
    "number",
    "waba_id",
    "outcome",
    "phone_number_id",
    "status",
    "code_verification_status",
    "started_at",
    "next_step",
    "error",
    "note",
)


def compact_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the ``None`` values of its entries: thousands travel in one event, and Airflow logs it."""
    return {**report, "numbers": [{k: v for k, v in entry.items() if v is not None} for entry in report["numbers"]]}


def full_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report of an event with every entry's keys back (see :func:`compact_report`)."""
    return {**report, "numbers": [{**dict.fromkeys(ENTRY_KEYS), **entry} for entry in report["numbers"]]}
