"""pytest fixtures for testing DAGs against the Graph API sandbox (registered as a ``pytest11`` entry point).

Sandbox fixtures: ``whatsapp_sandbox``, ``whatsapp_sandbox_factory``, ``whatsapp_connection`` and
``whatsapp_onboarding_sandbox``; the marker ``@pytest.mark.whatsapp_sandbox(**options)`` sets the
options of a test's sandbox. DAG fixtures: ``whatsapp_airflow_home`` and ``whatsapp_run_dag``.

pytest loads this plugin in every run of every project where the provider is installed, so it
changes nothing unless asked: the DAG fixtures need ``whatsapp_isolated_airflow = true`` in the
pytest configuration (or ``--whatsapp-isolated-airflow``). Airflow reads ``AIRFLOW_HOME`` and its
configuration when it is first imported, so the isolated home is set up as pytest starts, before
any ``conftest.py`` or test module can import Airflow, and holds for the whole session.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from airflow_provider_whatsapp.sandbox.server import GraphSandbox
from airflow_provider_whatsapp.sandbox.state import FIXED_TEST_CODE, FIXED_TEST_PIN
from airflow_provider_whatsapp.testing.airflow_home import (
    AirflowHomeError,
    AirflowTestHome,
    config_variables,
    new_airflow_home,
)

MARKER = "whatsapp_sandbox"
HOME_KEY = pytest.StashKey[AirflowTestHome]()
#: Retry extras of the ``whatsapp_onboarding_sandbox`` connection: its retries wait at most a second,
#: so a throttled or failing Graph fails a test in seconds where a production connection waits minutes.
TEST_RETRY_EXTRAS: dict[str, Any] = {
    "backoff_initial": 0.1,
    "backoff_max": 0.5,
    "max_throttle_wait": 1.0,
    "exhausted_wait": 1.0,
    "slowdown_wait": 0,
    "max_total_wait": 30.0,
}
NOT_ISOLATED = (
    "{fixture} needs an Airflow home of its own for the test session, set up before Airflow is "
    "imported: add `whatsapp_isolated_airflow = true` to your pytest configuration "
    "([tool.pytest.ini_options] in pyproject.toml, [pytest] in pytest.ini) or run pytest with "
    "--whatsapp-isolated-airflow. The plugin never changes AIRFLOW_HOME unless asked."
)


# ------------------------------------------------------------------------- options and set-up


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("whatsapp", "airflow-provider-whatsapp")
    group.addoption(
        "--whatsapp-isolated-airflow",
        action="store_true",
        default=False,
        help="run Airflow in a fresh home and SQLite database for this session (whatsapp_run_dag)",
    )
    parser.addini(
        "whatsapp_isolated_airflow",
        type="bool",
        default=False,
        help="run Airflow in a fresh home and SQLite database for the session (whatsapp_run_dag)",
    )
    parser.addini(
        "whatsapp_dags_folder",
        default="dags",
        help="the DAG folder of the isolated Airflow, relative to the configuration file (default: dags)",
    )
    parser.addini(
        "whatsapp_airflow_config",
        type="linelist",
        default=[],
        help="Airflow settings of the isolated Airflow, one `section.key = value` a line",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # The last moment before conftest.py files are imported, and with them, often, Airflow.
    options, _ = parser.parse_known_and_unknown_args(args)
    if not (options.whatsapp_isolated_airflow or early_config.getini("whatsapp_isolated_airflow")):
        return
    if "airflow" in sys.modules:
        raise pytest.UsageError(
            "whatsapp_isolated_airflow: Airflow was imported before pytest loaded the plugin (by another "
            "plugin?), with the configuration of the environment; the isolated home cannot apply to it"
        )
    base = early_config.inipath.parent if early_config.inipath else early_config.rootpath
    try:
        home = new_airflow_home(
            base / str(early_config.getini("whatsapp_dags_folder")),
            config_variables(early_config.getini("whatsapp_airflow_config")),
        )
    except AirflowHomeError as error:
        raise pytest.UsageError(str(error)) from None
    home.enter()
    early_config.stash[HOME_KEY] = home


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the test's Graph sandbox (GraphSandbox keyword arguments: "
        "rate_limit, waba_rate_limits, wabas, connect_delay, fixed_code, ...)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    home = config.stash.get(HOME_KEY, None)
    return None if home is None else f"whatsapp: isolated Airflow home {home.path}, DAG folder {home.dags_folder}"


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(HOME_KEY, None)
    if home is not None:
        home.leave()


# -------------------------------------------------------------------------------- the sandbox


def sandbox_options(request: pytest.FixtureRequest, **defaults: Any) -> dict[str, Any]:
    """``defaults``, overridden by the options of the test's ``whatsapp_sandbox`` markers (closest last)."""
    options = dict(defaults)
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only, got {marker.args!r}")
        options.update(marker.kwargs)
    return options


