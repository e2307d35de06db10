"""Test set-up: hook fixtures, and our names for the plugin's Airflow fixtures.

The Airflow home (a throwaway directory with its own SQLite database, the DAG folder ``dags/``) is
the pytest plugin's isolated one, switched on in pyproject.toml (``whatsapp_isolated_airflow``): it
is in place before this file is imported, so no test ever reads or writes the developer's own
Airflow installation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_whatsapp.testing.airflow_home import entered_home

if entered_home() is None:
    # Checked before anything here imports Airflow, which would read the developer's own home.
    raise pytest.UsageError(
        "the tests run in the pytest plugin's isolated Airflow home: whatsapp_isolated_airflow is set in "
        "pyproject.toml; run pytest from the repository, with the provider installed (scripts/setup)"
    )

from airflow_provider_whatsapp.testing import AirflowTestHome, DagRunResult
from tests.fuzz import report_header
from tests.policies import FAST_POLICY

__all__ = ["DagRunResult"]


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
def airflow_db(whatsapp_airflow_home: AirflowTestHome) -> str:
    """The metadata database, migrated once per test session; the Airflow home's path."""
    return str(whatsapp_airflow_home.path)


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


@pytest.fixture
def run_dag(whatsapp_run_dag: Callable[..., DagRunResult]) -> Callable[..., DagRunResult]:
    """``run_dag(dag_id, conf=None, task_args=None)``: an example DAG from ``dags/``, run with ``dag.test()``."""
    return whatsapp_run_dag


@pytest.fixture
def run_inline_dag(airflow_db: str) -> Callable[..., Any]:
    """``dag.test()`` for a DAG built inside a test; returns the ``DagRun``."""
    from airflow_provider_whatsapp.testing.dag_runs import dag_test

    return dag_test
