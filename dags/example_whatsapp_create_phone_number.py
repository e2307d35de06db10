"""Create a WhatsApp Business phone number, then read it back by the ID passed through XCom.

Run it against the local Graph sandbox (see the README) or a real WABA by pointing the
``whatsapp_default`` connection at it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_whatsapp.operators.phone_numbers import CreatePhoneNumberOperator, GetPhoneNumberOperator

with DAG(
    dag_id="example_whatsapp_create_phone_number",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "whatsapp"],
    # A worker killed mid-call fails its task: the retry finishes the job without doing it twice.
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
    params={
        "cc": Param("1", type="string", description="Country dial code, without +"),
        "phone_number": Param("5550100001", type="string", description="Number without the country code"),
        "verified_name": Param("Acme Support", type="string", minLength=2, maxLength=75),
    },
) as dag:
    # [START howto_operator_create_phone_number]
    create_phone_number = CreatePhoneNumberOperator(
        task_id="create_phone_number",
        cc="{{ params.cc }}",
        phone_number="{{ params.phone_number }}",
        verified_name="{{ params.verified_name }}",
        fields="display_phone_number,verified_name,code_verification_status",
    )
    # [END howto_operator_create_phone_number]

    # [START howto_operator_get_phone_number]
    read_back = GetPhoneNumberOperator(
        task_id="read_back",
        phone_number_id=create_phone_number.output,
        fields="id,display_phone_number,verified_name,code_verification_status,name_status,status",
    )
    # [END howto_operator_get_phone_number]
