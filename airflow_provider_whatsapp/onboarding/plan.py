"""Where each number stands in onboarding, from what Graph holds; where a run starts; what it did.

A crashed worker can leave a number created but not registered, and only Graph knows. So a bulk
run first reads each WABA's numbers once (:func:`numbers_on_waba`) and plans from them
(:func:`plan_onboarding`): a number that is done costs nothing more, a number half-onboarded
continues at the step it stopped before, no number is created or registered twice. Its report
(:func:`report_onboarding`) says for every input number what Graph holds, reading a WABA again
only when one of its numbers did not finish in the run. Plain values in and out (XCom-ready); the
example DAGs' tasks call these with a hook and their XComs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import GraphAPIError, GraphPermanentError, InvalidInputError
from airflow_provider_whatsapp.hooks.graph import normalise_digits
from airflow_provider_whatsapp.status import is_registered

CREATE = "create_phone_number"
REQUEST_CODE = "request_code"
VERIFY = "verify_code"
REGISTER = "register"
#: The onboarding steps in order; a run starts a number at one of them and goes on to the end.
STEPS = (CREATE, REQUEST_CODE, VERIFY, REGISTER)
#: What the create step of a planned number is given.
CREATE_KEYS = ("cc", "phone_number", "verified_name", "waba_id")
#: What a planned number keeps of its input row besides :data:`CREATE_KEYS`, when the row gives it.
PASSED_THROUGH = ("preverified_id", "migrate_phone_number", "code_requested", "key")
#: The fields of a number's node that tell where it stands.
PROGRESS_FIELDS = ("id", "display_phone_number", "verified_name", "status", "code_verification_status", "platform_type")

ONBOARDED = "onboarded"
NOT_REGISTERED = "created, not registered"
NOT_CREATED = "not created"
#: Graph could not be read, and the run alone cannot tell.
UNKNOWN = "unknown"

# Registered for Cloud API (the last three with limits on their messaging): nothing left to do.
REGISTERED_STATUSES = frozenset({"CONNECTED", "FLAGGED", "RESTRICTED", "RATE_LIMITED"})
# On the way: onboarding continues. Any other status (BANNED, DELETED, MIGRATED, DISCONNECTED,
# values Graph adds later) is reported as it is and the number is left alone.
UNREGISTERED_STATUSES = frozenset({"", "PENDING", "UNVERIFIED"})


class NumberLister(Protocol):
    """What :func:`numbers_on_waba` needs of a hook."""

    def list_phone_numbers(self, waba_id: str, fields: str | list[str] | None = ...) -> Iterable[dict[str, Any]]: ...


#: Reads one WABA: its numbers' nodes keyed by their digits (``cc`` + national number).
WabaReader = Callable[[str], dict[str, dict[str, Any]]]
#: What one read of a WABA gave: its numbers by digits, or the error that stopped it.
Holding = dict[str, dict[str, Any]] | GraphAPIError


@dataclass(frozen=True)
class Progress:
    """
    Where a number stands in onboarding.

    :param outcome: ``onboarded``, ``created, not registered``, ``not created``, or the number's
        status in lower case when it is left alone (``banned``, ``deleted``, ...).
    :param next_step: the step that continues its onboarding (one of :data:`STEPS`); ``None``
        when there is nothing to do.
    """

    outcome: str
    next_step: str | None


def progress_of(node: Mapping[str, Any] | None) -> Progress:
    """Where the number of ``node`` (a phone-number node with :data:`PROGRESS_FIELDS`; ``None``: absent) stands."""
    if node is None:
        return Progress(NOT_CREATED, CREATE)
    status = str(node.get("status") or "").upper()
    # Registered but not CONNECTED yet: Graph connects it by itself; registering again would
    # spend one of its 10 register calls per 72 hours.
    if status in REGISTERED_STATUSES or (status in UNREGISTERED_STATUSES and is_registered(node)):
        return Progress(ONBOARDED, None)
    if status in UNREGISTERED_STATUSES:
        verified = str(node.get("code_verification_status") or "").upper() == "VERIFIED"
        return Progress(NOT_REGISTERED, REGISTER if verified else REQUEST_CODE)
    return Progress(status.lower(), None)


def number_digits(cc: Any, phone_number: Any) -> str | None:
    """The digits Graph shows for the number (``cc`` + national number), or ``None`` for bad input."""
    try:
        country = validation.country_code(cc)
        return country + validation.national_number(phone_number, country)
    except InvalidInputError:
        return None


def numbers_on_waba(hook: NumberLister, waba_id: str) -> dict[str, dict[str, Any]]:
    """Every number of a WABA, with :data:`PROGRESS_FIELDS`, keyed by its digits: one list read (all pages)."""
    return by_digits(hook.list_phone_numbers(waba_id, fields=list(PROGRESS_FIELDS)))


def by_digits(nodes: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A WABA's nodes keyed by the digits of their number (``cc`` + national number)."""
    return {normalise_digits(node.get("display_phone_number")): node for node in nodes}


