"""What operators and sensors share to reach Graph: their hook, and the colour of their tasks."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

#: The colour of WhatsApp tasks in Airflow's UI.
WHATSAPP_GREEN = "#25D366"


class WhatsAppHookMixin:
    """Gives an operator or sensor its hook, from its ``whatsapp_conn_id``."""

    whatsapp_conn_id: str

    @cached_property
    def hook(self) -> WhatsAppBusinessHook:
        """The hook for this task's connection, created on first use."""
        # Imported here: parsing a DAG file must not pay for importing requests.
        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

        return WhatsAppBusinessHook(whatsapp_conn_id=self.whatsapp_conn_id)
