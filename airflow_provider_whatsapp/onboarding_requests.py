"""Onboarding requests kept in a database table: which rows a run takes, and what it writes back.

A scheduled DAG reads the open rows of ``whatsapp_onboarding_requests`` (DDL in
``docs/scheduled_onboarding.rst``), plans them with :mod:`airflow_provider_whatsapp.onboarding`
(one list read per WABA, each number continuing where it stands) and writes each row's outcome
back, one transaction per row. The statuses:

- ``pending``: to do, or to try again (a transient failure; at most ``max_attempts`` runs);
- ``needs_code``: created and a code requested; a person completes it (see the docs);
- ``onboarded``: registered, with its ``phone_number_id``;
- ``failed``: Graph refused it for a reason retrying cannot fix (code, subcode, message kept); a
  person resets it to ``pending`` to try again;
- ``invalid``: the input broke a rule (named in ``error_message``); nothing was sent.

SQL goes through a DB-API connection with the hook's placeholder, so any database Airflow's SQL
tooling supports will do. Plain values in and out; the DAG's tasks call these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import InvalidInputError
from airflow_provider_whatsapp.onboarding import (
    CREATE,
    CREATE_KEYS,
    NOT_CREATED,
    NOT_REGISTERED,
    ONBOARDED,
    REQUEST_CODE,
    UNKNOWN,
    WabaReader,
    plan_onboarding,
    starting_at,
)

TABLE = "whatsapp_onboarding_requests"
PENDING = "pending"
NEEDS_CODE = "needs_code"
FAILED = "failed"
INVALID = "invalid"
#: The statuses a run takes rows in; the others are final until a person resets them.
OPEN_STATUSES = (PENDING, NEEDS_CODE)
#: The input columns a run reads.
REQUEST_COLUMNS = (
    "request_id",
    "waba_id",
    "cc",
    "phone_number",
    "verified_name",
    "preverified_id",
    "status",
    "attempts",
)
#: The columns a run writes (besides ``updated_at``).
OUTCOME_COLUMNS = ("status", "phone_number_id", "error_code", "error_subcode", "error_message", "attempts")
DEFAULT_MAX_ATTEMPTS = 5
#: Error classes (``error_class`` of a recorded error) that a later run may get past.
THROTTLED = frozenset({"GraphThrottledError"})
TRANSIENT = frozenset({"GraphTransientError", "GraphResponseError", "GraphConnectionError"})
#: Where a pre-verified number to create starts: create with its ``preverified_id``, then register.
CREATE_PREVERIFIED = "create_preverified"
#: Where numbers start when their codes come from a person: create (or not), request the code, stop.
CREATE_FOR_PERSON = "create_for_person"
REQUEST_CODE_FOR_PERSON = "request_code_for_person"
#: The asset alias the write-back publishes each WABA's newly onboarded numbers through.
ASSET_ALIAS = "whatsapp_onboarded_phone_numbers"


class Cursor(Protocol):
    def execute(self, operation: str, parameters: Sequence[Any] = ..., /) -> Any: ...


class Connection(Protocol):
    """The part of a DB-API connection the write-back uses."""

    def cursor(self) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


def asset_uri(waba_id: str) -> str:
    """The asset a WABA's onboarded numbers are published as."""
    return f"whatsapp://{waba_id}/phone_numbers"


def select_open_requests(placeholder: str) -> tuple[str, tuple[str, ...]]:
    """The query (with the hook's ``placeholder``) and parameters that read the rows a run takes."""
    marks = ", ".join([placeholder] * len(OPEN_STATUSES))
    sql = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM {TABLE} WHERE status IN ({marks}) ORDER BY request_id"
    return sql, OPEN_STATUSES


def update_outcome(placeholder: str) -> str:
    """The statement that writes one row's outcome: the :data:`OUTCOME_COLUMNS`, then ``request_id``."""
    assignments = ", ".join(f"{column} = {placeholder}" for column in OUTCOME_COLUMNS)
    return f"UPDATE {TABLE} SET {assignments}, updated_at = CURRENT_TIMESTAMP WHERE request_id = {placeholder}"