def waba_of(row: Mapping[str, Any], default_waba_id: str | None) -> str | None:
    """The row's WABA; the default when it names none (missing or blank)."""
    raw = row.get("waba_id")
    return (str(raw).strip() if raw is not None else "") or default_waba_id


def readable_waba(waba_id: str | None) -> str | None:
    """The WABA ID, if it is one that can be read (bad ones are left to the create step to reject)."""
    try:
        return validation.graph_id("waba_id", waba_id)
    except InvalidInputError:
        return None


def held_numbers(holdings: dict[str, Holding], waba_id: str, read: WabaReader, keep: type[GraphAPIError]) -> Holding:
    """The WABA's numbers, read once per plan or report; a read failure of the kind ``keep`` stands in their place."""
    if waba_id not in holdings:
        try:
            holdings[waba_id] = read(waba_id)
        except keep as error:
            holdings[waba_id] = error
    return holdings[waba_id]


def _label(row: Mapping[str, Any]) -> str:
    return f"cc={row.get('cc')} phone_number={row.get('phone_number')}"


def plan_onboarding(
    rows: Sequence[Mapping[str, Any]],
    default_waba_id: str | None,
    read: WabaReader,
    unreadable: type[GraphAPIError] = GraphPermanentError,
) -> list[dict[str, Any]]:
    """
    Plan a bulk run from one read of each WABA involved: where each input number starts, if at all.

    Returns one entry per row, in input order, with the step it starts at (``start``: one of
    ``create_phone_number``, ``request_code``, ``register``, or ``None``) and what Graph holds of
    it. A number that is done, or in a state it is left alone in, starts nowhere; a row repeating
    an earlier row's number starts nowhere either. A row with bad input starts at
    ``create_phone_number``, whose step rejects it naming the rule. A WABA whose read fails in a
    way ``unreadable`` covers starts none of its numbers; any other read failure is raised, so that
    the task is retried.

    :param rows: the input: ``cc``, ``phone_number``, ``verified_name`` and, optionally,
        ``waba_id`` and the keys of :data:`PASSED_THROUGH`, which the entry keeps.
    :param default_waba_id: the WABA of rows that name none (the connection's ``waba_id`` extra).
    :param read: reads one WABA (see :func:`numbers_on_waba`).
    :param unreadable: the read failures that stand for the WABA's numbers (each starts nowhere,
        its entry says why); any other is raised. By default only those retrying cannot cure.
    """
    holdings: dict[str, Holding] = {}
    first_row: dict[tuple[str, str], int] = {}
    numbers = []
    for index, row in enumerate(rows):
        entry: dict[str, Any] = {
            "row": index,
            "number": _label(row),
            "cc": row.get("cc"),
            "phone_number": row.get("phone_number"),
            "verified_name": row.get("verified_name"),
            "waba_id": waba_of(row, default_waba_id),
            "start": CREATE,
            **{key: row[key] for key in PASSED_THROUGH if row.get(key) not in (None, "")},
        }
        numbers.append(entry)
        digits, readable = number_digits(row.get("cc"), row.get("phone_number")), readable_waba(entry["waba_id"])
        if digits is None or readable is None:
            continue
        if (readable, digits) in first_row:
            entry.update(start=None, duplicate_of=first_row[readable, digits])
            continue
        first_row[readable, digits] = index
        held = held_numbers(holdings, readable, read, unreadable)
        if isinstance(held, GraphAPIError):
            entry.update(start=None, outcome=UNKNOWN, error=held.to_dict(), note="Graph could not be read for its WABA")
            continue
        node = held.get(digits)
        _note_node(entry, node, row)
        progress = progress_of(node)
        entry.update(start=progress.next_step, outcome=None if progress.next_step else progress.outcome)
    return numbers


