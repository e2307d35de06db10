"""What every WhatsApp Business operator shares: the connection, the hook, input checks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import (
    BudgetWaitRequired,
    GraphAPIError,
    InvalidInputError,
    WhatsAppProviderError,
)
from airflow_provider_whatsapp.hooks.mixin import WHATSAPP_GREEN, WhatsAppHookMixin

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.common.compat.sdk import Context


ERROR_XCOM_KEY = "whatsapp_error"
#: The shortest budget wait an operator defers for, in seconds.
MIN_BUDGET_DEFERRAL = 15.0
#: How long before its budget is regained a deferred task comes back, in seconds (at most half
#: of ``defer_wait_over``). Starting a task process and reading its connection and budgets again
#: takes about as long on a busy worker, and the others leave the waiter's call to it meanwhile:
#: back at the reset, it does not hold the new window's other calls back.
RESUME_LEAD = 5.0


def error_details(error: WhatsAppProviderError) -> dict[str, Any]:
    """Plain values describing a provider error, safe for XCom (no secrets ever reach them)."""
    if isinstance(error, GraphAPIError):
        return error.to_dict()
    if isinstance(error, InvalidInputError):
        return {"error_class": type(error).__name__, "message": str(error), "field": error.field}
    return {"error_class": type(error).__name__, "message": str(error)}


class WhatsAppBaseOperator(WhatsAppHookMixin, BaseOperator):
    """
    Base class of the WhatsApp Business operators; no HTTP happens here, only in the hook.

    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business``.
    """

    ui_color = WHATSAPP_GREEN

    def __init__(self, *, whatsapp_conn_id: str = "whatsapp_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.whatsapp_conn_id = whatsapp_conn_id

    def execute(self, context: Context) -> Any:
        # A long wait for Graph's budget is spent in the triggerer, not in this worker slot.
        self.hook.defer_budget_waits = True
        try:
            return self.execute_graph(context)
        except BudgetWaitRequired as wait:
            from airflow.providers.common.compat.standard.triggers import TimeDeltaTrigger

            # Never shorter than the floor: a trigger that fires before the scheduler has seen the
            # deferring attempt exit fails the task (https://github.com/apache/airflow/issues/72716).
            lead = min(RESUME_LEAD, self.hook.retry_policy.defer_wait_over / 2)
            seconds = max(wait.seconds - lead, MIN_BUDGET_DEFERRAL)
            self.log.info("Deferring for %.0fs: %s; the call is made once it is regained", seconds, wait)
            self.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=seconds)),
                method_name="resume_after_budget_wait",
                # Its place among the budget's waiters is its own again when it comes back.
                kwargs={"budget_waiter": self.hook.budget_waiter},
            )
        except WhatsAppProviderError as error:
            # Kept beside the failed task so that a report task downstream can say why.
            context["ti"].xcom_push(key=ERROR_XCOM_KEY, value=error_details(error))
            raise
        finally:
            self.hook.release_budget_leases()

    def resume_after_budget_wait(self, context: Context, event: Any = None, budget_waiter: str | None = None) -> Any:
        """Resume after a budget wait in the triggerer: do the work again (nothing was sent twice)."""
        if budget_waiter:
            self.hook.budget_waiter, self.hook.budget_waiter_holds_place = budget_waiter, True
        return self.execute(context)

    def execute_graph(self, context: Context) -> Any:
        """The operator's work; errors it raises are also recorded under the XCom key ``whatsapp_error``."""
        raise NotImplementedError


class WhatsAppPhoneNumberBaseOperator(WhatsAppBaseOperator):
    """
    Base class of operators that act on one existing phone number.

    :param phone_number_id: the phone-number ID, for example ``create.output`` or
        ``"{{ ti.xcom_pull(task_ids='create_phone_number') }}"`` (templated).
    :param waba_id: the WABA the number belongs to, when known (templated): its calls are then
        paced by that WABA's rate limit from the first one; otherwise from Graph's first answer.
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    """

    def __init__(self, *, phone_number_id: str, waba_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id

    def checked_phone_number_id(self) -> str:
        """The rendered ``phone_number_id``, checked to be a numeric Graph ID; its WABA noted for pacing."""
        phone_number_id = validation.graph_id("phone_number_id", self.phone_number_id)
        if self.waba_id not in (None, ""):
            self.hook.note_waba(phone_number_id, validation.graph_id("waba_id", self.waba_id))
        return phone_number_id


class SecretTemplateFieldsMixin:
    """
    Masks secret template fields (PIN, verification code) as soon as they are rendered.

    Airflow stores a task's rendered template fields right after rendering, before ``execute``;
    registering the values with the secrets masker here keeps them out of the Rendered
    Templates view as well as out of every later log line.
    """

    secret_fields: Sequence[str] = ()

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        from airflow.providers.common.compat.sdk import mask_secret

        for name in self.secret_fields:
            value = getattr(self, name, None)
            if value not in (None, ""):
                # No name: with one, the masker only hides values whose key looks sensitive
                # ("password", "token"...), and "pin" or "code" do not.
                mask_secret(str(value))
