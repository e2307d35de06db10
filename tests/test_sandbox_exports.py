"""The sandbox CLI's exports are all the example DAGs need: every connection and Variable they
name, in operator arguments or in templates, is among them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_whatsapp.sandbox import GraphSandbox

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

REPO = Path(__file__).resolve().parent.parent
# ``var.value.get('name', default)`` has a default: the Variable is not needed, and its name may be
# built at parse time (not in the source).
TEMPLATE_NAME_RE = re.compile(r"\b(conn|var\.value|var\.json)\.(?!get\()([A-Za-z0-9_]+)")


def test_the_exports_name_every_connection_and_variable_of_the_example_dags() -> None:
    from tests.airflow_versions import dag_bag

    bag = dag_bag(str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    assert len(bag.dags) == 7
    needed: set[str] = set()
    for dag in bag.dags.values():
        for task in dag.tasks:
            for name, value in vars(task).items():
                if isinstance(value, str) and value and name.endswith("conn_id"):
                    needed.add(f"AIRFLOW_CONN_{value.upper()}")
                if isinstance(value, str) and value and name.endswith("_variable"):
                    needed.add(f"AIRFLOW_VAR_{value.upper()}")
    for source in (REPO / "dags").glob("*.py"):
        for kind, name in TEMPLATE_NAME_RE.findall(source.read_text()):
            needed.add(f"AIRFLOW_{'CONN' if kind == 'conn' else 'VAR'}_{name.upper()}")
    assert {"AIRFLOW_CONN_WHATSAPP_DEFAULT", "AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN"} <= needed
    exports = GraphSandbox().example_dag_environment("604718")
    assert needed <= set(exports), sorted(needed - set(exports))