def starting_at(
    numbers: Sequence[Mapping[str, Any]], step: str, keys: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """
    The keyword arguments of the planned numbers that start at ``step``, in input order.

    A number's position in this list is its map index in the task group that runs from ``step``.
    Unless ``keys`` names them, ``create_phone_number`` gets ``cc``, ``phone_number``,
    ``verified_name``, ``waba_id``; the later steps get ``phone_number_id`` and ``waba_id``.
    """
    if keys is None:
        keys = CREATE_KEYS if step == CREATE else ("phone_number_id", "waba_id")
    return [{key: number.get(key) for key in keys} for number in numbers if number.get("start") == step]


def map_indexes(numbers: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """Each planned number's map index in the task group of its start step (``None``: it starts nowhere)."""
    seen: Counter[str] = Counter()
    indexes: list[int | None] = []
    for number in numbers:
        start = number.get("start")
        indexes.append(seen[start] if start else None)
        if start:
            seen[start] += 1
    return indexes


def _note_node(entry: dict[str, Any], node: Mapping[str, Any] | None, row: Mapping[str, Any]) -> None:
    """Copy what Graph holds into the entry, and note a name that differs from the input's."""
    if node is None:
        return
    entry.update(
        phone_number_id=node.get("id"),
        status=node.get("status"),
        code_verification_status=node.get("code_verification_status"),
    )
    on_graph = node.get("verified_name")
    wanted = row.get("verified_name")
    if on_graph and wanted and str(wanted).strip() != on_graph:
        entry["adopted_as"] = on_graph


#: Rows per batch of :func:`onboarding_batches` by default: one onboarding task each.
DEFAULT_BATCH_SIZE = 1_000


def onboarding_batches(
    rows: Sequence[Mapping[str, Any]],
    default_waba_id: str | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int | None = None,
) -> list[list[dict[str, Any]]]:
    """
    Split rows into batches for one onboarding task each, keeping a WABA's rows together.

    Each batch holds whole WABAs (their rows in input order) up to ``batch_size`` rows; a WABA
    with more rows than that is split into batches of its own. Fewer, fuller batches mean fewer
    task instances and list reads; keeping a WABA in one batch keeps its budget in one trigger.
    Mapping the onboarding operator over the batches stays far below ``[core] max_map_length``:
    a thousand batches hold a million rows.

    :param rows: the input rows (see :func:`plan_onboarding`).
    :param default_waba_id: the WABA of rows that name none.
    :param batch_size: rows per batch at most.
    :param max_batches: the most batches a DAG can map a task over (Airflow's ``[core]
        max_map_length``): more raise an error naming the setting and the batch size that fits.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError("batch_size", "must be a whole number of at least 1")
    by_waba: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_waba.setdefault(str(waba_of(row, default_waba_id)), []).append(dict(row))
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for waba_rows in by_waba.values():
        if len(waba_rows) > batch_size:
            # Full batches of this WABA alone; what is left of it shares a batch like a small WABA.
            whole = len(waba_rows) - len(waba_rows) % batch_size
            batches.extend(waba_rows[start : start + batch_size] for start in range(0, whole, batch_size))
            waba_rows = waba_rows[whole:]
        if len(current) + len(waba_rows) > batch_size:
            batches.append(current)
            current = []
        current.extend(waba_rows)
    if current:
        batches.append(current)
    if max_batches is not None and len(batches) > max_batches:
        raise InvalidInputError(
            "batch_size",
            f"{len(rows)} rows make {len(batches)} batches of at most {batch_size}, more than Airflow maps a task "
            f"over ([core] max_map_length = {max_batches}): use a batch_size of at least "
            f"{-(-len(rows) // max_batches)}, or raise max_map_length",
        )
    return batches
