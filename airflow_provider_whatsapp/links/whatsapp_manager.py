"""Extra link from a task to the phone number it handled, in WhatsApp Manager."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, Context, TaskInstanceKey

WHATSAPP_MANAGER_URL = "https://business.facebook.com/wa/manage/phone-numbers/"


def whatsapp_manager_url(waba_id: str, phone_number_id: str) -> str:
    """The WhatsApp Manager page of one phone number."""
    return f"{WHATSAPP_MANAGER_URL}?{urlencode({'waba_id': waba_id, 'phone_number_id': phone_number_id})}"


class WhatsAppManagerPhoneNumberLink(BaseOperatorLink):
    """Link to the phone number in WhatsApp Manager, stored by the task when it ran."""

    name = "WhatsApp Manager"

    @property
    def xcom_key(self) -> str:
        """The XCom key the link is stored under: Airflow 3's default, which Airflow 2 lacks."""
        return f"_link_{type(self).__name__}"

    @classmethod
    def persist(cls, context: Context, *, waba_id: str, phone_number_id: str) -> None:
        """Store the link for the running task instance, where the UI looks for it."""
        context["ti"].xcom_push(key=cls().xcom_key, value=whatsapp_manager_url(waba_id, phone_number_id))

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.providers.common.compat.sdk import XCom

        value: Any = XCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return value if isinstance(value, str) else ""