@pytest.fixture
def whatsapp_sandbox_factory() -> Iterator[Callable[..., GraphSandbox]]:
    """A callable taking ``GraphSandbox`` keyword arguments and returning a started sandbox.

    Every sandbox it started is stopped at teardown.
    """
    started: list[GraphSandbox] = []

    def make(**kwargs: Any) -> GraphSandbox:
        sandbox = GraphSandbox(**kwargs)
        started.append(sandbox)
        return sandbox.start()

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def whatsapp_sandbox(
    whatsapp_sandbox_factory: Callable[..., GraphSandbox], request: pytest.FixtureRequest
) -> GraphSandbox:
    """A fresh started sandbox with random verification codes (or the marker's options), stopped after the test."""
    return whatsapp_sandbox_factory(**sandbox_options(request, fixed_code=None))


@pytest.fixture
def whatsapp_connection(whatsapp_sandbox: GraphSandbox, monkeypatch: pytest.MonkeyPatch) -> GraphSandbox:
    """The ``whatsapp_sandbox``, with ``AIRFLOW_CONN_WHATSAPP_DEFAULT`` pointing at it."""
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", whatsapp_sandbox.airflow_conn_json())
    return whatsapp_sandbox


@pytest.fixture
def whatsapp_onboarding_sandbox(
    whatsapp_sandbox_factory: Callable[..., GraphSandbox],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> GraphSandbox:
    """A started sandbox with everything an onboarding DAG reads from Airflow, for the test.

    - the connection ``whatsapp_default`` (``AIRFLOW_CONN_WHATSAPP_DEFAULT``), whose retries wait at
      most a second (:data:`TEST_RETRY_EXTRAS`);
    - every verification code it sends is ``FIXED_TEST_CODE`` (``"123456"``);
    - the two-step PIN ``FIXED_TEST_PIN`` as the Variable and as the connection ``whatsapp_two_step_pin``,
      and the Variable ``whatsapp_onboarding_code_source`` (``sandbox``), as the sandbox's command
      line prints them.

    ``@pytest.mark.whatsapp_sandbox(rate_limit=..., ...)`` changes the sandbox's options.
    """
    sandbox = whatsapp_sandbox_factory(**sandbox_options(request, fixed_code=FIXED_TEST_CODE))
    for name, value in sandbox.example_dag_environment(FIXED_TEST_PIN).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json(TEST_RETRY_EXTRAS))
    return sandbox


# ------------------------------------------------------------------------------------ Airflow


@pytest.fixture(scope="session")
def whatsapp_airflow_home(pytestconfig: pytest.Config) -> AirflowTestHome:
    """The session's Airflow home, its metadata database migrated (once per session).

    Needs ``whatsapp_isolated_airflow = true`` in the pytest configuration.
    """
    home = pytestconfig.stash.get(HOME_KEY, None)
    if home is None:
        pytest.fail(NOT_ISOLATED.format(fixture="whatsapp_airflow_home"), pytrace=False)
    try:
        from airflow_provider_whatsapp.version_compat import get_base_airflow_version_tuple

        get_base_airflow_version_tuple()
    except ImportError as error:
        pytest.fail(f"whatsapp_airflow_home: Apache Airflow cannot be imported here ({error})", pytrace=False)
    try:
        home.migrate()
    except AirflowHomeError as error:
        pytest.fail(f"whatsapp_airflow_home: {error}", pytrace=False)
    # Anything imported during collection may hold pooled connections to the database file as it was
    # before the migration: start the ORM afresh so that every test sees the tables.
    from airflow import settings

    settings.reconfigure_orm()  # type: ignore[no-untyped-call]
    return home


@pytest.fixture
def whatsapp_run_dag(whatsapp_airflow_home: AirflowTestHome) -> Callable[..., Any]:
    """Run a DAG with ``dag.test()``: ``whatsapp_run_dag(dag, conf=None, task_args=None)``.

    ``dag`` is a DAG ID from the DAG folder (``whatsapp_dags_folder``) or a DAG object. Returns a
    :class:`~airflow_provider_whatsapp.testing.dag_runs.DagRunResult`: ``state``,
    ``task_state(task_id)``, ``xcom(task_id, key="return_value")``, read from the metadata database.
    ``task_args`` sets attributes of every task for this run, e.g. ``{"retries": 0}``.
    """
    from airflow_provider_whatsapp.testing.dag_runs import DagImportError, DagRunResult, run_dag

    def run(
        dag: Any, conf: Mapping[str, Any] | None = None, task_args: Mapping[str, Any] | None = None
    ) -> DagRunResult:
        try:
            return run_dag(dag, conf, task_args)
        except DagImportError as error:
            pytest.fail(f"whatsapp_run_dag: {error}", pytrace=False)

    return run


__all__ = ["FIXED_TEST_CODE", "FIXED_TEST_PIN", "TEST_RETRY_EXTRAS"]
