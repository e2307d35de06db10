"""The Graph endpoints of the phone-number lifecycle, each written once for both hooks.

An endpoint method is a *conversation*: a generator that checks its input, then yields the
:class:`GraphCall` s it needs (a follow-up depending on an earlier answer, a look-up before
sending again) and is sent each call's JSON object back, or has the call's
:class:`~airflow_provider_whatsapp.exceptions.GraphAPIError` thrown into it. What a conversation
returns is the method's result. :class:`~airflow_provider_whatsapp.hooks.whatsapp.WhatsAppBusinessHook`
drives conversations with ``requests`` and
:class:`~airflow_provider_whatsapp.hooks.whatsapp_async.WhatsAppBusinessAsyncHook` with ``aiohttp``,
so a rule about an endpoint (what is validated, what is looked up after a dropped answer, when a
register is not repeated) lives here only. No HTTP client and no Airflow here.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any, NamedTuple, TypeVar

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import (
    INVALID_PARAMETER,
    GraphAPIError,
    GraphPermanentError,
    GraphResponseError,
    InvalidInputError,
)
from airflow_provider_whatsapp.hooks.graph import normalise_digits
from airflow_provider_whatsapp.hooks.usage import CallScope
from airflow_provider_whatsapp.status import is_registered

T = TypeVar("T")

# Graph's answer to a code requested again too soon.
CODE_REQUESTED_TOO_OFTEN = 136024


class GraphCall(NamedTuple):
    """
    One Graph call a conversation needs, as a hook sends it with its retry and pacing policy.

    :param method: ``GET`` or ``POST``.
    :param path: the path after the version, for example ``123/phone_numbers``.
    :param params: query parameters (``fields``, ``limit``, ...).
    :param body: the JSON body of a POST.
    :param scope: the WABA or number the call is about, so it is paced by that WABA's budget.
    :param reconcile: for a POST that is not idempotent: a conversation run before sending again
        after a failure that may have been applied; a result it returns is the call's result.
    :param accept_after_uncertain: for a POST whose effect cannot be read back: an error answered
        after a failure that may have been applied, that shows it was.
    :param secrets: values the call carries that the hook registers with Airflow's masker first.
    :param numbers_of: the WABA whose phone numbers the answer holds (a create, a list page): the
        hook remembers each number's WABA, so the number's later calls are paced by its budget.
    :param note: a line the hook logs before sending, saying why the call is made.
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Mapping[str, Any] | None = None
    scope: CallScope = CallScope()
    reconcile: Callable[[], Conversation[dict[str, Any] | None]] | None = None
    accept_after_uncertain: Callable[[GraphAPIError], bool] | None = None
    secrets: tuple[str, ...] = ()
    numbers_of: str | None = None
    note: str | None = None


#: A conversation: yields calls, is sent their answers, returns its result.
Conversation = Generator[GraphCall, dict[str, Any], T]


# --------------------------------------------------------------------------- numbers of a WABA

#: Nodes listed per page when reading a WABA's numbers; Graph's maximum.
LIST_PAGE_SIZE = 100
#: A cursor loop in a misbehaving proxy must not spin forever: this many pages is a million numbers.
MAX_PAGES = 10_000


