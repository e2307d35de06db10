"""Every hour, onboard the numbers a database table asks for, and write each row's outcome back.

The table ``whatsapp_onboarding_requests`` (DDL in ``whatsapp_onboarding_requests.sql`` beside this
file) is read and written through Airflow's SQL tooling, on the connection
``whatsapp_onboarding_db`` (any database with a ``DbApiHook`` and window functions: PostgreSQL,
MySQL 8, SQLite...).

``read_requests`` takes at most ``max_rows`` open rows (``pending``, ``needs_code``), oldest first
and in turns across WABAs; the rest stay as they are for the next run. If the database cannot be
read the run fails there, before any Graph call. ``plan`` sets rows with bad input aside
(``invalid``, with the rule; no Graph call) and puts the rest in batches, a WABA's rows together.
``onboard`` (``OnboardPhoneNumbersOperator``, mapped over the batches) onboards each batch in the
triggerer from one list read per WABA: a number continues where Graph says it stands, so a row
left half done by an earlier run is finished, never created or registered twice.
``write_back`` records every row in a transaction of its own: ``onboarded`` with the
phone-number ID, ``needs_code``, ``failed`` with Graph's code, subcode and message, ``invalid``
with the rule. A row is never ``failed`` without Graph's error: a throttle to wait out, Graph
unreachable, or a batch whose task failed before its report leave the row as it was, its
attempts untouched (and the last fails the run, naming the batches). Transient Graph errors are
tried again by the next runs, at most ``max_attempts`` times. It publishes each WABA's newly
onboarded numbers as the asset ``whatsapp://<waba_id>/phone_numbers`` (through the alias
``whatsapp_onboarded_phone_numbers``), which ``example_whatsapp_onboarded_numbers`` consumes.

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
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_whatsapp.onboarding.requests_table import ASSET_ALIAS
from airflow_provider_whatsapp.operators.onboarding import OnboardPhoneNumbersOperator

DB_CONN_ID = "whatsapp_onboarding_db"
CODE_SOURCE_VARIABLE = "whatsapp_onboarding_code_source"
PIN_VARIABLE = "whatsapp_two_step_pin"
# Demo only: the code the Graph sandbox "sent".
SANDBOX_CODE_SOURCE = "airflow_provider_whatsapp.sandbox.client.verification_code_for"
CODE_SOURCE_TEMPLATE = (
    f"{{{{ '{SANDBOX_CODE_SOURCE}' if var.value.get('{CODE_SOURCE_VARIABLE}', 'person') == 'sandbox' else '' }}}}"
)


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
    tags=["example", "whatsapp"],
    # A worker or triggerer killed mid-batch fails its task: the retry finishes the job without
    # doing it twice. What still fails is left to the next runs.
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "max_attempts": Param(5, type="integer", minimum=1, description="Runs a row may take"),
        "max_rows": Param(1000, type="integer", minimum=1, description="Open rows one run takes at most"),
        "batch_size": Param(1000, type="integer", minimum=1, description="Rows per onboarding task at most"),
    },
) as dag:
    # [END howto_scheduled_onboarding_dag]
    # [START howto_scheduled_onboarding_read]
    @task
    def read_requests(params: dict[str, Any]) -> list[dict[str, Any]]:
        from airflow.providers.common.compat.sdk import BaseHook

        from airflow_provider_whatsapp.onboarding.requests_table import REQUEST_COLUMNS, select_open_requests

        db = BaseHook.get_hook(DB_CONN_ID)
        sql, parameters = select_open_requests(db.placeholder, params["max_rows"])
        rows = [dict(zip(REQUEST_COLUMNS, record, strict=True)) for record in db.get_records(sql, parameters)]
        print(f"{len(rows)} open requests taken (at most {params['max_rows']})")
        return rows

    @task
    def plan(rows: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import conf

        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.onboarding.requests_table import plan_requests

        return plan_requests(
            rows,
            WhatsAppBusinessHook().default_waba_id,
            codes_from_person=codes_from_person(),
            batch_size=params["batch_size"],
            max_batches=conf.getint("core", "max_map_length", fallback=1024),
        )

    @task
    def batches_of(planned: dict[str, Any]) -> list[list[dict[str, Any]]]:
        return planned["batches"]

    # [END howto_scheduled_onboarding_read]

    rows = read_requests()
    planned = plan(rows)
    # [START howto_scheduled_onboarding_onboard]
    onboard = OnboardPhoneNumbersOperator.partial(
        task_id="onboard",
        pin_variable=PIN_VARIABLE,
        # Rendered per run: empty (codes from a person) unless the Variable says "sandbox".
        code_source=CODE_SOURCE_TEMPLATE,
    ).expand(numbers=batches_of(planned))
    # [END howto_scheduled_onboarding_onboard]

    # [START howto_scheduled_onboarding_write_back]
    @task(trigger_rule="all_done", outlets=[AssetAlias(ASSET_ALIAS)])
    def write_back(
        rows: list[dict[str, Any]],
        planned: dict[str, Any],
        params: dict[str, Any],
        ti: Any = None,
        outlet_events: Any = None,
    ) -> Any:
        from airflow.providers.common.compat.sdk import AirflowFailException, BaseHook

        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.onboarding.requests_table import (
            asset_uri,
            onboarded_by_waba,
            outcomes_of_run,
            write_outcomes,
        )

        reports = [ti.xcom_pull(task_ids="onboard", map_indexes=index) for index in range(len(planned["batches"]))]
        outcomes, missing = outcomes_of_run(rows, planned, reports, params["max_attempts"])
        db = BaseHook.get_hook(DB_CONN_ID)
        connection = db.get_conn()
        try:
            unwritten = write_outcomes(connection, db.placeholder, outcomes)
        finally:
            connection.close()
        for waba_id, published in onboarded_by_waba(rows, outcomes, WhatsAppBusinessHook().default_waba_id).items():
            outlet_events[AssetAlias(ASSET_ALIAS)].add(Asset(asset_uri(waba_id)), extra=published)
        problems = [f"{len(unwritten)} rows could not be written: {'; '.join(unwritten)}"] if unwritten else []
        if missing:
            problems.append(f"onboard{missing} left no report (their rows are left as they were, attempts untouched)")
        if problems:
            raise AirflowFailException(" | ".join(problems))
        return {request_id: values["status"] for request_id, values in outcomes.items()}

    # [END howto_scheduled_onboarding_write_back]

    onboard >> write_back(rows, planned)
