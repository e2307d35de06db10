"""Run a DAG with ``dag.test()`` and read what the run left in the metadata database.

The same calls on every supported Airflow: what moved between versions (the ``DagBag``, the XCom
model, which DAGs ``dag.test()`` accepts) is chosen here by the provider's version flags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DagImportError",
    "DagRunResult",
    "dag_bag",
    "dag_test",
    "load_dag",
    "run_dag",
    "xcom_model",
    "xcom_value",
    "xcom_values",
]


class DagImportError(LookupError):
    """A DAG could not be loaded from its DAG folder: not there, or its file failed to import."""


class DagRunResult:
    """
    What one DAG run left in the metadata database: its state, and each task's state, tries and XComs.

    :param dag_id: the DAG's ID.
    :param run_id: the run's ID.
    :param state: the run's final state, e.g. ``"success"`` or ``"failed"``.
    """

    def __init__(self, dag_id: str, run_id: str, state: str) -> None:
        from airflow import settings
        from airflow.models.taskinstance import TaskInstance
        from sqlalchemy import select

        self.dag_id = dag_id
        self.run_id = run_id
        self.state = state
        with settings.Session() as session:  # type: ignore[misc]
            tis = session.scalars(
                select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            ).all()
            #: Each task instance's state, by ``(task_id, map_index)`` (``-1`` for an unmapped task).
            self.task_states: dict[tuple[str, int], str] = {(ti.task_id, ti.map_index): str(ti.state) for ti in tis}
            #: Each task instance's last try number, by ``(task_id, map_index)``.
            self.try_numbers: dict[tuple[str, int], int] = {(ti.task_id, ti.map_index): ti.try_number for ti in tis}
            #: Every XCom of the run, by ``(task_id, key, map_index)``.
            self.xcoms: dict[tuple[str, str, int], Any] = xcom_values(session, dag_id, run_id)

    def task_state(self, task_id: str, map_index: int = -1) -> str:
        """The state of one task instance, e.g. ``"success"``, ``"failed"``, ``"upstream_failed"``.

        :param task_id: the task's ID (``group.task`` inside a task group).
        :param map_index: the index of a mapped task instance; ``-1`` for an unmapped task.
        """
        try:
            return self.task_states[(task_id, map_index)]
        except KeyError:
            raise KeyError(self._missing(f"task {task_id!r}", map_index)) from None

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The value a task instance pushed under ``key`` (by default what it returned).

        :param task_id: the task's ID.
        :param key: the XCom key, e.g. ``"waba_id"`` or ``"whatsapp_error"``.
        :param map_index: the index of a mapped task instance; ``-1`` for an unmapped task.
        """
        try:
            return self.xcoms[(task_id, key, map_index)]
        except KeyError:
            raise KeyError(self._missing(f"XCom {key!r} of task {task_id!r}", map_index)) from None

    def _missing(self, what: str, map_index: int) -> str:
        index = "" if map_index == -1 else f" (map index {map_index})"
        pushed = ", ".join(sorted({f"{task}:{key}" for task, key, _ in self.xcoms})) or "none"
        return f"{what}{index} is not in run {self.run_id} of {self.dag_id}; XComs pushed: {pushed}"

    def __repr__(self) -> str:
        states = ", ".join(
            f"{task}{'' if index == -1 else f'[{index}]'}={state}"
            for (task, index), state in sorted(self.task_states.items())
        )
        return f"DagRunResult({self.dag_id}, {self.run_id}, state={self.state}; {states})"


def dag_bag(dag_folder: str) -> Any:
    """A ``DagBag`` of ``dag_folder`` (it moved to ``airflow.dag_processing`` in 3.2)."""
    from airflow_provider_whatsapp.version_compat import AIRFLOW_V_3_2_PLUS

    if AIRFLOW_V_3_2_PLUS:
        from airflow.dag_processing.dagbag import DagBag
    else:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(dag_folder=dag_folder)


