"""Onboard any number of numbers, on one WABA or many; a re-run finishes what a crash left.

The numbers come from the ``numbers`` DAG param (a list of ``{"cc", "phone_number",
"verified_name", "waba_id"}``) or, when it is empty, from ``whatsapp_bulk_numbers.csv`` beside this
file. ``waba_id`` is optional per number (the connection's ``waba_id`` extra when missing or
blank), so one run can onboard numbers of many businesses.

``batches_to_onboard`` splits the rows into batches, a WABA's rows kept together, and
``onboard`` (``OnboardPhoneNumbersOperator``, mapped over the batches) onboards each batch in the
triggerer: one list read per WABA says where each number stands, each then goes on from there
(create -> request code -> verify -> register), a few numbers of each WABA at a time, each WABA at
the pace of its own budget, holding no worker slot. A thousand numbers cost two task instances
per batch, not four per number, and any number of rows stays far below ``[core] max_map_length``.
A number already onboarded costs nothing more; one left half done continues at its step; none is
created or registered twice. Every task retries (``default_args``); a retried batch plans again
from what Graph holds.

The final ``report`` says, for every input row, what Graph holds (``onboarded``, ``created, not
registered`` with the step a re-run continues at, ``not created`` with the Graph error or the
input rule, a status it is left alone in), and fails the run, naming why, when numbers were left
unfinished for Airflow's reasons (a batch's task failed or was killed) or for a reason a retry may
cure. A number Graph refused, or a row that breaks an input rule, is reported and does not fail it.

Codes are read from the Graph sandbox: in production, use pre-verified numbers
(``preverified_id``), a code source of your own, or a human step as in
``example_whatsapp_onboarding``.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_whatsapp.operators.onboarding import OnboardPhoneNumbersOperator

NUMBERS_CSV = Path(__file__).with_name("whatsapp_bulk_numbers.csv")
PIN_VARIABLE = "whatsapp_two_step_pin"
# Demo only: the code the Graph sandbox "sent" (in production: pre-verified numbers, or your own source).
SANDBOX_CODE_SOURCE = "airflow_provider_whatsapp.sandbox.client.verification_code_for"

with DAG(
    dag_id="example_whatsapp_bulk_onboarding",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "whatsapp"],
    # [START howto_bulk_onboarding_retries]
    # A worker or triggerer killed mid-batch fails its task: the retry finishes the job without doing it twice.
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
    # [END howto_bulk_onboarding_retries]
    params={
        "numbers": Param([], type="array", description="Numbers to onboard; empty: the CSV beside the DAG"),
        "batch_size": Param(1000, type="integer", minimum=1, description="Numbers per onboarding task at most"),
    },
) as dag:
    # [START howto_bulk_onboarding_batches]
    @task
    def batches_to_onboard(params: dict[str, Any]) -> list[list[dict[str, Any]]]:
        from airflow.providers.common.compat.sdk import conf

        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.onboarding.plan import onboarding_batches

        if params["numbers"]:
            rows = [dict(number) for number in params["numbers"]]
        else:
            with NUMBERS_CSV.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        batches = onboarding_batches(
            rows,
            WhatsAppBusinessHook().default_waba_id,
            params["batch_size"],
            max_batches=conf.getint("core", "max_map_length", fallback=1024),
        )
        print(f"{len(rows)} numbers in {len(batches)} batches")
        return batches

    batches = batches_to_onboard()
    # [END howto_bulk_onboarding_batches]

    # [START howto_bulk_onboarding_operator]
    onboard = OnboardPhoneNumbersOperator.partial(
        task_id="onboard",
        pin_variable=PIN_VARIABLE,
        code_source=SANDBOX_CODE_SOURCE,
    ).expand(numbers=batches)
    # [END howto_bulk_onboarding_operator]

    # [START howto_bulk_onboarding_report]
    @task(trigger_rule="all_done")
    def report(batches: list[list[dict[str, Any]]], ti: Any = None) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import AirflowFailException

        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.onboarding.plan import numbers_on_waba
        from airflow_provider_whatsapp.onboarding.report import combine_reports, describe

        hook = WhatsAppBusinessHook()
        reports = [ti.xcom_pull(task_ids="onboard", map_indexes=index) for index in range(len(batches))]
        # Graph is read only for the batches whose task left no report.
        summary = combine_reports(
            batches, reports, hook.default_waba_id, lambda waba_id: numbers_on_waba(hook, waba_id)
        )
        hook.close()
        print(f"{len(summary['numbers'])} numbers: {summary['counts']}")
        for entry in summary["numbers"]:
            if entry["outcome"] != "onboarded" or entry["note"]:
                print(describe(entry))
        if summary["unfinished"]:
            # Kept for whoever reads the run: the failure below says why, the summary what.
            ti.xcom_push(key="return_value", value=summary)
            raise AirflowFailException(
                f"{summary['unfinished']} numbers were not finished (batches without a report: "
                f"{summary['missing_batches'] or 'none'}); run the DAG again with the same numbers to finish them"
            )
        return summary

    onboard >> report(batches)
    # [END howto_bulk_onboarding_report]
