"""A downstream step on the numbers ``example_whatsapp_scheduled_onboarding`` onboarded.

Scheduled on the asset alias the scheduled DAG's ``write_back`` publishes through: a run starts
when a run of it onboarded numbers, and reads them from the asset events' ``extra`` (one event per
WABA, ``whatsapp://<waba_id>/phone_numbers``, with ``phone_number_ids`` and ``request_ids``) -- to
send a welcome template, update a CRM, and so on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.assets import AssetAlias
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_whatsapp.onboarding_requests import ASSET_ALIAS

# [START howto_scheduled_onboarding_downstream]
with DAG(
    dag_id="example_whatsapp_onboarded_numbers",
    schedule=[AssetAlias(ASSET_ALIAS)],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "whatsapp"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
) as dag:

    @task
    def onboarded_numbers(triggering_asset_events: Any = None) -> dict[str, list[str]]:
        """The phone-number IDs the triggering events carry, by WABA."""
        numbers: dict[str, list[str]] = {}
        # Each event is listed under its asset and under the alias it came through: read it once.
        for event in triggering_asset_events[AssetAlias(ASSET_ALIAS)]:
            numbers.setdefault(event.extra["waba_id"], []).extend(event.extra["phone_number_ids"])
        for waba_id, ids in sorted(numbers.items()):
            print(f"WABA {waba_id}: {len(ids)} numbers onboarded: {', '.join(ids)}")
        return numbers

    onboarded_numbers()
# [END howto_scheduled_onboarding_downstream]
