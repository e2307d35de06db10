"""Operator that onboards many phone numbers in one task, deferred to the triggerer."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import InvalidInputError, WhatsAppProviderError
from airflow_provider_whatsapp.operators.base import WhatsAppBaseOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Rows one task takes at most: its report travels as one trigger event and one XCom. Split more
#: with :func:`~airflow_provider_whatsapp.onboarding.plan.onboarding_batches` and map the operator.
MAX_NUMBERS_PER_TASK = 5_000
DEFAULT_TIMEOUT = timedelta(hours=12)
# The trigger reports what it has this long before Airflow's own timeout would end the task.
REPORT_MARGIN = 60.0
#: The provider option ``[whatsapp] onboarding_resume_grace`` when it is not set.
RESUME_GRACE = 20.0
ROW_KEYS = frozenset(
    {
        "cc",
        "phone_number",
        "verified_name",
        "waba_id",
        "preverified_id",
        "migrate_phone_number",
        "key",
        "code_requested",
    }
)


class OnboardingIncompleteError(WhatsAppProviderError, AirflowException):
    """Some numbers were not finished for a reason a retry of the task may cure (the report says which)."""


class OnboardPhoneNumbersOperator(WhatsAppBaseOperator):
    """
    Onboard many phone numbers, of one WABA or many, in one task: create, code, verify, register.

    One list read per WABA says where each number stands; each then goes on from there (a number
    already onboarded costs nothing more, one left half done by a crash continues at its step,
    none is created or registered twice). A few numbers of each WABA are onboarded at once, each
    WABA at the pace of its own budget, so one WABA that Graph throttles never slows the others.
    Deferred (the default), the work runs in the triggerer
    (:class:`~airflow_provider_whatsapp.triggers.onboarding.PhoneNumberOnboardingTrigger`) and
    holds no worker slot, also while a spent budget is waited out.

    Returns the report (also when the task fails for numbers not finished): ``counts`` (numbers
    per outcome) and ``numbers``, one entry per row in input order: ``outcome`` (``onboarded``,
    ``created, not registered`` with its ``next_step``, ``not created``, ``unknown``, or the
    number's status in lower case when it is left alone), ``phone_number_id``, ``error`` (Graph's
    code, subcode, message and ``fbtrace_id``, or the input rule), ``note``, ``key`` (the row's),
    ``result`` (``code_requested`` ...) and ``retry``. A row that breaks an input rule costs no
    Graph call and does not stop the others. When numbers are left unfinished for a reason a
    retry may cure (throttled or transient after the retry policy, Graph unreachable, the
    deadline), the task fails with :class:`OnboardingIncompleteError` after pushing the report,
    and its retry plans again from what Graph holds.

    :param numbers: the rows (templated; a list of dicts, or an XComArg): ``cc``,
        ``phone_number``, ``verified_name``, and optionally ``waba_id`` (else the connection's),
        ``preverified_id`` (skips the code steps), ``migrate_phone_number``, ``key`` (any value to
        find the row again in the report, such as a request ID), ``code_requested`` (a code is
        out: without a code source, none is requested again).
    :param pin_variable: the Variable holding the two-step PIN the numbers are registered with
        (templated); or ``pin_conn_id``. The PIN itself is never an argument: it would travel in
        the trigger's stored arguments.
    :param pin_conn_id: a connection whose password is the PIN (templated).
    :param code_source: dotted path of a callable that is given a
        :class:`~airflow_provider_whatsapp.onboarding.conversation.CodeRequest` once Graph sent a
        number its code and returns the code (or ``None``); it runs in the triggerer. Without
        one, each number stops once its code is requested, for a person to complete
        (pre-verified numbers need none). The Graph sandbox's is
        ``airflow_provider_whatsapp.sandbox.client.verification_code_for``. Templated; rendered
        empty, there is none.
    :param numbers_per_waba: numbers of one WABA onboarded at once.
    :param data_localization_region: ISO-2 region for local storage, for every number (templated).
    :param deferrable: run in the triggerer (default); ``False`` runs in the worker.
    :param timeout: how long the onboarding may take; the trigger reports what it has shortly
        before.
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    """

    template_fields: Sequence[str] = (
        "whatsapp_conn_id",
        "numbers",
        "pin_variable",
        "pin_conn_id",
        "code_source",
        "data_localization_region",
    )
    template_fields_renderers = {"numbers": "json"}

    def __init__(
        self,
        *,
        numbers: Any,
        pin_variable: str | None = None,
        pin_conn_id: str | None = None,
        code_source: str | None = None,
        numbers_per_waba: int = 4,
        data_localization_region: str | None = None,
        deferrable: bool = True,
        timeout: timedelta = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (pin_variable is None) == (pin_conn_id is None):
            raise InvalidInputError("pin_variable", "give exactly one of pin_variable or pin_conn_id")
        if isinstance(numbers_per_waba, bool) or not isinstance(numbers_per_waba, int) or numbers_per_waba < 1:
            raise InvalidInputError("numbers_per_waba", "must be a whole number of at least 1")
        self.numbers = numbers
        self.pin_variable = pin_variable
        self.pin_conn_id = pin_conn_id
        self.code_source = code_source
        self.numbers_per_waba = numbers_per_waba
        self.data_localization_region = data_localization_region
        self.deferrable = deferrable
        self.timeout = timeout

    def checked_rows(self) -> list[dict[str, Any]]:
        """The rendered ``numbers`` as plain dicts; the list as a whole checked (each row is checked by its step)."""
        rows = self.numbers
        if isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Sequence):
            raise InvalidInputError("numbers", f"must be a list of rows (dicts), got {type(rows).__name__}")
        if len(rows) > MAX_NUMBERS_PER_TASK:
            raise InvalidInputError(
                "numbers",
                f"holds {len(rows)} rows, more than {MAX_NUMBERS_PER_TASK} for one task: split them with "
                "onboarding_batches and map the operator over the batches",
            )
        checked = []
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidInputError(f"numbers[{index}]", f"must be a dict, got {type(row).__name__}")
            unknown = sorted(set(row) - ROW_KEYS)
            if unknown:
                raise InvalidInputError(f"numbers[{index}]", f"has unknown keys {unknown}; known: {sorted(ROW_KEYS)}")
            checked.append(dict(row))
        return checked

    def execute_graph(self, context: Context) -> Any:
        from airflow.providers.common.compat.sdk import conf

        from airflow_provider_whatsapp.hooks.connection import read_pin
        from airflow_provider_whatsapp.triggers.onboarding import PhoneNumberOnboardingTrigger, import_code_source

        rows = self.checked_rows()
        region = validation.region(self.data_localization_region)
        # Checked here, before anything is sent; the trigger reads the PIN again for itself.
        read_pin(pin_variable=self.pin_variable, pin_conn_id=self.pin_conn_id)
        code_source = str(self.code_source).strip() if self.code_source else None
        if code_source:
            import_code_source(code_source)
        trigger = PhoneNumberOnboardingTrigger(
            numbers=rows,
            whatsapp_conn_id=self.whatsapp_conn_id,
            pin_variable=self.pin_variable,
            pin_conn_id=self.pin_conn_id,
            code_source=code_source or None,
            numbers_per_waba=self.numbers_per_waba,
            deadline=time.time() + max(self.timeout.total_seconds() - REPORT_MARGIN, 1.0),
            data_localization_region=region,
            not_before=time.time() + conf.getfloat("whatsapp", "onboarding_resume_grace", fallback=RESUME_GRACE)
            if self.deferrable
            else None,
        )
        self.log.info("Onboarding %d numbers", len(rows))
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_complete", timeout=self.timeout)
        return self.finish(context, _run_inline(trigger))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: record the report, or fail with what stopped the run."""
        from airflow_provider_whatsapp.triggers.onboarding import full_report

        if event.get("status") != "done":
            raise OnboardingIncompleteError(f"The onboarding did not start: {event.get('message')}")
        return self.finish(context, full_report(event["report"]))

    def finish(self, context: Context, report: dict[str, Any]) -> dict[str, Any]:
        """Log the report; fail (after pushing it) if numbers were left for a retry to finish."""
        from airflow_provider_whatsapp.onboarding.report import describe

        counts = report["counts"]
        self.log.info("%d numbers: %s", len(report["numbers"]), counts)
        for entry in report["numbers"]:
            if entry["outcome"] != "onboarded" or entry.get("note"):
                self.log.info("%s", describe(entry))
        if report.get("retry"):
            context["ti"].xcom_push(key="return_value", value=report)
            raise OnboardingIncompleteError(
                f"{report['retry']} of {len(report['numbers'])} numbers were not finished for a reason a retry may "
                "cure (throttled, transient, unreachable, or the deadline); the task's retry continues where Graph "
                "says each stands"
            )
        return report


def _run_inline(trigger: Any) -> dict[str, Any]:
    """Run the trigger's work in this process (``deferrable=False``)."""
    import asyncio

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise RuntimeError("the onboarding trigger ended without an event")

    from airflow_provider_whatsapp.triggers.onboarding import full_report

    event = asyncio.run(first_event())
    if event.get("status") != "done":
        raise OnboardingIncompleteError(f"The onboarding did not start: {event.get('message')}")
    return full_report(event["report"])
