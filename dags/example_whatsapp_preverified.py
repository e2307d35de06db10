"""Onboard a number bought pre-verified: create with ``preverified_id`` -> register; no code steps."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_whatsapp.operators.phone_numbers import (
    CreatePhoneNumberOperator,
    GetPhoneNumberOperator,
    RegisterPhoneNumberOperator,
)

with DAG(
    dag_id="example_whatsapp_preverified",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "whatsapp"],
    # A worker killed mid-call fails its task: the retry finishes the job without doing it twice.
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
    params={
        "cc": Param("1", type="string"),
        "phone_number": Param("5550103001", type="string"),
        "verified_name": Param("Acme Preverified", type="string", minLength=2, maxLength=75),
        "preverified_id": Param("7723456789012345", type="string", pattern="^[0-9]+$"),
    },
) as dag:
    # [START howto_operator_create_preverified]
    create = CreatePhoneNumberOperator(
        task_id="create_phone_number",
        cc="{{ params.cc }}",
        phone_number="{{ params.phone_number }}",
        verified_name="{{ params.verified_name }}",
        preverified_id="{{ params.preverified_id }}",
    )
    # [END howto_operator_create_preverified]
    register = RegisterPhoneNumberOperator(
        task_id="register",
        phone_number_id=create.output,
        pin_conn_id="whatsapp_two_step_pin",
        data_localization_region="DE",
    )
    # [START howto_operator_read_after_register]
    read_back = GetPhoneNumberOperator(
        task_id="read_back", phone_number_id=register.output, fields="status,code_verification_status"
    )
    # [END howto_operator_read_after_register]
