"""Many task processes at once against one WABA's budget: a create task per number, mapped.

Served by the shared deployment (tests/e2e/shared_deployment.py) beside the example DAGs, for
tests/e2e/test_deployment_budgets.py: each mapped task runs in a process of its own, so what one
learns of the WABA's budget reaches the others only through the deployment's shared view.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_whatsapp.operators.phone_numbers import CreatePhoneNumberOperator

with DAG(
    dag_id="e2e_budget_contention",
    schedule=None,
    catchup=False,
    params={
        "waba_id": Param("0", type="string", description="The WABA whose budget the tasks share"),
        "numbers": Param([], type="array", description="Numbers to create, without the country code"),
        "whatsapp_conn_id": Param("whatsapp_default", type="string"),
    },
    tags=["e2e"],
) as dag:

    @task
    def numbers_to_create(params: dict[str, Any]) -> list[str]:
        return [str(number) for number in params["numbers"]]

    CreatePhoneNumberOperator.partial(
        task_id="create_phone_number",
        waba_id="{{ params.waba_id }}",
        cc="1",
        verified_name="Budget Contention",
        whatsapp_conn_id="{{ params.whatsapp_conn_id }}",
    ).expand(phone_number=numbers_to_create())
