"""Onboard one WhatsApp Business number end to end, the new ID flowing by XCom through every step.

create -> request code -> (a human enters the code | the sandbox's code) -> verify -> register
-> wait, deferred, until CONNECTED -> summary.

Triggered again with the same params, the DAG continues where the number stands on Graph: the
create adopts the number already on the WABA and reads its state in the same call, and
``resume_point`` skips what is done (a verified number is only registered; a registered one is
only waited for). Every task retries (``default_args``): a retried create adopts the number its
killed try made, a retried register does not register twice.

In production the code arrives by SMS: set ``unattended`` to false and a person types it into the
``enter_code`` form (Airflow's Human-in-the-loop, Airflow 3.1 and later; on older Airflow the
form is skipped with a note and the DAG runs unattended only). Against the Graph sandbox the DAG
runs unattended and reads the code the sandbox sent. The two-step PIN comes from the Airflow
Variable ``whatsapp_two_step_pin``, never from the DAG file.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import DAG, AirflowFailException, AirflowSkipException, Param, task

from airflow_provider_whatsapp.operators.phone_numbers import (
    CreatePhoneNumberOperator,
    RegisterPhoneNumberOperator,
    RequestVerificationCodeOperator,
    VerifyCodeOperator,
)
from airflow_provider_whatsapp.sandbox.client import read_verification_code
from airflow_provider_whatsapp.sensors.phone_numbers import PhoneNumberStatusSensor
from airflow_provider_whatsapp.version_compat import AIRFLOW_V_3_1_PLUS

if AIRFLOW_V_3_1_PLUS:
    from airflow.providers.standard.operators.hitl import HITLEntryOperator

HITL_NOTE = (
    "Typing the verification code in (Human-in-the-loop) needs Airflow 3.1 or later: on this Airflow "
    "run with unattended=true against the sandbox, or onboard pre-verified numbers "
    "(example_whatsapp_preverified)."
)

# The code is rendered straight into the verify task, where it is masked: it never passes
# through XCom of ours (the Human-in-the-loop form keeps what the person typed).
VERIFICATION_CODE = (
    "{% if params.unattended %}"
    "{{ sandbox_verification_code(conn.whatsapp_default.host, ti.xcom_pull(task_ids='create_phone_number')) }}"
    "{% else %}"
    "{{ ti.xcom_pull(task_ids='enter_code')['params_input']['code'] }}"
    "{% endif %}"
)

with DAG(
    dag_id="example_whatsapp_onboarding",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "whatsapp"],
    # A worker killed mid-call fails its task: the retry finishes the job without doing it twice.
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
    user_defined_macros={"sandbox_verification_code": read_verification_code},
    params={
        "cc": Param("1", type="string", description="Country dial code, without +"),
        "phone_number": Param("5550100001", type="string", description="Number without the country code"),
        "verified_name": Param("Acme Support", type="string", minLength=2, maxLength=75),
        "unattended": Param(True, type="boolean", description="Read the code from the Graph sandbox"),
    },
) as dag:
    # [START howto_operator_onboarding_create]
    create_phone_number = CreatePhoneNumberOperator(
        task_id="create_phone_number",
        cc="{{ params.cc }}",
        phone_number="{{ params.phone_number }}",
        verified_name="{{ params.verified_name }}",
        # Read back in the same call: where the number stands, if it was already on the WABA.
        fields="status,code_verification_status,platform_type",
    )
    # [END howto_operator_onboarding_create]

    # [START howto_operator_onboarding_resume]
    @task.branch
    def resume_point(node: dict[str, Any]) -> list[str]:
        """The steps still to run for the number, from what Graph holds of it."""
        from airflow_provider_whatsapp.onboarding import ONBOARDED, REGISTER, REQUEST_CODE, progress_of

        progress = progress_of(node)
        if progress.outcome == ONBOARDED:
            return ["wait_connected"]
        if progress.next_step == REGISTER:
            return ["register", "wait_connected"]
        if progress.next_step == REQUEST_CODE:
            return ["request_code", "register", "wait_connected"]
        raise AirflowFailException(f"Phone number {node['id']} is {node.get('status')} on Graph; not onboarding it")

    # [END howto_operator_onboarding_resume]

    # [START howto_operator_request_verification_code]
    request_code = RequestVerificationCodeOperator(
        task_id="request_code",
        phone_number_id=create_phone_number.output,
        code_method="SMS",
        language="en_US",
    )
    # [END howto_operator_request_verification_code]

    @task.branch
    def code_source(params: dict[str, Any]) -> str:
        if params["unattended"]:
            return "verify_code"
        if not AIRFLOW_V_3_1_PLUS:
            raise AirflowFailException(f"unattended=false: {HITL_NOTE}")
        return "enter_code"

    if AIRFLOW_V_3_1_PLUS:
        # [START howto_operator_hitl_code]
        enter_code = HITLEntryOperator(
            task_id="enter_code",
            subject="WhatsApp verification code",
            body="Enter the 6-digit code that was sent to the new number.",
            # No code yet when the task starts, so null must be valid: Airflow checks every param then.
            params={
                "code": Param(
                    None,
                    type=["null", "string"],
                    pattern="^[0-9]{6}$",
                    title="Verification code",
                    description="6 digits, as received by SMS or voice call",
                )
            },
            response_timeout=timedelta(minutes=10),
            # A code lives about ten minutes: a new run requests a fresh one, a retry would not.
            retries=0,
        )
        # [END howto_operator_hitl_code]
    else:
        # Same shape of DAG on every Airflow: the form's place is kept, and says why it is empty.
        @task(task_id="enter_code", doc_md=HITL_NOTE, retries=0)
        def enter_code_needs_airflow_3_1() -> None:
            raise AirflowSkipException(HITL_NOTE)

        enter_code = enter_code_needs_airflow_3_1()

    # [START howto_operator_verify_code]
    verify_code = VerifyCodeOperator(
        task_id="verify_code",
        phone_number_id=request_code.output,
        code=VERIFICATION_CODE,
        trigger_rule="none_failed_min_one_success",
    )
    # [END howto_operator_verify_code]

    # [START howto_operator_register]
    register = RegisterPhoneNumberOperator(
        task_id="register",
        phone_number_id=create_phone_number.output,
        pin_variable="whatsapp_two_step_pin",
        # After verify_code, or straight after resume_point for a number verified before.
        trigger_rule="none_failed_min_one_success",
    )
    # [END howto_operator_register]

    # [START howto_sensor_phone_number_status]
    wait_connected = PhoneNumberStatusSensor(
        task_id="wait_connected",
        phone_number_id=create_phone_number.output,
        trigger_rule="none_failed_min_one_success",
        # Waits on numbers of one WABA share one list read per interval in the triggerer.
        waba_id="{{ ti.xcom_pull(task_ids='create_phone_number', key='waba_id') }}",
        target={"code_verification_status": "VERIFIED", "status": "CONNECTED"},
        deferrable=True,
        poke_interval=1,
        timeout=600,
        # A retry only reads again: it covers Airflow's resume race (see the sensor's docs).
        retries=2,
        retry_delay=timedelta(seconds=5),
    )
    # [END howto_sensor_phone_number_status]

    @task
    def summary(node: dict[str, Any]) -> dict[str, Any]:
        report = {key: node.get(key) for key in ("id", "code_verification_status", "status")}
        print(f"Onboarded phone number {report['id']}: {report}")
        return report

    resume_point(create_phone_number.output["phone_number"]) >> [request_code, register, wait_connected]
    request_code >> code_source() >> [enter_code, verify_code]
    enter_code >> verify_code >> register >> wait_connected
    summary(wait_connected.output)
