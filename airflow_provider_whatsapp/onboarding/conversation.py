"""One number's onboarding, from where it stands to registered, written once for any driver.

:func:`onboard_number` takes a number as the plan left it (see
:mod:`~airflow_provider_whatsapp.onboarding.plan`: where Graph says it stands, the step it starts
at) and goes on from there: create (or find the number already there), request a code, verify it,
register. It is a conversation in the sense of :mod:`~airflow_provider_whatsapp.hooks.calls`:
it yields the Graph calls it needs, and a :class:`NeedCode` when it needs the code Graph sent;
the onboarding runner answers both. What it returns says what it did, in the shape the report
takes (:func:`~airflow_provider_whatsapp.onboarding.report.report_onboarding`). No HTTP, no Airflow.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any, NamedTuple

from airflow_provider_whatsapp.exceptions import NEEDS_VERIFYING_AGAIN, GraphAPIError, InvalidInputError
from airflow_provider_whatsapp.hooks import calls
from airflow_provider_whatsapp.hooks.calls import GraphCall
from airflow_provider_whatsapp.onboarding.plan import CREATE, REGISTER, REQUEST_CODE, VERIFY


class CodeRequest(NamedTuple):
    """
    What a verification-code source is asked for: the code Graph just sent to this number.

    :param phone_number_id: the number's Graph ID.
    :param waba_id: its WABA.
    :param cc: its country dial code.
    :param phone_number: its national number.
    :param graph_host: the Graph host the code was requested from (the sandbox's URL in a demo).
    """

    phone_number_id: str
    waba_id: str | None
    cc: str
    phone_number: str
    graph_host: str


class NeedCode(NamedTuple):
    """The conversation needs the code Graph sent: send back the code, or ``None`` to stop there."""

    request: CodeRequest


#: What an onboarding conversation yields, and what it is sent back.
OnboardingStep = GraphCall | NeedCode
OnboardingConversation = Generator[OnboardingStep, Any, dict[str, Any]]


def error_details(error: InvalidInputError | GraphAPIError) -> dict[str, Any]:
    """An error as plain values, for XCom and the requests table (no secret ever reaches them)."""
    if isinstance(error, GraphAPIError):
        return error.to_dict()
    return {"error_class": type(error).__name__, "message": str(error), "field": error.field}


def onboard_number(
    number: Mapping[str, Any],
    *,
    pin: str,
    graph_host: str,
    codes: bool,
    data_localization_region: str | None = None,
) -> OnboardingConversation:
    """
    Onboard one planned number from the step it starts at; return what was done.

    The result has ``phone_number_id`` once known; ``registered_id`` when it was registered;
    ``code_requested`` when a code was requested; ``verified_again`` when register asked for the
    number to be verified again (133006) and the code step was taken once more; ``failed_step``
    and ``error`` (plain values) when a step failed, for a Graph error or an input rule;
    ``waiting_for_code`` when a code is out already and a person is to enter it. A number waiting
    for a person's code ends after the request with no error.

    :param number: an entry of the plan: ``start`` (``create_phone_number``, ``request_code``,
        ``register``), ``waba_id``, ``cc``, ``phone_number``, ``verified_name``, and as the input
        row gave them ``preverified_id``, ``migrate_phone_number`` and ``code_requested`` (a code
        is out already: a person is to enter it, so none is requested again without a code source).
    :param pin: the two-step PIN register sets.
    :param graph_host: the Graph host, for the code source.
    :param codes: whether a code source answers :class:`NeedCode`; without one, a number stops
        once its code is requested.
    :param data_localization_region: local storage for register, if any.
    """
    # Plain values from XCom: each is checked by the call that sends it.
    step: Any = number.get("start")
    waba_id: Any = number.get("waba_id")
    phone_number_id: Any = number.get("phone_number_id")
    cc: Any = number.get("cc")
    national: Any = number.get("phone_number")
    preverified_id = number.get("preverified_id") or None
    result: dict[str, Any] = {}
    if phone_number_id:
        result["phone_number_id"] = phone_number_id
    current = str(step)
    # Graph may answer a register with "verify the number again" (133006): the way forward is the
    # code step, once, then register again; the second time it is the number's error.
    verify_again = False
    while True:
        try:
            if step == CREATE:
                node, _ = yield from calls.create_or_find_phone_number(
                    waba_id,
                    cc,
                    national,
                    verified_name=number.get("verified_name") or None,
                    migrate_phone_number=bool(number.get("migrate_phone_number") or False),
                    preverified_id=preverified_id,
                )
                phone_number_id = result["phone_number_id"] = str(node["id"])
                step = REGISTER if preverified_id else REQUEST_CODE
            if step == REQUEST_CODE:
                if number.get("code_requested") and not codes and not verify_again:
                    result.update(waiting_for_code=True, note="waiting for a person to enter its code")
                    return result
                current = REQUEST_CODE
                yield from calls.request_verification_code(phone_number_id)
                result["code_requested"] = True
                if not codes:
                    return result
                current = VERIFY
                code = yield NeedCode(
                    CodeRequest(
                        phone_number_id=str(phone_number_id),
                        waba_id=waba_id,
                        cc=str(cc),
                        phone_number=str(national),
                        graph_host=graph_host,
                    )
                )
                if code is None:
                    result["note"] = "the code source had no code for it"
                    return result
                yield from calls.verify_code(phone_number_id, code)
                step = REGISTER
            if step == REGISTER:
                current = REGISTER
                # The plan read Graph just before: a number it found unregistered needs no second read.
                yield from calls.register_phone_number(
                    phone_number_id,
                    pin,
                    data_localization_region,
                    check_first=False,
                )
                result["registered_id"] = phone_number_id
        except (GraphAPIError, InvalidInputError) as error:
            again = isinstance(error, GraphAPIError) and error.code == NEEDS_VERIFYING_AGAIN
            if current == REGISTER and again and not verify_again:
                verify_again, step = True, REQUEST_CODE
                result["verified_again"] = True
                continue
            result.update(failed_step=current, error=error_details(error))
        return result