def input_rule(row: Mapping[str, Any]) -> str | None:
    """The rule the row's input breaks (``"field: rule"``, the validation's own words), or ``None``."""
    try:
        cc = validation.country_code(row.get("cc"))
        validation.national_number(row.get("phone_number"), cc)
        if row.get("preverified_id") not in (None, ""):
            validation.graph_id("preverified_id", row["preverified_id"])
        elif row.get("verified_name") in (None, ""):
            raise InvalidInputError("verified_name", "is required for a number that is not pre-verified")
        validation.verified_name(row.get("verified_name"))
        if row.get("waba_id") not in (None, ""):
            validation.graph_id("waba_id", row["waba_id"])
    except InvalidInputError as error:
        return str(error)
    return None


def outcome(
    row: Mapping[str, Any], entry: Mapping[str, Any], result: Mapping[str, Any], max_attempts: int
) -> dict[str, Any] | None:
    """
    The row's new values (:data:`OUTCOME_COLUMNS`) after a run, or ``None`` to leave it as it is.

    :param row: the row as read (its ``status`` and ``attempts``).
    :param entry: the number's entry in the run's report (see
        :func:`~airflow_provider_whatsapp.onboarding.report_onboarding`).
    :param result: what its tasks did (see :func:`~airflow_provider_whatsapp.onboarding_tasks.run_results`).
    :param max_attempts: runs a transient failure may take before the row is ``failed``.
    """
    attempts = int(row.get("attempts") or 0)
    phone_number_id = entry.get("phone_number_id")
    error = entry.get("error") or {}
    if entry["outcome"] == ONBOARDED:
        return _values(ONBOARDED, phone_number_id, attempts=attempts + bool(entry.get("started_at")))
    if error.get("error_class") in THROTTLED:
        # Graph asked us to slow down: nothing is wrong with the row, and it is not its attempt.
        return None
    if error.get("error_class") == "InvalidInputError":
        return _values(INVALID, phone_number_id, message=error.get("message"), attempts=attempts)
    if entry["outcome"] == NOT_REGISTERED and result.get("code_requested") and not error:
        return _values(NEEDS_CODE, phone_number_id, attempts=attempts + 1)
    if entry["outcome"] == NOT_REGISTERED and row.get("status") == NEEDS_CODE and not entry.get("started_at"):
        return None
    if entry["outcome"] not in (NOT_CREATED, NOT_REGISTERED, UNKNOWN, None):
        # Banned, deleted, migrated away...: left alone on Graph, and by us.
        return _values(FAILED, phone_number_id, message=f"the number is {entry['outcome']} on Graph", attempts=attempts)
    if error and error.get("error_class") not in TRANSIENT:
        return _values(FAILED, phone_number_id, error=error, attempts=attempts + 1)
    # Transient, or ended without an answer: the next run continues where Graph says it stands.
    attempts += 1
    status = FAILED if attempts >= max_attempts else PENDING
    return _values(status, phone_number_id, error=error or None, attempts=attempts)


