"""Onboard many numbers at once with dynamic task mapping; a re-run finishes what a crash left.

The numbers come from the ``numbers`` DAG param (a list of ``{"cc", "phone_number",
"verified_name", "waba_id"}``) or, when it is empty, from ``whatsapp_bulk_numbers.csv`` beside this
file. ``waba_id`` is optional per number (the connection's ``waba_id`` extra when missing or
blank), so one run can onboard numbers of many businesses; each WABA's calls are paced by that
WABA's own rate limit.

``numbers_to_onboard`` reads each WABA's numbers once and sends each input number to the step it
stands at: a new number through ``onboard`` (create -> request code -> verify -> register), one
created but not verified through ``resume_at_code``, one verified but not registered through
``resume_at_register``; a number already onboarded, banned or deleted goes nowhere and costs no
further call. Running the DAG again with the same numbers therefore finishes what a killed worker
left half done and touches nothing that is done. Every task retries (``default_args``): a retried
create adopts the number its killed try made, a retried register does not register twice.
The final ``report`` says, for every input number, what Graph holds: ``onboarded``, ``created, not
registered`` (and the step a re-run continues at) or ``not created`` (with the Graph error or the
input rule); for numbers that did not finish it reads Graph again before it speaks.

Codes are read from the Graph sandbox: in production, use pre-verified numbers
(``preverified_id``) or a human step as in ``example_whatsapp_onboarding``.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task, task_group

from airflow_provider_whatsapp.onboarding import CREATE, REGISTER, REQUEST_CODE, STEPS
from airflow_provider_whatsapp.operators.phone_numbers import (
    CreatePhoneNumberOperator,
    RegisterPhoneNumberOperator,
    RequestVerificationCodeOperator,
    VerifyCodeOperator,
)
from airflow_provider_whatsapp.sandbox.client import read_verification_code

NUMBERS_CSV = Path(__file__).with_name("whatsapp_bulk_numbers.csv")
# The mapped task group each start step runs in.
GROUPS = {CREATE: "onboard", REQUEST_CODE: "resume_at_code", REGISTER: "resume_at_register"}
# The code the sandbox sent for the number of this group's request_code task.
SANDBOX_CODE = (
    "{{ sandbox_verification_code(conn.whatsapp_default.host, ti.xcom_pull("
    "task_ids=ti.task_id | replace('verify_code', 'request_code'), map_indexes=ti.map_index)) }}"
)

with DAG(
    dag_id="example_whatsapp_bulk_onboarding",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "whatsapp"],
    max_active_tasks=16,
    # [START howto_bulk_onboarding_retries]
    # A worker killed mid-call fails its task: the retry finishes the job without doing it twice.
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
    # [END howto_bulk_onboarding_retries]
    user_defined_macros={"sandbox_verification_code": read_verification_code},
    params={
        "numbers": Param([], type="array", description="Numbers to onboard; empty: the CSV beside the DAG"),
    },
) as dag:
    # [START howto_bulk_onboarding_plan]
    @task
    def numbers_to_onboard(params: dict[str, Any]) -> list[dict[str, Any]]:
        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.onboarding import numbers_on_waba, plan_onboarding

        if params["numbers"]:
            rows = [dict(number) for number in params["numbers"]]
        else:
            with NUMBERS_CSV.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        hook = WhatsAppBusinessHook()
        # One list read per WABA: where every number stands, before anything is sent.
        plan = plan_onboarding(rows, hook.default_waba_id, lambda waba_id: numbers_on_waba(hook, waba_id))
        hook.close()
        return plan

    @task
    def numbers_starting_at(numbers: list[dict[str, Any]], step: str) -> list[dict[str, Any]]:
        from airflow_provider_whatsapp.onboarding import starting_at

        return starting_at(numbers, step)

    # [END howto_bulk_onboarding_plan]

    def register(phone_number_id: Any, waba_id: Any) -> None:
        RegisterPhoneNumberOperator(
            task_id="register", phone_number_id=phone_number_id, waba_id=waba_id, pin_variable="whatsapp_two_step_pin"
        )

    def verify_and_register(phone_number_id: Any, waba_id: Any) -> None:
        request_code = RequestVerificationCodeOperator(
            task_id="request_code", phone_number_id=phone_number_id, waba_id=waba_id
        )
        verify = VerifyCodeOperator(
            task_id="verify_code", phone_number_id=request_code.output, waba_id=waba_id, code=SANDBOX_CODE
        )
        register(verify.output, waba_id)

    # [START howto_bulk_onboarding_mapped_group]
    @task_group(group_id=GROUPS[CREATE])
    def onboard(cc: str, phone_number: str, verified_name: str, waba_id: str | None) -> None:
        create = CreatePhoneNumberOperator(
            task_id="create_phone_number",
            cc=cc,
            phone_number=phone_number,
            verified_name=verified_name,
            waba_id=waba_id,
        )
        verify_and_register(create.output, waba_id)

    @task_group(group_id=GROUPS[REQUEST_CODE])
    def resume_at_code(phone_number_id: str, waba_id: str) -> None:
        verify_and_register(phone_number_id, waba_id)

    @task_group(group_id=GROUPS[REGISTER])
    def resume_at_register(phone_number_id: str, waba_id: str) -> None:
        register(phone_number_id, waba_id)

    numbers = numbers_to_onboard()
    onboarding = [
        group.expand_kwargs(numbers_starting_at.override(task_id=f"start_{GROUPS[step]}")(numbers, step))
        for step, group in ((CREATE, onboard), (REQUEST_CODE, resume_at_code), (REGISTER, resume_at_register))
    ]
    # [END howto_bulk_onboarding_mapped_group]

    # [START howto_bulk_onboarding_report]
    @task(trigger_rule="all_done")
    def report(numbers: list[dict[str, Any]], ti: Any = None) -> dict[str, Any]:
        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.onboarding import describe, map_indexes, numbers_on_waba, report_onboarding

        def result_of(number: dict[str, Any], index: int | None) -> dict[str, Any]:
            if number.get("start") is None or index is None:
                return {}
            group = GROUPS[number["start"]]
            registered = ti.xcom_pull(task_ids=f"{group}.register", map_indexes=index)
            if registered:
                return {"registered_id": registered}
            for step in STEPS[STEPS.index(number["start"]) :]:
                error = ti.xcom_pull(task_ids=f"{group}.{step}", map_indexes=index, key="whatsapp_error")
                if error:
                    return {"failed_step": step, "error": error}
            return {}

        hook = WhatsAppBusinessHook()
        # Graph is read again only for the WABAs whose numbers did not all finish.
        summary = report_onboarding(
            numbers,
            [result_of(number, index) for number, index in zip(numbers, map_indexes(numbers), strict=True)],
            lambda waba_id: numbers_on_waba(hook, waba_id),
        )
        hook.close()
        print(f"{len(numbers)} numbers: {summary['counts']}")
        for entry in summary["numbers"]:
            if entry["outcome"] != "onboarded" or entry["note"]:
                print(describe(entry))
        return summary

    onboarding >> report(numbers)
    # [END howto_bulk_onboarding_report]
