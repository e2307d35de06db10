"""What became of every input number: the report of a run, from what Graph holds.

:func:`report_onboarding` says for each planned number what Graph holds at the end of a run,
reading a WABA again only when one of its numbers did not finish; :func:`combine_reports` joins
the reports of a run's onboarding tasks (one per batch) and, for a batch whose task left no report,
says what Airflow did and what Graph holds. Plain values in and out (XCom-ready).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_whatsapp.exceptions import GraphAPIError
from airflow_provider_whatsapp.onboarding.plan import (
    CREATE,
    NOT_CREATED,
    NOT_REGISTERED,
    ONBOARDED,
    UNKNOWN,
    Holding,
    WabaReader,
    held_numbers,
    number_digits,
    plan_onboarding,
    progress_of,
    readable_waba,
)

#: Why a number the run started has no result, when nothing more is known.
NO_RESULT = "its task did not run to its end (an upstream task failed, it was killed, or it never ran)"


def report_onboarding(
    numbers: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]], read: WabaReader
) -> dict[str, Any]:
    """
    What became of every input number, as Graph holds it.

    A number its run registered, or one the plan found done, is reported from Graph's own answers
    in this run. For the others Graph is read, once per WABA, before anything is said: a number
    that exists is never reported as not created. Returns ``counts`` (numbers per outcome) and
    ``numbers`` (one entry per input row: ``outcome``, ``phone_number_id``, ``started_at``,
    ``next_step`` for a number to continue, ``error`` of the step that failed, ``note``).

    :param numbers: the plan's ``numbers`` (see :func:`plan_onboarding`).
    :param results: what the run did for each of them, in the same order: ``registered_id`` (the
        ID its register step returned), or ``failed_step`` and ``error`` (the step's recorded
        ``whatsapp_error``), or nothing (the number started nowhere, or its tasks left no trace).
    :param read: reads one WABA (see :func:`numbers_on_waba`).
    """
    holdings: dict[str, Holding] = {}
    entries: list[dict[str, Any]] = []
    for planned, result in zip(numbers, results, strict=True):
        entry = {
            "number": planned["number"],
            "waba_id": planned.get("waba_id"),
            "outcome": planned.get("outcome"),
            "phone_number_id": planned.get("phone_number_id"),
            "status": planned.get("status"),
            "code_verification_status": planned.get("code_verification_status"),
            "started_at": planned.get("start"),
            "next_step": None,
            "error": planned.get("error"),
            "note": planned.get("note"),
        }
        if planned.get("duplicate_of") is None and planned.get("start") is not None:
            _settle(entry, planned, result, holdings, read)
        elif planned.get("outcome") == ONBOARDED:
            entry["note"] = "already onboarded before this run"
        if planned.get("adopted_as"):
            entry["note"] = _join(entry["note"], f"adopted: on the WABA as {planned['adopted_as']!r}, name not changed")
        entries.append(entry)
    for entry, planned in zip(entries, numbers, strict=True):
        if planned.get("duplicate_of") is not None:
            original = entries[planned["duplicate_of"]]
            for key in ("outcome", "phone_number_id", "status", "code_verification_status", "next_step"):
                entry[key] = original[key]
            entry["note"] = f"same number as row {planned['duplicate_of']}: onboarded once, reported there"
    return {"counts": dict(Counter(entry["outcome"] for entry in entries)), "numbers": entries}


def _settle(
    entry: dict[str, Any],
    planned: Mapping[str, Any],
    result: Mapping[str, Any],
    holdings: dict[str, Holding],
    read: WabaReader,
) -> None:
    """Fill in the outcome of a number the run worked on."""
    if result.get("registered_id"):
        entry.update(outcome=ONBOARDED, phone_number_id=str(result["registered_id"]), status=None)
        return
    entry["error"] = result.get("error")
    digits = number_digits(planned.get("cc"), planned.get("phone_number"))
    waba = readable_waba(planned.get("waba_id"))
    if digits is None or waba is None:
        # Bad input never reaches Graph: its error names the rule.
        entry.update(outcome=NOT_CREATED, phone_number_id=None)
        return
    held = held_numbers(holdings, waba, read, GraphAPIError)
    if isinstance(held, GraphAPIError):
        entry.update(outcome=UNKNOWN, note=f"did not finish, and Graph could not be read to check: {held.message}")
        return
    node = held.get(digits)
    progress = progress_of(node)
    entry.update(
        outcome=progress.outcome,
        phone_number_id=node.get("id") if node else None,
        status=node.get("status") if node else None,
        code_verification_status=node.get("code_verification_status") if node else None,
    )
    if result.get("note"):
        entry["note"] = _join(entry["note"], str(result["note"]))
    if progress.outcome == NOT_REGISTERED:
        entry["next_step"] = progress.next_step
        entry["note"] = _join(
            entry["note"], f"re-run the DAG with the same numbers: it continues at {progress.next_step}"
        )
    elif progress.outcome == ONBOARDED:
        entry["note"] = _join(entry["note"], "registered, though its task did not report it")
    if entry["error"] is None and progress.outcome != ONBOARDED and not result.get("code_requested"):
        # Said as what happened in Airflow: Graph refused nothing here.
        why = result.get("interrupted") or NO_RESULT
        entry["note"] = _join(
            entry["note"],
            f"its {result.get('failed_step') or planned.get('start') or CREATE} step left no result: {why}",
        )


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def describe(entry: Mapping[str, Any]) -> str:
    """One line of the report for a person: the number, its outcome, the error and what to do."""
    parts = [f"{entry['number']} on WABA {entry.get('waba_id')}: {entry['outcome']}"]
    if entry.get("phone_number_id"):
        parts.append(f"phone number ID {entry['phone_number_id']}")
    if entry.get("status"):
        parts.append(f"status {entry['status']}")
    error = entry.get("error")
    if error:
        code = f" (code {error['code']})" if error.get("code") is not None else ""
        parts.append(f"error{code}: {error.get('message')}")
    if entry.get("note"):
        parts.append(str(entry["note"]))
    return " | ".join(parts)


def combine_reports(
    batches: Sequence[Sequence[Mapping[str, Any]]],
    reports: Sequence[Mapping[str, Any] | None],
    default_waba_id: str | None,
    read: WabaReader,
    task_label: str = "onboard",
) -> dict[str, Any]:
    """
    One report for a run whose onboarding tasks each took a batch of rows.

    A batch whose task left a report is taken from it. For a batch whose task left none (it
    failed before it could, was killed, or never ran), what Graph holds of its rows is read, once
    per WABA, and each entry says so: Airflow's part, not Graph's. Returns ``counts``,
    ``numbers`` (each entry with its ``batch``; in batch order, then row order) and
    ``unfinished``: the numbers left for a later try (``retry``), with the batches that left no
    report in ``missing_batches``.

    :param batches: the rows of each batch, as the onboarding tasks were given them.
    :param reports: each batch's report (its task's return value), or ``None``.
    :param default_waba_id: the WABA of rows that name none.
    :param read: reads one WABA (see :func:`~airflow_provider_whatsapp.onboarding.plan.numbers_on_waba`).
    :param task_label: how the batches' task is named in the notes (its task ID).
    """
    entries: list[dict[str, Any]] = []
    missing: list[int] = []
    for index, (rows, report) in enumerate(zip(batches, reports, strict=True)):
        if report is not None and isinstance(report.get("numbers"), list):
            entries.extend({**entry, "batch": index} for entry in report["numbers"])
            continue
        missing.append(index)
        why = f"{task_label}[{index}] left no report: its task failed or was killed before it finished (see its log)"
        planned = plan_onboarding(rows, default_waba_id, read, unreadable=GraphAPIError)
        found = report_onboarding(planned, [{"interrupted": why} for _ in planned], read)
        for number, entry in zip(planned, found["numbers"], strict=True):
            unfinished = bool(number.get("start")) and entry["outcome"] != ONBOARDED
            entry.update(batch=index, row=number["row"], retry=unfinished or entry["outcome"] == UNKNOWN)
            if "key" in number:
                entry["key"] = number["key"]
            entries.append(entry)
    return {
        "counts": dict(Counter(entry["outcome"] for entry in entries)),
        "numbers": entries,
        "unfinished": sum(bool(entry.get("retry")) for entry in entries),
        "missing_batches": missing,
    }
