"""When a phone number has reached a target state, or a state it cannot come back from.

Shared by the status sensor (poking) and the status trigger (deferred), so both decide alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_whatsapp.exceptions import InvalidInputError

# States a number does not leave by waiting; reaching one fails the wait at once.
DEFAULT_FAILURE_STATES: dict[str, tuple[str, ...]] = {
    "status": ("BANNED", "DELETED", "MIGRATED", "RESTRICTED"),
    "name_status": ("DECLINED", "EXPIRED"),
    "code_verification_status": ("EXPIRED",),
}


@dataclass(frozen=True)
class StatusCheck:
    """
    The outcome of comparing a phone-number node with a target.

    :param met: every target field has (one of) its wanted value(s).
    :param failure: a description of the terminal state reached, if any.
    :param node: the node as read.
    """

    met: bool
    failure: str | None
    node: dict[str, Any]


def normalise_target(target: Mapping[str, Any], field: str = "target") -> dict[str, list[str]]:
    """``{"status": "CONNECTED"}`` or ``{"status": ["CONNECTED", ...]}`` to lists of upper-case text."""
    if not isinstance(target, Mapping) or not target:
        raise InvalidInputError(field, "must be a non-empty mapping of node field to wanted value(s)")
    result: dict[str, list[str]] = {}
    for name, wanted in target.items():
        values = [wanted] if isinstance(wanted, str) else list(wanted) if isinstance(wanted, Sequence) else None
        if not isinstance(name, str) or not name or not values or not all(isinstance(v, str) and v for v in values):
            raise InvalidInputError(field, f"{name!r} must map to a state name or a list of them")
        result[name] = [value.upper() for value in values]
    return result


def fields_to_read(target: Mapping[str, list[str]], failure_states: Mapping[str, list[str]]) -> str:
    """The ``fields`` parameter that reads everything the check needs, in one call."""
    return ",".join(sorted({"id", *target, *failure_states}))


def check_status(
    node: Mapping[str, Any], target: Mapping[str, list[str]], failure_states: Mapping[str, list[str]]
) -> StatusCheck:
    """Compare a node with the target; unknown values never crash, they simply do not match."""
    state = dict(node)
    for name, bad in failure_states.items():
        value = str(state.get(name) or "").upper()
        if value and value in bad and value not in target.get(name, []):
            return StatusCheck(met=False, failure=f"{name} is {value}, a state it will not leave", node=state)
    met = all(str(state.get(name) or "").upper() in wanted for name, wanted in target.items())
    return StatusCheck(met=met, failure=None, node=state)


def describe(node: Mapping[str, Any], target: Mapping[str, list[str]]) -> str:
    """``status=PENDING (want CONNECTED)`` for log lines and timeout messages."""
    return ", ".join(f"{name}={node.get(name)} (want {'|'.join(wanted)})" for name, wanted in target.items())


def is_registered(node: Mapping[str, Any]) -> bool:
    """
    Whether a phone-number node shows its number registered for Cloud API.

    ``CONNECTED``, or ``platform_type`` ``CLOUD_API`` while Graph has not connected it yet: a
    register applied moments ago shows only the latter, and registering again would spend one of
    the number's 10 register calls per 72 hours.
    """
    status = str(node.get("status") or "").upper()
    return status == "CONNECTED" or str(node.get("platform_type") or "").upper() == "CLOUD_API"
