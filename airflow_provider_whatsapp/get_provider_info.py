"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_whatsapp import __version__

INTEGRATION = "WhatsApp Business"
CONN_TYPE = "whatsapp_business"

CONNECTION_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"password": "Access token", "host": "Graph API host"},
    "placeholders": {
        "password": "System User access token (EAA...)",
        "host": "https://graph.facebook.com",
    },
}

CONNECTION_FIELDS: dict[str, Any] = {
    "api_version": {
        "label": "Graph API version",
        "description": "Graph API version to call, vNN.N (default v26.0).",
        "schema": {"type": ["string", "null"], "pattern": r"^v\d{1,3}\.\d$", "default": "v26.0"},
    },
    "waba_id": {
        "label": "WhatsApp Business Account ID",
        "description": "Default WABA for operators that do not name one.",
        "schema": {"type": ["string", "null"], "pattern": r"^\d+$"},
    },
    "app_secret": {
        "label": "App secret",
        "description": "Signs every call with appsecret_proof (needed when the app requires it).",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Seconds to wait for each Graph response (default 30).",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the format of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-whatsapp",
        "name": "WhatsApp Business",
        "description": "Onboard WhatsApp Business phone numbers through Meta's Graph API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://developers.facebook.com/docs/whatsapp/business-management-api",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_whatsapp.hooks.whatsapp",
                    "airflow_provider_whatsapp.hooks.whatsapp_async",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_whatsapp.operators.phone_numbers",
                    "airflow_provider_whatsapp.operators.onboarding",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_whatsapp.sensors.phone_numbers"],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_whatsapp.triggers.phone_numbers",
                    "airflow_provider_whatsapp.triggers.onboarding",
                ],
            }
        ],
        "config": {
            "whatsapp": {
                "description": "Options of the WhatsApp Business provider.",
                "options": {
                    "onboarding_resume_grace": {
                        "description": (
                            "Seconds after an onboarding task deferred before its trigger fires, however soon "
                            "the onboarding is done. A trigger that fires within seconds of its task's deferral "
                            "can be taken by the scheduler for a task that changed state behind its back and be "
                            "retried (apache/airflow#66374); a busy scheduler needs a few seconds."
                        ),
                        "version_added": "0.3.0",
                        "type": "float",
                        "example": "20",
                        "default": "20",
                    },
                    "budget_store": {
                        "description": (
                            "Where every task process, worker and triggerer shares what it learns of Graph's "
                            "rate-limit budgets, for connections whose budget_store extra is unset: process "
                            "(nothing shared, the default), airflow (Airflow Variables) or redis://host:port/db "
                            "(the redis extra)."
                        ),
                        "version_added": "0.3.0",
                        "type": "string",
                        "example": "redis://redis:6379/2",
                        "default": "process",
                    },
                },
            }
        },
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_whatsapp.hooks.whatsapp.WhatsAppBusinessHook",
                "hook-name": "WhatsApp Business",
                "connection-type": CONN_TYPE,
                "ui-field-behaviour": CONNECTION_UI_FIELD_BEHAVIOUR,
                "conn-fields": CONNECTION_FIELDS,
            }
        ],
        "extra-links": ["airflow_provider_whatsapp.links.whatsapp_manager.WhatsAppManagerPhoneNumberLink"],
    }
