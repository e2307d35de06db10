"""What the tests read from Airflow's internals, wherever the running Airflow keeps them.

The provider imports what moved between versions through ``airflow.providers.common.compat``; the
tests also look into the metadata database, DAG serialization and the secrets masker, which that
package does not cover. Each helper here chooses by the version flags of the provider itself, so a
test reads the same on Airflow 2.11 and 3.0 through 3.3. What users' tests need too (the
``DagBag``, the XComs of a run) lives in ``airflow_provider_whatsapp.testing.dag_runs``.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from typing import Any

from airflow_provider_whatsapp.testing.dag_runs import dag_bag, xcom_model, xcom_value, xcom_values
from airflow_provider_whatsapp.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    AIRFLOW_V_3_1_PLUS,
    AIRFLOW_V_3_2_PLUS,
    get_base_airflow_version_tuple,
)

AIRFLOW_VERSION = ".".join(map(str, get_base_airflow_version_tuple()))

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "SECRETS_MASKER_MODULES",
    "dag_bag",
    "mapped_argument_class",
    "reset_secrets_masker",
    "serialization_round_trip",
    "serialize_dag",
    "task_output",
    "xcom_model",
    "xcom_value",
    "xcom_values",
]


# Airflow's public API adds masks (``mask_secret``) but has none to forget them; its supervisor
# resets each task process's masker through a private function, in the SDK's module and (from 3.1)
# in the core's. tests/test_secrets_masker_reset.py fails loudly if they move.
if AIRFLOW_V_3_1_PLUS:
    SECRETS_MASKER_MODULES: tuple[str, ...] = ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker")
elif AIRFLOW_V_3_0_PLUS:
    SECRETS_MASKER_MODULES = ("airflow.sdk.execution_time.secrets_masker",)
else:
    SECRETS_MASKER_MODULES = ("airflow.utils.log.secrets_masker",)


def reset_secrets_masker() -> None:
    """Forget every masked secret, as a new task process starts."""
    for name in SECRETS_MASKER_MODULES:
        module = sys.modules.get(name)
        if module is None:  # not imported yet: nothing has been masked
            continue
        if AIRFLOW_V_3_0_PLUS:
            module.reset_secrets_masker()
        else:
            masker = module._secrets_masker()
            masker.patterns = set()
            masker.replacer = None


def serialize_dag(dag: Any) -> dict[str, Any]:
    """The DAG as the scheduler and the UI store it."""
    return dict(_serializer().to_dict(dag))


def serialization_round_trip(dag: Any) -> Any:
    """Serialize, validate, pass through JSON text (as the metadata database does) and rebuild."""
    serializer = _serializer()
    data = serializer.to_dict(dag)
    serializer.validate_schema(data)
    return serializer.from_dict(json.loads(json.dumps(data)))


def _serializer() -> Any:
    from airflow.serialization import serialized_objects

    # SerializedDAG was renamed DagSerialization in 3.2.
    return serialized_objects.DagSerialization if AIRFLOW_V_3_2_PLUS else serialized_objects.SerializedDAG


def mapped_argument_class() -> type[Any]:
    """The placeholder for an argument of a mapped task group, resolved per map index."""
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.definitions._internal.expandinput import MappedArgument
    else:
        from airflow.models.expandinput import MappedArgument  # type: ignore[no-redef]
    return MappedArgument


@functools.cache
def connection_form() -> tuple[dict[str, Any], dict[str, Any]]:
    """The connection form's extra-field widgets and field behaviours, as the UI gets them.

    From 3.0 the API server builds them without Flask-AppBuilder, which a plain Airflow 3 does not
    install (the providers manager alone then skips every hook's form); 2.x has it. Built once per
    process: the API server's builder leaves stand-ins for the missing modules that a second call
    trips over.
    """
    if AIRFLOW_V_3_0_PLUS:
        from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

        _hooks, widgets, behaviours = HookMetaService._get_hooks_with_mocked_fab()
        return dict(widgets), dict(behaviours)
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    return dict(manager.connection_form_widgets), dict(manager.field_behaviours)


def connection_form_needs_fab() -> bool:
    """Whether this Airflow builds no provider's connection form, for want of Flask-AppBuilder.

    Airflow 3.0's API server only applies the providers' form customisations when Flask-AppBuilder
    (``apache-airflow-providers-fab``) is installed; 3.1 and later do without it, 2.x has it.
    """
    from importlib import metadata

    if not AIRFLOW_V_3_0_PLUS or AIRFLOW_V_3_1_PLUS:
        return False
    try:
        metadata.distribution("flask-appbuilder")
    except metadata.PackageNotFoundError:
        return True
    return False


# Airflow 3.0's dag.test() echoes, at DEBUG, every message a task sends its in-process supervisor.
_SUPERVISOR_ECHO = re.compile(r"\[debug\s*\] (?:Sending request|Received message from task runner)\b")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LOCALS_PANEL = re.compile(r"╭─+ locals ─+")


def task_output(out: str) -> str:
    """What tasks run by ``dag.test()`` printed, to be searched for secrets (colours taken out).

    Airflow 3.0's ``dag.test()`` prints more than the tasks and the provider wrote: the DEBUG echo
    of every message a task sends its in-process supervisor (the values handed to the secrets
    masker, the rendered template fields before masking), and tracebacks with a panel of each
    frame's local variables. A deployment writes neither (its tasks' tracebacks have no locals).
    On 3.0 those lines are left out and the rest is searched: the tasks' log lines, the provider's
    among them, and each traceback's frames and message.
    """
    text = _ANSI_ESCAPE.sub("", out)
    if not AIRFLOW_V_3_0_PLUS or AIRFLOW_V_3_1_PLUS:
        return text
    kept: list[str] = []
    in_locals = False
    for line in text.splitlines():
        if in_locals or _LOCALS_PANEL.search(line):
            # A panel ends on its bottom border (a one-line panel too).
            in_locals = "╰" not in line
            continue
        if not _SUPERVISOR_ECHO.search(line):
            kept.append(line)
    return "\n".join(kept)
