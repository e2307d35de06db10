"""What both WhatsApp Business hooks read from an Airflow connection, with its secrets masked."""

from __future__ import annotations

from typing import Any

from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy, GraphSettings, retry_policy_from_extra

DEFAULT_CONN_ID = "whatsapp_default"
CONN_TYPE = "whatsapp_business"


def settings_from_connection(conn: Any) -> tuple[GraphSettings, GraphRetryPolicy]:
    """Settings and retry policy of an Airflow connection; its secrets are registered with the masker."""
    extra = conn.extra_dejson if conn.extra else {}
    settings = GraphSettings.from_connection(conn.password, _host_of(conn.schema, conn.host), extra)
    # Airflow masks the password already; the app secret and the proof derived from the token
    # are ours to register with the masker.
    mask_secret_value(settings.token)
    if settings.app_secret:
        mask_secret_value(settings.app_secret)
        mask_secret_value(settings.appsecret_proof or "")
    return settings, retry_policy_from_extra(extra)


def mask_secret_value(secret: str) -> None:
    """Register a secret with Airflow's masker before it is used, so no later log line shows it."""
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(secret)


def _host_of(schema: str | None, host: str | None) -> str | None:
    # Airflow connection URIs may split "https://host" into schema + host; accept both forms.
    if host and "://" not in host and schema in ("http", "https"):
        return f"{schema}://{host}"
    return host
