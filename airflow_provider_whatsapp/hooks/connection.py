"""What both WhatsApp Business hooks read from an Airflow connection, with its secrets masked."""

from __future__ import annotations

from typing import Any

from airflow_provider_whatsapp.hooks.budgets import RedisBudgets, VariableBudgets
from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy, GraphSettings, retry_policy_from_extra
from airflow_provider_whatsapp.hooks.shared_view import SharedView

DEFAULT_CONN_ID = "whatsapp_default"
CONN_TYPE = "whatsapp_business"


def settings_from_connection(conn: Any) -> tuple[GraphSettings, GraphRetryPolicy]:
    """Settings and retry policy of an Airflow connection; its secrets are registered with the masker.

    The budget store is the connection's ``budget_store`` extra, else the deployment's
    ``[whatsapp] budget_store`` option (``process`` when unset: the deployment-wide stores are
    opt-in until proven in deployments).
    """
    from airflow.providers.common.compat.sdk import conf

    extra = dict(conn.extra_dejson) if conn.extra else {}
    if not extra.get("budget_store"):
        extra["budget_store"] = conf.get("whatsapp", "budget_store", fallback="process") or "process"
    settings = GraphSettings.from_connection(conn.password, _host_of(conn.schema, conn.host), extra)
    # Airflow masks the password already; the app secret and the proof derived from the token
    # are ours to register with the masker.
    mask_secret_value(settings.token)
    if settings.app_secret:
        mask_secret_value(settings.app_secret)
        mask_secret_value(settings.appsecret_proof or "")
    if "@" in settings.budget_store:
        mask_secret_value(settings.budget_store)
    return settings, retry_policy_from_extra(extra)


_SHARED_VIEWS: dict[str, SharedView | None] = {}


def shared_view_for(budget_store: str) -> SharedView | None:
    """The process's one view of the deployment's budgets in that store (``None``: ``process``)."""
    if budget_store not in _SHARED_VIEWS:
        _SHARED_VIEWS[budget_store] = _new_shared_view(budget_store)
    return _SHARED_VIEWS[budget_store]


def _new_shared_view(budget_store: str) -> SharedView | None:
    if budget_store == "process":
        return None
    if budget_store == "airflow":
        from airflow.providers.common.compat.sdk import Variable

        return SharedView(VariableBudgets(Variable), refresh=5.0)
    return SharedView(RedisBudgets(budget_store), refresh=0.0)


def mask_secret_value(secret: str) -> None:
    """Register a secret with Airflow's masker before it is used, so no later log line shows it."""
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(secret)


def _host_of(schema: str | None, host: str | None) -> str | None:
    # Airflow connection URIs may split "https://host" into schema + host; accept both forms.
    if host and "://" not in host and schema in ("http", "https"):
        return f"{schema}://{host}"
    return host


def read_pin(*, pin: Any = None, pin_variable: str | None = None, pin_conn_id: str | None = None) -> str:
    """
    The two-step PIN from exactly one source, masked at once and checked to be 6 digits.

    :param pin: the PIN itself.
    :param pin_variable: the key of an Airflow Variable holding it.
    :param pin_conn_id: an Airflow connection whose password is the PIN.
    """
    from airflow.providers.common.compat.sdk import BaseHook, Variable

    from airflow_provider_whatsapp import validation
    from airflow_provider_whatsapp.exceptions import InvalidInputError

    if sum(source is not None for source in (pin, pin_variable, pin_conn_id)) != 1:
        raise InvalidInputError("pin", "give exactly one of pin, pin_variable or pin_conn_id")
    if pin_variable is not None:
        value: Any = Variable.get(pin_variable)
        source = "pin_variable"
    elif pin_conn_id is not None:
        value = BaseHook.get_connection(pin_conn_id).password
        source = "pin_conn_id"
    else:
        value, source = pin, "pin"
    if value not in (None, ""):
        mask_secret_value(str(value))
    return validation.six_digits(source, value)


async def aread_pin(*, pin_variable: str | None = None, pin_conn_id: str | None = None) -> str:
    """:func:`read_pin` from an event loop (a trigger): the lookup runs off the loop, as common-compat's
    ``get_async_connection`` does."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(read_pin)(pin_variable=pin_variable, pin_conn_id=pin_conn_id)
