"""The bulk onboarding design before the onboarding operator, kept as the throughput benchmark's baseline.

A mapped task group of create -> request code -> verify -> register per number, from one list
read per WABA (the same plan, the same operators, the same report), as
``example_whatsapp_bulk_onboarding`` was until the onboarding operator replaced it: four task
instances per number, and no more numbers in a run than ``[core] max_map_length``.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task, task_group

from airflow_provider_whatsapp.onboarding.plan import CREATE, REGISTER, REQUEST_CODE, STEPS
from airflow_provider_whatsapp.onboarding.task_groups import (
    RESUME_GROUPS,
    SANDBOX_CODE,
    StepGroup,
    code_steps,
    resume_task_groups,
)
from airflow_provider_whatsapp.operators.phone_numbers import CreatePhoneNumberOperator
from airflow_provider_whatsapp.sandbox.client import read_verification_code

NUMBERS_CSV = Path(__file__).with_name("whatsapp_bulk_numbers.csv")
# The mapped task group each start step runs in, and its steps.
GROUPS = {
    CREATE: StepGroup("onboard", STEPS),
    **RESUME_GROUPS,
}

with DAG(
    dag_id="bench_mapped_bulk_onboarding",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["benchmark", "whatsapp"],
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
        from airflow_provider_whatsapp.onboarding.plan import numbers_on_waba, plan_onboarding

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
        from airflow_provider_whatsapp.onboarding.plan import starting_at

        return starting_at(numbers, step)

    # [END howto_bulk_onboarding_plan]

    # [START howto_bulk_onboarding_mapped_group]
    @task_group(group_id=GROUPS[CREATE].group_id)
    def onboard(cc: str, phone_number: str, verified_name: str, waba_id: str | None) -> None:
        create = CreatePhoneNumberOperator(
            task_id="create_phone_number",
            cc=cc,
            phone_number=phone_number,
            verified_name=verified_name,
            waba_id=waba_id,
        )
        code_steps(create.output, waba_id, SANDBOX_CODE)

    # The later starting points: request code -> verify -> register, or register alone.
    resume_at_code, resume_at_register = resume_task_groups(SANDBOX_CODE)

    numbers = numbers_to_onboard()
    onboarding = [
        group.expand_kwargs(numbers_starting_at.override(task_id=f"start_{GROUPS[step].group_id}")(numbers, step))
        for step, group in ((CREATE, onboard), (REQUEST_CODE, resume_at_code), (REGISTER, resume_at_register))
    ]
    # [END howto_bulk_onboarding_mapped_group]

    # [START howto_bulk_onboarding_report]
    @task(trigger_rule="all_done")
    def report(numbers: list[dict[str, Any]], ti: Any = None) -> dict[str, Any]:
        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.onboarding.plan import numbers_on_waba
        from airflow_provider_whatsapp.onboarding.report import describe, report_onboarding
        from airflow_provider_whatsapp.onboarding.task_groups import run_results

        hook = WhatsAppBusinessHook()
        # Graph is read again only for the WABAs whose numbers did not all finish.
        summary = report_onboarding(
            numbers,
            run_results(
                numbers, GROUPS, lambda task_id, index, key: ti.xcom_pull(task_ids=task_id, map_indexes=index, key=key)
            ),
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