def _values(
    status: str,
    phone_number_id: Any,
    *,
    attempts: int,
    error: Mapping[str, Any] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    error = error or {}
    return {
        "status": status,
        "phone_number_id": str(phone_number_id) if phone_number_id else None,
        "error_code": error.get("code"),
        "error_subcode": error.get("error_subcode"),
        "error_message": message or error.get("message"),
        "attempts": attempts,
    }


def write_outcomes(connection: Connection, placeholder: str, outcomes: Mapping[Any, Mapping[str, Any]]) -> list[str]:
    """
    Write each row's outcome in a transaction of its own; return the rows that could not be written.

    A row that fails is rolled back and the others are still written: one bad row must not undo
    what the run learnt of the rest.

    :param connection: a DB-API connection (``hook.get_conn()``), not in autocommit mode.
    :param placeholder: the hook's parameter placeholder (``%s``, ``?``).
    :param outcomes: the new values by ``request_id``.
    """
    statement = update_outcome(placeholder)
    unwritten = []
    for request_id, values in outcomes.items():
        cursor = connection.cursor()
        try:
            cursor.execute(statement, [*(values[column] for column in OUTCOME_COLUMNS), request_id])
            connection.commit()
        except Exception as error:  # the driver's own error classes differ per database
            connection.rollback()
            unwritten.append(f"{request_id}: {type(error).__name__}: {error}")
        finally:
            cursor.close()
    return unwritten


def onboarded_by_waba(
    rows: Sequence[Mapping[str, Any]], outcomes: Mapping[Any, Mapping[str, Any]], default_waba_id: str | None
) -> dict[str, dict[str, Any]]:
    """The rows this run moved to ``onboarded``, grouped by WABA: ``phone_number_ids`` and ``request_ids``."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        values = outcomes.get(str(row["request_id"]))
        if values is None or values["status"] != ONBOARDED or row.get("status") == ONBOARDED:
            continue
        waba_id = str(row.get("waba_id") or default_waba_id)
        published = found.setdefault(waba_id, {"waba_id": waba_id, "phone_number_ids": [], "request_ids": []})
        published["phone_number_ids"].append(values["phone_number_id"])
        published["request_ids"].append(str(row["request_id"]))
    return found


def plan_requests(
    rows: Sequence[Mapping[str, Any]], default_waba_id: str | None, read: WabaReader, *, codes_from_person: bool
) -> dict[str, Any]:
    """
    Plan a run over the table's open rows: bad input set aside, the rest planned from Graph.

    Returns ``invalid`` (the new values of the rows whose input breaks a rule, by ``request_id``:
    they cost no Graph call) and ``numbers`` (the plan of the others, see
    :func:`~airflow_provider_whatsapp.onboarding.plan_onboarding`, each with its ``row``). A
    pre-verified number to create starts at :data:`CREATE_PREVERIFIED`. When codes come from a
    person, a ``needs_code`` row is not sent another code: it waits for that person.

    :param rows: the open rows, as dicts of :data:`REQUEST_COLUMNS`.
    :param default_waba_id: the WABA of rows that name none.
    :param read: reads one WABA (see :func:`~airflow_provider_whatsapp.onboarding.numbers_on_waba`).
    :param codes_from_person: whether verification codes come from a person (else from the sandbox).
    """
    invalid: dict[str, dict[str, Any]] = {}
    valid = []
    for row in rows:
        rule = input_rule(row)
        if rule is None:
            valid.append(row)
        else:
            invalid[str(row["request_id"])] = _values(
                INVALID, None, message=rule, attempts=int(row.get("attempts") or 0)
            )
    numbers = plan_onboarding(valid, default_waba_id, read)
    for entry, row in zip(numbers, valid, strict=True):
        entry.update(row=dict(row), preverified_id=row.get("preverified_id") or None)
        if entry["start"] == CREATE and entry["preverified_id"]:
            entry["start"] = CREATE_PREVERIFIED
        elif codes_from_person and entry["start"] == CREATE:
            entry["start"] = CREATE_FOR_PERSON
        elif codes_from_person and entry["start"] == REQUEST_CODE:
            if row.get("status") == NEEDS_CODE:
                entry.update(start=None, outcome=NOT_REGISTERED, note="waiting for a person to enter its code")
            else:
                entry["start"] = REQUEST_CODE_FOR_PERSON
    return {"invalid": invalid, "numbers": numbers}


def requests_starting_at(numbers: Sequence[Mapping[str, Any]], start: str) -> list[dict[str, Any]]:
    """The keyword arguments of the mapped task group that runs the numbers planned to start at ``start``."""
    if start == CREATE_PREVERIFIED:
        return starting_at(numbers, start, keys=(*CREATE_KEYS, "preverified_id"))
    if start == CREATE_FOR_PERSON:
        return starting_at(numbers, start, keys=CREATE_KEYS)
    return starting_at(numbers, start)


def outcomes_of_run(
    plan: Mapping[str, Any], report: Mapping[str, Any], results: Sequence[Mapping[str, Any]], max_attempts: int
) -> dict[str, dict[str, Any]]:
    """Every row's new values after the run, by ``request_id``; rows to leave as they are are left out."""
    found = dict(plan["invalid"])
    for planned, entry, result in zip(plan["numbers"], report["numbers"], results, strict=True):
        values = outcome(planned["row"], entry, result, max_attempts)
        if values is not None:
            found[str(planned["row"]["request_id"])] = values
    return found
