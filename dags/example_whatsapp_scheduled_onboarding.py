"""Every hour, onboard the numbers a database table asks for, and write each row's outcome back.

The table ``whatsapp_onboarding_requests`` (DDL in ``whatsapp_onboarding_requests.sql`` beside this
file) is read and written through Airflow's SQL tooling, on the connection
``whatsapp_onboarding_db`` (any database with a ``DbApiHook``: PostgreSQL, MySQL, SQLite...).

``read_requests`` takes the open rows (``pending``, ``needs_code``); if the database cannot be
read the run fails there, before any Graph call. ``plan`` sets rows with bad input aside
(``invalid``, with the rule; no Graph call) and plans the rest from one list read per WABA, as the
bulk DAG does: a number continues where Graph says it stands, so a row left half done by an
earlier run is finished, never created or registered twice. Each start step has its mapped task
group: ``onboard`` (create, request code, verify, register), ``onboard_preverified`` (create with
the row's ``preverified_id``, register), ``resume_at_code``, ``resume_at_register``, and, when a
person enters the codes, ``onboard_until_code`` and ``resume_until_code`` (they stop once the code
is requested).
``write_back`` records every row in a transaction of its own: ``onboarded`` with the
phone-number ID, ``needs_code``, ``failed`` with Graph's code, subcode and message, ``invalid``
with the rule; throttled rows stay ``pending`` with nothing held against them, and transient
failures are tried again by the next runs, at most ``max_attempts`` times. It publishes each
WABA's newly onboarded numbers as the asset ``whatsapp://<waba_id>/phone_numbers`` (through the
alias ``whatsapp_onboarded_phone_numbers``), which ``example_whatsapp_onboarded_numbers`` consumes.

Verification codes: with the Variable ``whatsapp_onboarding_code_source`` set to ``sandbox`` (the
demo), the code the Graph sandbox sent is used. Otherwise a row stops at ``needs_code`` once its
code is requested, and a person completes it with ``example_whatsapp_onboarding`` (unattended off,
the code typed into its form); the next run finds the number registered and records it. Rows with
a ``preverified_id`` need no code.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.assets import Asset, AssetAlias
from airflow.providers.common.compat.sdk import DAG, Param, task, task_group

from airflow_provider_whatsapp.onboarding import CREATE, REGISTER, REQUEST_CODE, STEPS
from airflow_provider_whatsapp.onboarding_requests import (
    ASSET_ALIAS,
    CREATE_FOR_PERSON,
    CREATE_PREVERIFIED,
    REQUEST_CODE_FOR_PERSON,
)
from airflow_provider_whatsapp.onboarding_tasks import (
    RESUME_GROUPS,
    SANDBOX_CODE,
    StepGroup,
    code_request_step,
    code_steps,
    create_step,
    register_step,
    resume_task_groups,
)
from airflow_provider_whatsapp.sandbox.client import read_verification_code

DB_CONN_ID = "whatsapp_onboarding_db"
CODE_SOURCE_VARIABLE = "whatsapp_onboarding_code_source"
# The mapped task group of each start step (see plan_requests), and its steps.
GROUPS = {
    CREATE: StepGroup("onboard", STEPS),
    CREATE_PREVERIFIED: StepGroup("onboard_preverified", (CREATE, REGISTER)),
    CREATE_FOR_PERSON: StepGroup("onboard_until_code", (CREATE, REQUEST_CODE)),
    REQUEST_CODE_FOR_PERSON: StepGroup("resume_until_code", (REQUEST_CODE,)),
    **RESUME_GROUPS,
}


def codes_from_person() -> bool:
    """Whether verification codes come from a person (anything but ``sandbox`` in the Variable)."""
    from airflow.providers.common.compat.sdk import Variable

    return str(Variable.get(CODE_SOURCE_VARIABLE, default="person")) != "sandbox"


# [START howto_scheduled_onboarding_dag]
with DAG(
    dag_id="example_whatsapp_scheduled_onboarding",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Paused until someone unpauses it: the table and the connection must exist first.
    is_paused_upon_creation=True,
    # One run at a time: two runs would plan the same rows from the same Graph state.
    max_active_runs=1,
    max_active_tasks=16,
    tags=["example", "whatsapp"],
    # A worker killed mid-call fails its task: the retry finishes the job without doing it twice.
    # What still fails is left to the next runs, counted in the row's attempts.
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    user_defined_macros={"sandbox_verification_code": read_verification_code},
    params={"max_attempts": Param(5, type="integer", minimum=1, description="Runs a row may take")},
) as dag:
    # [END howto_scheduled_onboarding_dag]
    # [START howto_scheduled_onboarding_read]
    @task
    def read_requests() -> list[dict[str, Any]]:
        from airflow.providers.common.compat.sdk import BaseHook

        from airflow_provider_whatsapp.onboarding_requests import REQUEST_COLUMNS, select_open_requests

        db = BaseHook.get_hook(DB_CONN_ID)
        sql, parameters = select_open_requests(db.placeholder)
        rows = [dict(zip(REQUEST_COLUMNS, record, strict=True)) for record in db.get_records(sql, parameters)]
        print(f"{len(rows)} open requests")
        return rows

    @task
    def plan(rows: list[dict[str, Any]]) -> dict[str, Any]:
        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.onboarding import numbers_on_waba
        from airflow_provider_whatsapp.onboarding_requests import plan_requests

        hook = WhatsAppBusinessHook()
        planned = plan_requests(
            rows,
            hook.default_waba_id,
            lambda waba_id: numbers_on_waba(hook, waba_id),
            codes_from_person=codes_from_person(),
        )
        hook.close()
        return planned

    # [END howto_scheduled_onboarding_read]

    @task
    def requests_starting_at(planned: dict[str, Any], start: str) -> list[dict[str, Any]]:
        from airflow_provider_whatsapp.onboarding_requests import requests_starting_at

        return requests_starting_at(planned["numbers"], start)

    @task_group(group_id=GROUPS[CREATE].group_id)
    def onboard(cc: str, phone_number: str, verified_name: str, waba_id: str | None) -> None:
        code_steps(create_step(cc, phone_number, verified_name, waba_id).output, waba_id, SANDBOX_CODE)

    @task_group(group_id=GROUPS[CREATE_PREVERIFIED].group_id)
    def onboard_preverified(
        cc: str, phone_number: str, verified_name: str | None, waba_id: str | None, preverified_id: str
    ) -> None:
        register_step(create_step(cc, phone_number, verified_name, waba_id, preverified_id).output, waba_id)

    # [START howto_scheduled_onboarding_person]
    # Codes from a person: request the code and stop; the row is recorded as needs_code.
    @task_group(group_id=GROUPS[CREATE_FOR_PERSON].group_id)
    def onboard_until_code(cc: str, phone_number: str, verified_name: str, waba_id: str | None) -> None:
        code_request_step(create_step(cc, phone_number, verified_name, waba_id).output, waba_id)

    @task_group(group_id=GROUPS[REQUEST_CODE_FOR_PERSON].group_id)
    def resume_until_code(phone_number_id: str, waba_id: str) -> None:
        code_request_step(phone_number_id, waba_id)

    # [END howto_scheduled_onboarding_person]

    resume_at_code, resume_at_register = resume_task_groups(SANDBOX_CODE)

    # [START howto_scheduled_onboarding_write_back]
    @task(trigger_rule="all_done", outlets=[AssetAlias(ASSET_ALIAS)])
    def write_back(planned: dict[str, Any], params: dict[str, Any], ti: Any = None, outlet_events: Any = None) -> Any:
        from airflow.providers.common.compat.sdk import BaseHook

        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.onboarding import numbers_on_waba, report_onboarding
        from airflow_provider_whatsapp.onboarding_requests import (
            asset_uri,
            onboarded_by_waba,
            outcomes_of_run,
            write_outcomes,
        )
        from airflow_provider_whatsapp.onboarding_tasks import run_results

        def pull(task_id: str, index: int, key: str) -> Any:
            return ti.xcom_pull(task_ids=task_id, map_indexes=index, key=key)

        hook = WhatsAppBusinessHook()
        results = run_results(planned["numbers"], GROUPS, pull)
        # Graph is read again only for the WABAs whose numbers did not all finish.
        report = report_onboarding(planned["numbers"], results, lambda waba_id: numbers_on_waba(hook, waba_id))
        hook.close()
        outcomes = outcomes_of_run(planned, report, results, params["max_attempts"])
        db = BaseHook.get_hook(DB_CONN_ID)
        connection = db.get_conn()
        try:
            unwritten = write_outcomes(connection, db.placeholder, outcomes)
        finally:
            connection.close()
        rows = [number["row"] for number in planned["numbers"]]
        for waba_id, published in onboarded_by_waba(rows, outcomes, hook.default_waba_id).items():
            outlet_events[AssetAlias(ASSET_ALIAS)].add(Asset(asset_uri(waba_id)), extra=published)
        if unwritten:
            raise RuntimeError(f"{len(unwritten)} rows could not be written: {'; '.join(unwritten)}")
        return {request_id: values["status"] for request_id, values in outcomes.items()}

    # [END howto_scheduled_onboarding_write_back]

    planned = plan(read_requests())
    onboarding = [
        group.expand_kwargs(requests_starting_at.override(task_id=f"start_{GROUPS[start].group_id}")(planned, start))
        for start, group in (
            (CREATE, onboard),
            (CREATE_PREVERIFIED, onboard_preverified),
            (CREATE_FOR_PERSON, onboard_until_code),
            (REQUEST_CODE, resume_at_code),
            (REQUEST_CODE_FOR_PERSON, resume_until_code),
            (REGISTER, resume_at_register),
        )
    ]
    onboarding >> write_back(planned)
