"""Onboard many numbers at once with dynamic task mapping; one bad number does not stop the rest.

The numbers come from the ``numbers`` DAG param (a list of ``{"cc", "phone_number",
"verified_name"}``) or, when it is empty, from ``whatsapp_bulk_numbers.csv`` beside this file.
Each number runs through its own mapped task group (create -> request code -> verify ->
register); a final ``report`` task says which numbers succeeded and, for the others, which step
failed and why (the Graph error, or the input rule that was broken).

Codes are read from the Graph sandbox: in production, use pre-verified numbers
(``preverified_id``) or a human step as in ``example_whatsapp_onboarding``.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task, task_group

from airflow_provider_whatsapp.operators.phone_numbers import (
    CreatePhoneNumberOperator,
    RegisterPhoneNumberOperator,
    RequestVerificationCodeOperator,
    VerifyCodeOperator,
)
from airflow_provider_whatsapp.sandbox.client import read_verification_code

NUMBERS_CSV = Path(__file__).with_name("whatsapp_bulk_numbers.csv")
STEPS = ("create_phone_number", "request_code", "verify_code", "register")
GROUP = "onboard"

with DAG(
    dag_id="example_whatsapp_bulk_onboarding",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "whatsapp"],
    max_active_tasks=16,
    user_defined_macros={"sandbox_verification_code": read_verification_code},
    params={
        "numbers": Param([], type="array", description="Numbers to onboard; empty: the CSV beside the DAG"),
    },
) as dag:

    @task
    def numbers_to_onboard(params: dict[str, Any]) -> list[dict[str, str]]:
        if params["numbers"]:
            return [dict(number) for number in params["numbers"]]
        with NUMBERS_CSV.open(newline="") as handle:
            return list(csv.DictReader(handle))

    # [START howto_bulk_onboarding_mapped_group]
    @task_group(group_id=GROUP)
    def onboard(cc: str, phone_number: str, verified_name: str) -> None:
        create = CreatePhoneNumberOperator(
            task_id="create_phone_number", cc=cc, phone_number=phone_number, verified_name=verified_name
        )
        request_code = RequestVerificationCodeOperator(task_id="request_code", phone_number_id=create.output)
        verify = VerifyCodeOperator(
            task_id="verify_code",
            phone_number_id=request_code.output,
            code=(
                "{{ sandbox_verification_code(conn.whatsapp_default.host, "
                "ti.xcom_pull(task_ids='onboard.request_code', map_indexes=ti.map_index)) }}"
            ),
        )
        RegisterPhoneNumberOperator(
            task_id="register", phone_number_id=verify.output, pin_variable="whatsapp_two_step_pin"
        )

    numbers = numbers_to_onboard()
    onboarded = onboard.expand_kwargs(numbers)
    # [END howto_bulk_onboarding_mapped_group]

    @task(trigger_rule="all_done")
    def report(numbers: list[dict[str, str]], ti: Any = None) -> dict[str, Any]:
        succeeded, failed = [], []
        for index, number in enumerate(numbers):
            label = f"cc={number.get('cc')} phone_number={number.get('phone_number')}"
            registered = ti.xcom_pull(task_ids=f"{GROUP}.register", map_indexes=index)
            if registered:
                succeeded.append({"number": label, "phone_number_id": registered})
                continue
            for step in STEPS:
                error = ti.xcom_pull(task_ids=f"{GROUP}.{step}", map_indexes=index, key="whatsapp_error")
                if error:
                    failed.append({"number": label, "step": step, "error": error})
                    break
            else:
                failed.append({"number": label, "step": None, "error": {"message": "did not finish"}})
        print(f"Onboarded {len(succeeded)} of {len(numbers)} numbers")
        for failure in failed:
            print(f"FAILED {failure['number']} at {failure['step']}: {failure['error'].get('message')}")
        return {"succeeded": succeeded, "failed": failed}

    onboarded >> report(numbers)
