"""Onboarding many numbers: the layer above the operators, for the bulk and scheduled DAGs.

- :mod:`~airflow_provider_whatsapp.onboarding.plan`: where each number stands, from one list
  read per WABA; where a run starts it; the batches a run's tasks take.
- :mod:`~airflow_provider_whatsapp.onboarding.report`: what became of each number, as Graph holds it.
- :mod:`~airflow_provider_whatsapp.onboarding.conversation`: one number's onboarding, from
  where it stands to registered, as a conversation both hooks can drive.
- :mod:`~airflow_provider_whatsapp.onboarding.runner`: many numbers' conversations at once,
  each WABA paced by its own budget (what the onboarding trigger runs).
- :mod:`~airflow_provider_whatsapp.onboarding.requests_table`: the scheduled DAG's requests
  table: which rows a run takes, and what it writes back.
- :mod:`~airflow_provider_whatsapp.onboarding.task_groups`: the steps of one number as mapped
  task groups (the design before the onboarding operator; kept for DAGs that use it).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

# Until 0.3 this package was one module; its names still import from here, with a warning.
_MOVED = {
    **dict.fromkeys(
        (
            "CREATE",
            "CREATE_KEYS",
            "NOT_CREATED",
            "NOT_REGISTERED",
            "ONBOARDED",
            "PROGRESS_FIELDS",
            "REGISTER",
            "REGISTERED_STATUSES",
            "REQUEST_CODE",
            "STEPS",
            "UNKNOWN",
            "UNREGISTERED_STATUSES",
            "VERIFY",
            "Holding",
            "NumberLister",
            "Progress",
            "WabaReader",
            "map_indexes",
            "number_digits",
            "numbers_on_waba",
            "plan_onboarding",
            "progress_of",
            "starting_at",
        ),
        "plan",
    ),
    "describe": "report",
    "report_onboarding": "report",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"airflow_provider_whatsapp.onboarding.{name} moved to airflow_provider_whatsapp.onboarding.{module}.{name}; "
        "the old import goes away in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