def page_nodes(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The nodes of one page of a list answer."""
    data = page.get("data")
    if not isinstance(data, list):
        raise GraphResponseError("A phone_numbers page had no data list", excerpt=str(page)[:200])
    return [node for node in data if isinstance(node, dict)]


def numbers_in(answer: Mapping[str, Any]) -> list[str]:
    """The phone-number IDs an answer holds: a created node's ``id``, or a list page's nodes' IDs."""
    data = answer.get("data")
    nodes = data if isinstance(data, list) else [answer]
    return [node["id"] for node in nodes if isinstance(node, dict) and isinstance(node.get("id"), str)]


def next_page_cursor(page: Mapping[str, Any], seen: set[str]) -> str | None:
    """The ``after`` cursor of the next page, or ``None`` on the last page (or a cursor seen before).

    The cursor is followed, not ``paging.next``: Graph's next URL carries the token.
    """
    paging = page.get("paging")
    paging = paging if isinstance(paging, dict) else {}
    cursors = paging.get("cursors")
    cursor = cursors.get("after") if isinstance(cursors, dict) else None
    if not paging.get("next") or not isinstance(cursor, str) or not cursor or cursor in seen:
        return None
    seen.add(cursor)
    return cursor


def list_params(fields: str | list[str] | None, limit: int) -> dict[str, Any]:
    """Query of the first page of ``GET /{waba_id}/phone_numbers``, checked."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_PAGE_SIZE:
        raise InvalidInputError("limit", f"must be a whole number from 1 to {LIST_PAGE_SIZE}")
    return {"fields": validation.fields_param(fields), "limit": limit}


def walk_phone_numbers(
    waba_id: str, fields: str | list[str] | None, visit: Callable[[dict[str, Any]], bool], limit: int = LIST_PAGE_SIZE
) -> Conversation[None]:
    """
    Hand every phone number of a WABA to ``visit``, page after page, until it returns ``True``.

    The one page-walking loop of both hooks: it follows the ``after`` cursor (never
    ``paging.next``, whose URL carries the token) and stops at a cursor seen before.
    """
    waba = validation.graph_id("waba_id", waba_id)
    params = list_params(fields, limit)
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = yield GraphCall(
            "GET", f"{waba}/phone_numbers", params=dict(params), scope=CallScope(waba_id=waba), numbers_of=waba
        )
        for node in page_nodes(page):
            if visit(node):
                return
        cursor = next_page_cursor(page, seen)
        if cursor is None:
            return
        params["after"] = cursor


def list_phone_numbers(
    waba_id: str, fields: str | list[str] | None = None, limit: int = LIST_PAGE_SIZE
) -> Conversation[list[dict[str, Any]]]:
    """Every phone number of a WABA, all pages read: ``GET /{waba_id}/phone_numbers``."""
    nodes: list[dict[str, Any]] = []

    def keep(node: dict[str, Any]) -> bool:
        nodes.append(node)
        return False

    yield from walk_phone_numbers(waba_id, fields, keep, limit)
    return nodes


def find_phone_number(
    waba_id: str, cc: str, phone_number: str, fields: str | list[str] | None = None
) -> Conversation[dict[str, Any] | None]:
    """The WABA's node for ``cc`` + ``phone_number``, or ``None``; the pages after it are not read."""
    country = validation.country_code(cc)
    wanted_digits = country + validation.national_number(phone_number, country)
    names = {"id", "display_phone_number"}
    extra = validation.fields_param(fields)
    if extra:
        names.update(extra.split(","))
    found: list[dict[str, Any]] = []

    def match(node: dict[str, Any]) -> bool:
        if normalise_digits(node.get("display_phone_number")) == wanted_digits:
            found.append(node)
            return True
        return False

    yield from walk_phone_numbers(waba_id, sorted(names), match)
    return found[0] if found else None


def create_phone_number(
    waba_id: str,
    cc: str,
    phone_number: str,
    verified_name: str | None = None,
    migrate_phone_number: bool = False,
    preverified_id: str | None = None,
    fields: str | list[str] | None = None,
) -> Conversation[dict[str, Any]]:
    """
    Create a phone number on a WhatsApp Business Account: ``POST /{waba_id}/phone_numbers``.

    Returns Graph's answer: ``{"id": ...}``, plus the requested ``fields`` of the new node
    (read-after-write). A failure that may have been applied is looked up before retrying.
    """
    waba = validation.graph_id("waba_id", waba_id)
    country = validation.country_code(cc)
    number = validation.national_number(phone_number, country)
    name = validation.verified_name(verified_name)
    migrate = validation.boolean("migrate_phone_number", migrate_phone_number)
    preverified = validation.graph_id("preverified_id", preverified_id) if preverified_id else None
    wanted = validation.fields_param(fields)
    body: dict[str, Any] = {"cc": country, "phone_number": number}
    if name is not None:
        body["verified_name"] = name
    if migrate:
        body["migrate_phone_number"] = True
    if preverified:
        body["preverified_id"] = preverified
    return (
        yield GraphCall(
            "POST",
            f"{waba}/phone_numbers",
            params={"fields": wanted},
            body=body,
            scope=CallScope(waba_id=waba),
            reconcile=lambda: find_phone_number(waba, country, number, fields=wanted),
            numbers_of=waba,
        )
    )


def get_phone_number(
    phone_number_id: str, fields: str | list[str] | None = None, *, waba_id: str | None = None
) -> Conversation[dict[str, Any]]:
    """Read a phone-number node: ``GET /{phone_number_id}``; ``waba_id``, if known, paces it."""
    node_id = validation.graph_id("phone_number_id", phone_number_id)
    return (
        yield GraphCall(
            "GET",
            node_id,
            params={"fields": validation.fields_param(fields)},
            scope=CallScope(waba_id=waba_id, phone_number_id=node_id),
        )
    )


# --------------------------------------------------------------------------- onboarding lifecycle


def request_verification_code(
    phone_number_id: str, code_method: str = "SMS", language: str = "en_US"
) -> Conversation[dict[str, Any]]:
    """
    Ask Graph to send a verification code: ``POST /{phone_number_id}/request_code``.

    After a failure that may have been applied, Graph's "code requested too often" answer
    (136024) means the first request went through, and counts as success.
    """
    node_id = validation.graph_id("phone_number_id", phone_number_id)
    body = {"code_method": validation.code_method(code_method), "language": validation.language(language)}
    return (
        yield GraphCall(
            "POST",
            f"{node_id}/request_code",
            body=body,
            scope=CallScope(phone_number_id=node_id),
            accept_after_uncertain=lambda error: error.code == CODE_REQUESTED_TOO_OFTEN,
        )
    )


def verify_code(phone_number_id: str, code: str) -> Conversation[dict[str, Any]]:
    """Submit the verification code: ``POST /{phone_number_id}/verify_code``."""
    node_id = validation.graph_id("phone_number_id", phone_number_id)
    checked = validation.six_digits("code", code)
    return (
        yield GraphCall(
            "POST",
            f"{node_id}/verify_code",
            body={"code": checked},
            scope=CallScope(phone_number_id=node_id),
            reconcile=lambda: _success_if(node_id, "code_verification_status", "VERIFIED"),
            secrets=(checked,),
        )
    )


def register_phone_number(
    phone_number_id: str, pin: str, data_localization_region: str | None = None, *, check_first: bool = True
) -> Conversation[dict[str, Any]]:
    """
    Register the number for Cloud API messaging: ``POST /{phone_number_id}/register``.

    Graph allows 10 register calls per number per 72 hours, and a number registered again spends
    one. With ``check_first`` (what a retried task must do), a number already registered
    (``CONNECTED``, or on ``CLOUD_API`` and not connected yet) is not registered again: its
    two-step PIN is set to ``pin`` instead, so the outcome is the same. A first attempt that
    knows the number was never registered passes ``check_first=False`` and saves the read. A
    failure that may have been applied is always looked up before the call is sent again.
    """
    node_id = validation.graph_id("phone_number_id", phone_number_id)
    checked_pin = validation.six_digits("pin", pin)
    region = validation.region(data_localization_region)
    if check_first and (yield from registered(node_id)):
        note = f"Phone number {node_id} is already registered; setting its PIN instead"
        return (yield from set_two_step_pin(node_id, checked_pin, note=note))
    body: dict[str, Any] = {"messaging_product": "whatsapp", "pin": checked_pin}
    if region:
        body["data_localization_region"] = region
    return (
        yield GraphCall(
            "POST",
            f"{node_id}/register",
            body=body,
            scope=CallScope(phone_number_id=node_id),
            reconcile=lambda: _success_if_registered(node_id),
            secrets=(checked_pin,),
        )
    )


def set_two_step_pin(phone_number_id: str, pin: str, *, note: str | None = None) -> Conversation[dict[str, Any]]:
    """Set the two-step verification PIN: ``POST /{phone_number_id}`` (idempotent)."""
    node_id = validation.graph_id("phone_number_id", phone_number_id)
    checked_pin = validation.six_digits("pin", pin)
    return (
        yield GraphCall(
            "POST",
            node_id,
            body={"pin": checked_pin},
            scope=CallScope(phone_number_id=node_id),
            secrets=(checked_pin,),
            note=note,
        )
    )


def deregister_phone_number(phone_number_id: str) -> Conversation[dict[str, Any]]:
    """Deregister the number from Cloud API: ``POST /{phone_number_id}/deregister``."""
    node_id = validation.graph_id("phone_number_id", phone_number_id)
    return (
        yield GraphCall(
            "POST",
            f"{node_id}/deregister",
            scope=CallScope(phone_number_id=node_id),
            reconcile=lambda: _success_if(node_id, "status", "DISCONNECTED"),
        )
    )


def registered(phone_number_id: str) -> Conversation[bool]:
    """Whether Graph shows the number registered (see :func:`~airflow_provider_whatsapp.status.is_registered`)."""
    return is_registered((yield from get_phone_number(phone_number_id, fields="status,platform_type")))


def _success_if(phone_number_id: str, field: str, value: str) -> Conversation[dict[str, Any] | None]:
    node = yield from get_phone_number(phone_number_id, fields=field)
    return {"success": True} if node.get(field) == value else None


def _success_if_registered(phone_number_id: str) -> Conversation[dict[str, Any] | None]:
    return {"success": True} if (yield from registered(phone_number_id)) else None


def create_or_find_phone_number(
    waba_id: str,
    cc: str,
    phone_number: str,
    verified_name: str | None = None,
    migrate_phone_number: bool = False,
    preverified_id: str | None = None,
    fields: str | list[str] | None = None,
) -> Conversation[tuple[dict[str, Any], GraphPermanentError | None]]:
    """
    Create the number, or find it when Graph answers that it is on the WABA already.

    Returns the node and, when the number was found rather than created, Graph's refusal (the
    caller decides whether to adopt the number or to fail). Any other refusal is raised.
    """
    try:
        created = yield from create_phone_number(
            waba_id, cc, phone_number, verified_name, migrate_phone_number, preverified_id, fields
        )
    except GraphPermanentError as error:
        if error.code != INVALID_PARAMETER:
            raise
        existing = yield from find_phone_number(waba_id, cc, phone_number, fields=fields)
        if existing is None:
            raise
        return existing, error
    return created, None


def one_call(graph_call: GraphCall) -> Conversation[dict[str, Any]]:
    """A conversation of a single call, as it is given (a hook's ``call``)."""
    return (yield graph_call)
