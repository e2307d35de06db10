"""Test set-up: a throwaway AIRFLOW_HOME with its own SQLite database, and hook fixtures.

The environment is set at import time, before anything imports Airflow, so no test ever reads or
writes the developer's own Airflow installation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# Guarded so a second import of this module (under another name) cannot move the home mid-session.
_HOME = os.environ.get("WHATSAPP_PROVIDER_TEST_HOME") or tempfile.mkdtemp(prefix="whatsapp-provider-airflow-home-")
os.environ["WHATSAPP_PROVIDER_TEST_HOME"] = _HOME
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# dag.test() runs a trigger inline, where Airflow's resume race cannot happen: no grace to wait.
os.environ["AIRFLOW__WHATSAPP__ONBOARDING_RESUME_GRACE"] = "0"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ.pop("AIRFLOW_CONN_WHATSAPP_DEFAULT", None)

from tests.fuzz import report_header  # noqa: E402
from tests.policies import FAST_POLICY  # noqa: E402


class SleepRecorder:
    """Stands in for ``time.sleep``: records each wait and sleeps at most a few milliseconds."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        import time

        self.waits.append(seconds)
        time.sleep(min(seconds, 0.005))


@pytest.fixture(autouse=True)
def fresh_usage_store() -> None:
    """Start every test with no rate-limit usage known, as a new task or triggerer process does."""
    from airflow_provider_whatsapp.hooks.usage import USAGE_STORE

    USAGE_STORE.clear()


@pytest.fixture(autouse=True)
def fresh_secrets_masker() -> None:
    """Start every test with an empty secrets masker, as every Airflow task process does.

    The masker is process-wide and joins its patterns in set order: a 5-digit PIN masked by one
    test would otherwise mask the first five digits of another test's 6-digit code (``***6``).
    """
    from tests.airflow_versions import reset_secrets_masker

    reset_secrets_masker()


def pytest_report_header() -> str:
    return report_header()


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Create the metadata database once per test session."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Anything imported during collection may already hold pooled connections to the database
    # file as it was before the migration; start the ORM afresh so every test sees the tables.
    from airflow import settings

    settings.reconfigure_orm()
    return _HOME


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_hook(whatsapp_connection: Any, sleeps: SleepRecorder) -> Iterator[Callable[..., Any]]:
    """Build hooks on the sandbox connection; all are closed at teardown."""
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

    hooks: list[WhatsAppBusinessHook] = []

    def make(**kwargs: Any) -> WhatsAppBusinessHook:
        kwargs.setdefault("retry_policy", FAST_POLICY)
        kwargs.setdefault("sleep", sleeps)
        hook = WhatsAppBusinessHook(**kwargs)
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


@pytest.fixture
def hook(make_hook: Callable[..., Any]) -> Any:
    return make_hook()


class DagRunResult:
    """What one ``dag.test()`` run left in the metadata database."""

    def __init__(self, dag_id: str, run_id: str, state: str) -> None:
        from airflow import settings
        from airflow.models.taskinstance import TaskInstance
        from sqlalchemy import select

        from tests.airflow_versions import xcom_values

        self.dag_id = dag_id
        self.run_id = run_id
        self.state = state
        with settings.Session() as session:
            tis = session.scalars(
                select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            ).all()
            self.task_states = {(ti.task_id, ti.map_index): str(ti.state) for ti in tis}
            self.try_numbers = {(ti.task_id, ti.map_index): ti.try_number for ti in tis}
            self.xcoms = xcom_values(session, dag_id, run_id)

    def task_state(self, task_id: str, map_index: int = -1) -> str:
        return self.task_states[(task_id, map_index)]

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        return self.xcoms[(task_id, key, map_index)]


@pytest.fixture
def run_dag(airflow_db: str) -> Callable[..., DagRunResult]:
    """Run an example DAG from ``dags/`` with ``dag.test()`` and return what it left behind."""

    def run(dag_id: str, conf: dict[str, Any] | None = None, task_args: dict[str, Any] | None = None) -> DagRunResult:
        """``task_args`` override attributes of every task for this run, e.g. ``{"retries": 0}``."""
        from tests.airflow_versions import dag_bag

        bag = dag_bag(str(REPO / "dags"))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(dag_id)
        assert dag is not None, f"{dag_id} not found in dags/"
        for task in dag.tasks:
            for name, value in (task_args or {}).items():
                setattr(task, name, value)
        dag_run = dag.test(run_conf=conf)
        return DagRunResult(dag_id, dag_run.run_id, str(dag_run.state))

    return run


@pytest.fixture
def run_inline_dag(airflow_db: str) -> Callable[..., Any]:
    """``dag.test()`` for a DAG built inside a test (from Airflow 3.1, written to the database first)."""

    def run(dag: Any, conf: dict[str, Any] | None = None) -> Any:
        from tests.airflow_versions import run_unserialized_dag

        return run_unserialized_dag(dag, conf)

    return run