def load_dag(dag_folder: str | Path, dag_id: str) -> Any:
    """The DAG ``dag_id`` as Airflow parses it from ``dag_folder``.

    :raises DagImportError: naming the folder and, for each file that failed to import, the file and
        its error.
    """
    bag = dag_bag(str(dag_folder))
    dag = bag.get_dag(dag_id)
    if dag is not None:
        return dag
    found = ", ".join(sorted(bag.dag_ids)) or "none"
    message = f"DAG {dag_id!r} is not in the DAG folder {dag_folder} (DAGs found: {found})"
    if bag.import_errors:
        failures = "\n".join(
            f"{path}:\n    " + str(error).strip().replace("\n", "\n    ")
            for path, error in sorted(bag.import_errors.items())
        )
        message = f"{message}; these DAG files failed to import:\n{failures}"
    raise DagImportError(message)


def dag_test(dag: Any, conf: Mapping[str, Any] | None = None) -> Any:
    """``dag.test()``: one run, every task in this process; returns the ``DagRun``.

    From Airflow 3.1 ``dag.test()`` only runs a DAG whose serialized form is in the database, which
    it writes for the DAGs of the DAG folder only: any other DAG (one built in a test) is written here
    first, as the DAG processor would.
    """
    from airflow_provider_whatsapp.version_compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_2_PLUS

    if AIRFLOW_V_3_1_PLUS:
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        if AIRFLOW_V_3_2_PLUS:
            from airflow.dag_processing.dagbag import sync_bag_to_db
        else:
            from airflow.models.dagbag import sync_bag_to_db  # type: ignore[no-redef]

        DagBundlesManager().sync_bundles_to_db()  # type: ignore[no-untyped-call]
        bag = dag_bag(os.devnull)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
    return dag.test(run_conf=dict(conf) if conf is not None else None)


def run_dag(
    dag: Any, conf: Mapping[str, Any] | None = None, task_args: Mapping[str, Any] | None = None
) -> DagRunResult:
    """Run a DAG once with ``dag.test()`` and return what the run left in the metadata database.

    :param dag: a DAG object, or the ID of a DAG in the configured DAG folder (``[core] dags_folder``).
    :param conf: the run's ``conf`` (what ``params`` are rendered from).
    :param task_args: attributes set on every task for this run only, e.g. ``{"retries": 0}``.
    :raises DagImportError: the DAG ID is not in the DAG folder (with each file's import error).
    """
    if isinstance(dag, str):
        from airflow.configuration import conf as airflow_conf

        dag = load_dag(os.path.expanduser(airflow_conf.get("core", "dags_folder")), dag)
    elif not hasattr(dag, "test") or not hasattr(dag, "tasks"):
        raise TypeError(f"dag must be a DAG or a DAG ID, not {type(dag).__name__}")
    for task in dag.tasks:
        for name, value in (task_args or {}).items():
            setattr(task, name, value)
    dag_run = dag_test(dag, conf)
    return DagRunResult(dag.dag_id, dag_run.run_id, str(dag_run.state))


def xcom_model() -> Any:
    """The ORM model of the ``xcom`` table (``XComModel`` from 3.0, ``XCom`` before)."""
    from airflow_provider_whatsapp.version_compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.xcom import XComModel

        return XComModel
    from airflow.models.xcom import XCom

    return XCom


def xcom_values(session: Any, dag_id: str, run_id: str) -> dict[tuple[str, str, int], Any]:
    """Every XCom of one DAG run, by ``(task_id, key, map_index)``, as the tasks pushed them."""
    from airflow_provider_whatsapp.version_compat import AIRFLOW_V_3_0_PLUS

    model = xcom_model()
    if AIRFLOW_V_3_0_PLUS:
        rows = session.scalars(model.get_many(run_id=run_id, dag_ids=dag_id)).all()
    else:
        rows = model.get_many(run_id=run_id, dag_ids=dag_id, session=session).all()
    return {(row.task_id, row.key, row.map_index): xcom_value(row) for row in rows}


def xcom_value(row: Any) -> Any:
    """The value of one ``xcom`` row, as the task pushed it."""
    # From 3.0 stored as JSON by the Task Execution API; before, deserialized as the row loads.
    return row.value
