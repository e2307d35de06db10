"""Move a number that is registered on another WABA to this one: migrate -> code -> verify -> register."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_whatsapp.operators.phone_numbers import (
    CreatePhoneNumberOperator,
    RegisterPhoneNumberOperator,
    RequestVerificationCodeOperator,
    VerifyCodeOperator,
)
from airflow_provider_whatsapp.sandbox.client import read_verification_code

with DAG(
    dag_id="example_whatsapp_migration",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "whatsapp"],
    # A worker killed mid-call fails its task: the retry finishes the job without doing it twice.
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
    user_defined_macros={"sandbox_verification_code": read_verification_code},
    params={
        "cc": Param("1", type="string"),
        "phone_number": Param("5550102001", type="string"),
    },
) as dag:
    # [START howto_operator_migrate_phone_number]
    migrate = CreatePhoneNumberOperator(
        task_id="migrate_phone_number",
        cc="{{ params.cc }}",
        phone_number="{{ params.phone_number }}",
        migrate_phone_number=True,
    )
    # [END howto_operator_migrate_phone_number]
    request_code = RequestVerificationCodeOperator(
        task_id="request_code", phone_number_id=migrate.output, code_method="VOICE", language="en_US"
    )
    verify = VerifyCodeOperator(
        task_id="verify_code",
        phone_number_id=request_code.output,
        code="{{ sandbox_verification_code(conn.whatsapp_default.host, ti.xcom_pull(task_ids='request_code')) }}",
    )
    register = RegisterPhoneNumberOperator(
        task_id="register", phone_number_id=verify.output, pin_variable="whatsapp_two_step_pin"
    )
