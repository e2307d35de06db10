"""Onboarding requests kept in a database table: which rows a run takes, and what it writes back.

A scheduled DAG reads at most a given number of the open rows of ``whatsapp_onboarding_requests``
(DDL in ``docs/scheduled_onboarding.rst``), oldest first and taking turns across WABAs, sets rows
with bad input aside, and hands the others in batches to the onboarding operator, which plans
them from one list read per WABA (each number continuing where it stands). Each row's outcome is
written back from the batch reports, one transaction per row. The statuses:

- ``pending``: to do, or to try again (a transient Graph error; at most ``max_attempts`` runs);
- ``needs_code``: created and a code requested; a person completes it (see the docs);
- ``onboarded``: registered, with its ``phone_number_id``;
- ``failed``: Graph refused it for a reason retrying cannot fix (code, subcode, message kept); a
  person resets it to ``pending`` to try again;
- ``invalid``: the input broke a rule (named in ``error_message``); nothing was sent.

A row becomes ``failed`` only with Graph's error, and ``invalid`` only with an input rule. What
Graph did not answer (a throttle it asked to wait out, Graph unreachable, the run's deadline) and
what Airflow did (a batch's task failed or killed before its report) leave the row as it was,
its attempts untouched: the next run takes it again.

SQL goes through a DB-API connection with the hook's placeholder, so any database Airflow's SQL
tooling supports with window functions (PostgreSQL, MySQL 8, SQLite 3.25) will do. Plain values in
and out; the DAG's tasks call these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import (
    GraphConnectionError,
    GraphThrottledError,
    GraphTransientError,
    InvalidInputError,
    recorded_as,
)
from airflow_provider_whatsapp.onboarding.plan import (
    CREATE_KEYS,
    DEFAULT_BATCH_SIZE,
    NOT_CREATED,
    NOT_REGISTERED,
    ONBOARDED,
    UNKNOWN,
    onboarding_batches,
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
#: Rows one run takes at most, by default.
DEFAULT_MAX_ROWS = 1_000
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


def select_open_requests(placeholder: str, max_rows: int) -> tuple[str, tuple[Any, ...]]:
    """
    The query (with the hook's ``placeholder``) and parameters that read the rows a run takes.

    At most ``max_rows`` open rows, oldest first, taking turns across WABAs: each WABA's oldest row
    comes before any WABA's second, so one business with many requests does not hold the others
    back. Rows beyond the cap are not read: they stay as they are for the next run.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise InvalidInputError("max_rows", "must be a whole number of at least 1")
    marks = ", ".join([placeholder] * len(OPEN_STATUSES))
    columns = ", ".join(REQUEST_COLUMNS)
    sql = (
        f"SELECT {columns} FROM ("
        f"SELECT {columns}, created_at, ROW_NUMBER() OVER "
        f"(PARTITION BY COALESCE(waba_id, '') ORDER BY created_at, request_id) AS waba_turn "
        f"FROM {TABLE} WHERE status IN ({marks})"
        f") open_requests ORDER BY waba_turn, created_at, request_id LIMIT {placeholder}"
    )
    return sql, (*OPEN_STATUSES, max_rows)


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


def outcome(row: Mapping[str, Any], entry: Mapping[str, Any], max_attempts: int) -> dict[str, Any] | None:
    """
    The row's new values (:data:`OUTCOME_COLUMNS`) after a run, or ``None`` to leave it as it is.

    :param row: the row as read (its ``status`` and ``attempts``).
    :param entry: the number's entry in its batch's report (see
        :class:`~airflow_provider_whatsapp.operators.onboarding.OnboardPhoneNumbersOperator`).
    :param max_attempts: runs a transient Graph error may take before the row is ``failed``.
    """
    attempts = int(row.get("attempts") or 0)
    phone_number_id = entry.get("phone_number_id")
    error = entry.get("error") or {}
    result = entry.get("result") or {}
    if entry["outcome"] == ONBOARDED:
        return _values(ONBOARDED, phone_number_id, attempts=attempts + bool(entry.get("started_at")))
    if result.get("interrupted") or recorded_as(error, GraphThrottledError, GraphConnectionError):
        # Graph asked us to wait, could not be reached, or the run ran out of time: nothing is
        # wrong with the row, and it is not its attempt.
        return None
    if recorded_as(error, InvalidInputError):
        return _values(INVALID, phone_number_id, message=error.get("message"), attempts=attempts)
    if result.get("waiting_for_code"):
        return None
    if entry["outcome"] == NOT_REGISTERED and result.get("code_requested") and not error:
        return _values(NEEDS_CODE, phone_number_id, attempts=attempts + 1)
    if entry["outcome"] not in (NOT_CREATED, NOT_REGISTERED, UNKNOWN, None):
        # Banned, deleted, migrated away...: left alone on Graph, and by us.
        return _values(FAILED, phone_number_id, message=f"the number is {entry['outcome']} on Graph", attempts=attempts)
    if not error:
        # Not finished, and Graph said nothing against it: what stopped it was not the row.
        return None
    attempts += 1
    if recorded_as(error, GraphTransientError):
        # Graph's own trouble: the next runs try again, a bounded number of times.
        return _values(FAILED if attempts >= max_attempts else PENDING, phone_number_id, error=error, attempts=attempts)
    return _values(FAILED, phone_number_id, error=error, attempts=attempts)


def _values(
    status: str,
    phone_number_id: Any,
    *,
    attempts: int,
    error: Mapping[str, Any] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    error = error or {}
    message = message or error.get("message")
    if message and error.get("way_forward"):
        # The person who reads the table next needs what to do, not only what went wrong.
        message = f"{message} (way forward: {error['way_forward']})"
    return {
        "status": status,
        "phone_number_id": str(phone_number_id) if phone_number_id else None,
        "error_code": error.get("code"),
        "error_subcode": error.get("error_subcode"),
        "error_message": message,
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
    rows: Sequence[Mapping[str, Any]],
    default_waba_id: str | None,
    *,
    codes_from_person: bool,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """
    Plan a run over the rows it took: bad input set aside, the rest in batches for the onboarding operator.

    Returns ``invalid`` (the new values of the rows whose input breaks a rule, by ``request_id``:
    they cost no Graph call) and ``batches`` (the other rows as the operator takes them, each
    with its ``request_id`` as ``key``; see
    :func:`~airflow_provider_whatsapp.onboarding.plan.onboarding_batches`). When codes come from a
    person, a ``needs_code`` row is marked ``code_requested``: it is not sent another code, it
    waits for that person.

    :param rows: the rows taken, as dicts of :data:`REQUEST_COLUMNS`.
    :param default_waba_id: the WABA of rows that name none.
    :param codes_from_person: whether verification codes come from a person (else from a code source).
    :param batch_size: rows per onboarding task at most.
    :param max_batches: Airflow's ``[core] max_map_length``.
    """
    invalid: dict[str, dict[str, Any]] = {}
    numbers: list[dict[str, Any]] = []
    for row in rows:
        rule = input_rule(row)
        if rule is not None:
            invalid[str(row["request_id"])] = _values(
                INVALID, None, message=rule, attempts=int(row.get("attempts") or 0)
            )
            continue
        number = {key: row.get(key) for key in CREATE_KEYS if row.get(key) not in (None, "")}
        number["key"] = str(row["request_id"])
        if row.get("preverified_id"):
            number["preverified_id"] = str(row["preverified_id"])
        if codes_from_person and row.get("status") == NEEDS_CODE:
            number["code_requested"] = True
        numbers.append(number)
    return {"invalid": invalid, "batches": onboarding_batches(numbers, default_waba_id, batch_size, max_batches)}


def outcomes_of_run(
    rows: Sequence[Mapping[str, Any]],
    planned: Mapping[str, Any],
    reports: Sequence[Mapping[str, Any] | None],
    max_attempts: int,
) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """
    Every row's new values after the run, by ``request_id`` (rows to leave as they are are left
    out), and the batches whose task left no report (their rows are left as they are).

    :param rows: the rows the run took.
    :param planned: what :func:`plan_requests` returned.
    :param reports: each batch's report, in batch order (``None``: its task left none).
    :param max_attempts: runs a transient Graph error may take before the row is ``failed``.
    """
    by_id = {str(row["request_id"]): row for row in rows}
    found = dict(planned["invalid"])
    missing = []
    for index, report in enumerate(reports):
        if report is None or not isinstance(report.get("numbers"), list):
            missing.append(index)
            continue
        for entry in report["numbers"]:
            row = by_id.get(str(entry.get("key")))
            values = None if row is None else outcome(row, entry, max_attempts)
            if values is not None:
                found[str(entry["key"])] = values
    return found, missing
