"""Every example DAG survives Airflow's DAG serialization (what the scheduler, API server and UI
work from), and every trigger the sensor defers to can be rebuilt from its own ``serialize()``,
the way the triggerer rebuilds it from the database row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_versions import dag_bag, mapped_argument_class, serialization_round_trip

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

REPO = Path(__file__).resolve().parents[1]
PROVIDER_MODULES = ("airflow_provider_whatsapp.operators.", "airflow_provider_whatsapp.sensors.")


def _example_dags() -> dict[str, Any]:
    bag = dag_bag(str(REPO / "dags"))
    assert bag.import_errors == {}
    return dict(bag.dags)


@pytest.fixture(scope="module")
def example_dags(airflow_db: str) -> dict[str, Any]:
    return _example_dags()


def _provider_tasks(dag: Any) -> list[Any]:
    # A mapped task is a MappedOperator of Airflow's, standing for its operator's class.
    return [
        task
        for task in dag.tasks
        if getattr(task, "operator_class", type(task)).__module__.startswith(PROVIDER_MODULES)
    ]


def test_every_example_dag_is_covered(example_dags: dict[str, Any]) -> None:
    files = {path.stem for path in (REPO / "dags").glob("example_*.py")}
    assert set(example_dags) == files
    # The one without: a downstream step of the scheduled onboarding, on its asset events.
    assert [dag_id for dag_id, dag in example_dags.items() if not _provider_tasks(dag)] == [
        "example_whatsapp_onboarded_numbers"
    ]


@pytest.mark.parametrize(
    "dag_id",
    [
        "example_whatsapp_create_phone_number",
        "example_whatsapp_onboarding",
        "example_whatsapp_bulk_onboarding",
        "example_whatsapp_migration",
        "example_whatsapp_preverified",
        "example_whatsapp_scheduled_onboarding",
    ],
)
def test_example_dag_survives_serialization(example_dags: dict[str, Any], dag_id: str) -> None:
    from airflow.providers.common.compat.sdk import MappedOperator, XComArg

    mapped_argument = mapped_argument_class()
    dag = example_dags[dag_id]
    back = serialization_round_trip(dag)
    assert set(back.task_dict) == set(dag.task_dict)
    for task in dag.tasks:
        assert back.get_task(task.task_id).downstream_task_ids == task.downstream_task_ids, task.task_id
    for task in _provider_tasks(dag):
        restored = back.get_task(task.task_id)
        operator_class = task.operator_class if isinstance(task, MappedOperator) else type(task)
        where = f"{dag_id}.{task.task_id}"
        assert restored.task_type == operator_class.__name__, where
        assert restored._task_module == operator_class.__module__, where
        assert list(restored.template_fields) == list(task.template_fields), where
        assert dict(restored.template_fields_renderers) == dict(task.template_fields_renderers), where
        assert restored.ui_color == task.ui_color, where
        assert restored.retries == task.retries, where
        assert [link.name for link in restored.operator_extra_links] == [
            link.name for link in task.operator_extra_links
        ], where
        if isinstance(task, MappedOperator):
            continue  # mapped arguments are resolved at run time, from the expand input
        for field in task.template_fields:
            original, value = getattr(task, field), getattr(restored, field)
            if isinstance(original, XComArg):
                # An upstream task's output becomes the Jinja pull the worker renders.
                [upstream] = [operator.task_id for operator, _key in original.iter_references()]
                assert f"task_ids='{upstream}'" in value, (where, field, value)
            elif isinstance(original, mapped_argument):
                # Inside a mapped task group: resolved per map index at run time.
                assert f"_key='{original._key}'" in value, (where, field, value)
            else:
                assert value == original, (where, field)


def test_every_graph_task_of_the_examples_retries(example_dags: dict[str, Any]) -> None:
    """A worker killed mid-call fails its task; the retry (which adopts, and never registers twice)
    must be there to finish the job. The person's code entry is the one task that must not retry."""
    from datetime import timedelta

    checked = 0
    for dag_id, dag in example_dags.items():
        back = serialization_round_trip(dag)
        for task in back.tasks:
            if task.task_id == "enter_code":
                assert task.retries == 0, dag_id
                continue
            checked += 1
            assert task.retries >= 1, f"{dag_id}.{task.task_id}"
            assert task.retry_delay >= timedelta(seconds=5), f"{dag_id}.{task.task_id}"
    assert checked > 20


def test_create_operator_keeps_whatsapp_manager_link(example_dags: dict[str, Any]) -> None:
    back = serialization_round_trip(example_dags["example_whatsapp_create_phone_number"])
    [link] = back.get_task("create_phone_number").operator_extra_links
    assert link.name == "WhatsApp Manager"


def test_status_sensor_trigger_rebuilds_from_its_serialized_row(example_dags: dict[str, Any]) -> None:
    """The triggerer rebuilds a trigger from ``classpath`` and the stored kwargs; build each trigger
    the example sensors defer to, store it as Airflow does, rebuild it and compare."""
    from airflow.models.trigger import Trigger
    from airflow.providers.common.compat.module_loading import import_string

    from airflow_provider_whatsapp.sensors.phone_numbers import PhoneNumberStatusSensor

    sensors = [task for dag in example_dags.values() for task in dag.tasks if isinstance(task, PhoneNumberStatusSensor)]
    assert sensors, "the example DAGs should include the deferrable status sensor"
    for sensor in sensors:
        assert sensor.deferrable
        trigger = sensor.build_trigger("106540352242922", waba_id="102290129340398")
        classpath, kwargs = trigger.serialize()
        json.dumps(kwargs)  # plain values only
        row = Trigger.from_object(trigger)
        assert row.classpath == classpath
        rebuilt = import_string(row.classpath)(**row.kwargs)
        assert type(rebuilt) is type(trigger)
        assert rebuilt.serialize() == (classpath, kwargs)
        assert "password" not in json.dumps(kwargs).lower()
