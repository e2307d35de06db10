"""The onboarding steps of one number as operators, for DAGs that map them over many numbers.

The bulk and the scheduled onboarding DAGs run each planned number through the steps left from
where it stands (see :mod:`airflow_provider_whatsapp.onboarding.plan`), in one mapped task group per
start step. The functions here add those steps inside a group, and :func:`run_results` reads back
from XCom what each number's tasks did, for the DAG's last task to report or record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.providers.common.compat.sdk import task_group

from airflow_provider_whatsapp.onboarding.plan import CREATE, REGISTER, REQUEST_CODE, VERIFY, map_indexes
from airflow_provider_whatsapp.operators.base import ERROR_XCOM_KEY
from airflow_provider_whatsapp.operators.phone_numbers import (
    CreatePhoneNumberOperator,
    RegisterPhoneNumberOperator,
    RequestVerificationCodeOperator,
    VerifyCodeOperator,
)

#: The code the Graph sandbox sent for the number of this group's ``request_code`` task (demo only:
#: a DAG using it needs ``read_verification_code`` as the user-defined macro ``sandbox_verification_code``).
SANDBOX_CODE = (
    "{{ sandbox_verification_code(conn.whatsapp_default.host, ti.xcom_pull("
    "task_ids=ti.task_id | replace('verify_code', 'request_code'), map_indexes=ti.map_index)) }}"
)
PIN_VARIABLE = "whatsapp_two_step_pin"

#: Pulls one XCom of the run: ``(task_id, map_index, key)`` to its value.
XComPull = Callable[[str, int, str], Any]


@dataclass(frozen=True)
class StepGroup:
    """
    The mapped task group that onboards the numbers a plan starts at one step.

    :param group_id: the task group's ID.
    :param steps: the task IDs of its steps, in order.
    """

    group_id: str
    steps: tuple[str, ...]


#: The task groups of :func:`resume_task_groups`, by the step their numbers start at.
RESUME_GROUPS = {
    REQUEST_CODE: StepGroup("resume_at_code", (REQUEST_CODE, VERIFY, REGISTER)),
    REGISTER: StepGroup("resume_at_register", (REGISTER,)),
}


def create_step(
    cc: Any, phone_number: Any, verified_name: Any, waba_id: Any, preverified_id: Any = None
) -> CreatePhoneNumberOperator:
    """Create the number on its WABA (or adopt it, if it is there already)."""
    number = {"cc": cc, "phone_number": phone_number, "verified_name": verified_name, "waba_id": waba_id}
    return CreatePhoneNumberOperator(task_id=CREATE, preverified_id=preverified_id, **number)


def register_step(phone_number_id: Any, waba_id: Any) -> RegisterPhoneNumberOperator:
    """Register the number, the PIN from the Variable ``whatsapp_two_step_pin``."""
    return RegisterPhoneNumberOperator(
        task_id=REGISTER, phone_number_id=phone_number_id, waba_id=waba_id, pin_variable=PIN_VARIABLE
    )


def code_request_step(phone_number_id: Any, waba_id: Any) -> RequestVerificationCodeOperator:
    """Ask Graph to send the number its verification code (SMS)."""
    return RequestVerificationCodeOperator(task_id=REQUEST_CODE, phone_number_id=phone_number_id, waba_id=waba_id)


def code_steps(phone_number_id: Any, waba_id: Any, code: str) -> RegisterPhoneNumberOperator:
    """
    Request a code, verify it, register the number; return the register task.

    :param phone_number_id: the number's ID (an XComArg or a mapped value).
    :param waba_id: its WABA.
    :param code: the template that renders the code for ``verify_code``.
    """
    request_code = code_request_step(phone_number_id, waba_id)
    verify = VerifyCodeOperator(task_id=VERIFY, phone_number_id=request_code.output, waba_id=waba_id, code=code)
    return register_step(verify.output, waba_id)


def resume_task_groups(code: str) -> tuple[Any, Any]:
    """
    The task groups ``resume_at_code`` and ``resume_at_register``, to expand over numbers planned to start there.

    :param code: the template that renders the code for ``verify_code``.
    """

    @task_group(group_id=RESUME_GROUPS[REQUEST_CODE].group_id)
    def resume_at_code(phone_number_id: str, waba_id: str) -> None:
        code_steps(phone_number_id, waba_id, code)

    @task_group(group_id=RESUME_GROUPS[REGISTER].group_id)
    def resume_at_register(phone_number_id: str, waba_id: str) -> None:
        register_step(phone_number_id, waba_id)

    return resume_at_code, resume_at_register


def run_results(
    numbers: Sequence[Mapping[str, Any]], groups: Mapping[str, StepGroup], pull: XComPull
) -> list[dict[str, Any]]:
    """
    What each planned number's tasks did, as the report takes it.

    See :func:`~airflow_provider_whatsapp.onboarding.plan.report_onboarding`.

    Each entry has ``registered_id`` (its ``register`` task's return value), or ``failed_step`` and
    ``error`` (the first step that recorded a ``whatsapp_error``), or neither; and
    ``code_requested`` when its ``request_code`` task returned.

    :param numbers: the plan's entries, each with its ``start``.
    :param groups: the task group of each start step.
    :param pull: reads one XCom of the run.
    """
    results: list[dict[str, Any]] = []
    for number, index in zip(numbers, map_indexes(numbers), strict=True):
        group = groups.get(number.get("start") or "")
        if group is None or index is None:
            results.append({})
            continue
        result: dict[str, Any] = {}
        if REQUEST_CODE in group.steps and pull(f"{group.group_id}.{REQUEST_CODE}", index, "return_value"):
            result["code_requested"] = True
        registered = REGISTER in group.steps and pull(f"{group.group_id}.{REGISTER}", index, "return_value")
        if registered:
            result["registered_id"] = registered
        else:
            for step in group.steps:
                error = pull(f"{group.group_id}.{step}", index, ERROR_XCOM_KEY)
                if error:
                    result.update(failed_step=step, error=error)
                    break
        results.append(result)
    return results
