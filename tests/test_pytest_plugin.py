"""The pytest plugin's DAG fixtures: opt-in isolation, the onboarding sandbox, the marker, clear errors."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_whatsapp.sandbox import FIXED_TEST_CODE, FIXED_TEST_PIN, GraphSandbox
from airflow_provider_whatsapp.sandbox.pytest_plugin import TEST_RETRY_EXTRAS
from airflow_provider_whatsapp.testing.airflow_home import (
    AirflowHomeError,
    AirflowTestHome,
    config_variables,
    entered_home,
)
from airflow_provider_whatsapp.testing.dag_runs import DagImportError, load_dag
from tests.user_project import run_user_pytest

# The fixtures run users' DAGs on every Airflow the provider supports (scripts/compat).
pytestmark = pytest.mark.compat


def test_the_session_runs_in_the_isolated_home() -> None:
    home = entered_home()
    assert home is not None
    assert os.environ["AIRFLOW_HOME"] == str(home.path)
    assert os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home.path}/airflow.db"
    assert Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) == Path(__file__).resolve().parent.parent / "dags"


def test_entering_a_home_replaces_the_shells_airflow_environment_and_leaving_restores_it(tmp_path: Path) -> None:
    shell = {
        "PATH": "/bin",
        "AIRFLOW_HOME": "/home/me/airflow",
        "AIRFLOW_CONFIG": "/home/me/airflow/prod.cfg",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://prod",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW_CONN_WHATSAPP_DEFAULT": '{"password": "pasted"}',
        "AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN": "604718",
    }
    environ = dict(shell)
    (tmp_path / "home").mkdir()
    home = AirflowTestHome(tmp_path / "home", tmp_path, config={"AIRFLOW__CORE__MAX_MAP_LENGTH": "2048"})
    home.enter(environ)
    assert environ == {
        "PATH": "/bin",
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'home'}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__MAX_MAP_LENGTH": "2048",
    }
    environ["AIRFLOW_CONN_SET_BY_A_TEST"] = "{}"
    home.leave(environ)
    assert environ == shell
    assert not (tmp_path / "home").exists()
    assert entered_home() is not home  # a mapping other than os.environ: the session's home stays


def test_config_lines_become_airflow_variables() -> None:
    lines = ["# a comment", "", "core.max_map_length = 2048", " scheduler.parsing_processes=1 "]
    assert config_variables(lines) == {
        "AIRFLOW__CORE__MAX_MAP_LENGTH": "2048",
        "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
    }
    with pytest.raises(AirflowHomeError, match=re.escape("'max_map_length = 2048' is not `section.key = value`")):
        config_variables(["max_map_length = 2048"])


def test_a_dag_missing_from_its_folder_names_each_file_and_its_import_error(tmp_path: Path, airflow_db: str) -> None:
    (tmp_path / "good.py").write_text(
        "from datetime import datetime\n"
        "from airflow.providers.common.compat.sdk import DAG\n"
        "dag = DAG('good', schedule=None, start_date=datetime(2026, 1, 1))\n"
    )
    (tmp_path / "my_onboarding.py").write_text(
        "from airflow.providers.common.compat.sdk import DAG\nfrom airflow_provider_whatsapp.operators import Nope\n"
    )
    with pytest.raises(DagImportError) as raised:
        load_dag(tmp_path, "my_onboarding")
    message = str(raised.value)
    assert f"DAG 'my_onboarding' is not in the DAG folder {tmp_path} (DAGs found: good)" in message
    assert f"{tmp_path / 'my_onboarding.py'}:" in message
    assert "ImportError: cannot import name 'Nope'" in message
    assert load_dag(tmp_path, "good").dag_id == "good"


def test_run_dag_fails_the_test_with_the_import_error_not_a_traceback(run_dag: Any) -> None:
    with pytest.raises(pytest.fail.Exception) as raised:
        run_dag("no_such_dag")
    assert raised.value.pytrace is False
    assert str(raised.value).startswith("whatsapp_run_dag: DAG 'no_such_dag' is not in the DAG folder")
    assert "example_whatsapp_onboarding" in str(raised.value)  # the DAGs it did find


def test_the_onboarding_sandbox_exports_what_onboarding_dags_read(whatsapp_onboarding_sandbox: GraphSandbox) -> None:
    sandbox = whatsapp_onboarding_sandbox
    assert sandbox.settings.fixed_code == FIXED_TEST_CODE
    conn = json.loads(os.environ["AIRFLOW_CONN_WHATSAPP_DEFAULT"])
    assert (conn["host"], conn["password"]) == (sandbox.url, sandbox.token)
    assert conn["extra"] == {"api_version": "v26.0", "waba_id": sandbox.default_waba_id, **TEST_RETRY_EXTRAS}
    assert os.environ["AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN"] == FIXED_TEST_PIN
    assert json.loads(os.environ["AIRFLOW_CONN_WHATSAPP_TWO_STEP_PIN"])["password"] == FIXED_TEST_PIN


@pytest.mark.whatsapp_sandbox(rate_limit=3, wabas=2, fixed_code="246810")
def test_the_marker_sets_the_sandbox_options(whatsapp_connection: GraphSandbox) -> None:
    assert whatsapp_connection.rate_limit == 3
    assert len(whatsapp_connection.waba_ids) == 2
    assert whatsapp_connection.settings.fixed_code == "246810"


def test_without_opting_in_the_plugin_leaves_airflow_alone_and_says_how_to_opt_in(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import os, sys

            def test_nothing_changed():
                assert os.environ["AIRFLOW_HOME"] == "/users/own/airflow"
                assert "airflow" not in sys.modules  # loading the plugin imports no Airflow

            def test_run_dag_needs_the_opt_in(whatsapp_run_dag):
                pass
            """
        )
    )
    done = run_user_pytest(tmp_path, timeout=300, AIRFLOW_HOME="/users/own/airflow")
    # A plugin of another package may add "N warnings" between the counts (anyio does on some versions).
    assert re.search(r"\b1 passed, (\d+ warnings?, )?1 error\b", done.stdout), done.stdout + done.stderr
    assert "whatsapp_airflow_home needs an Airflow home of its own" in done.stdout
    assert "whatsapp_isolated_airflow = true" in done.stdout
    assert "Traceback" not in done.stdout


def test_an_unsupported_airflow_stops_pytest_at_start_with_the_supported_range(tmp_path: Path) -> None:
    # An installed Airflow older than the provider supports (pip refuses the pair; a later install can
    # still make it): its metadata, first on the path, is all the version check reads.
    site = tmp_path / "site"
    (site / "apache_airflow_core-2.10.5.dist-info").mkdir(parents=True)
    (site / "apache_airflow_core-2.10.5.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: apache-airflow-core\nVersion: 2.10.5\n"
    )
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "test_user.py").write_text("def test_anything():\n    pass\n")
    done = run_user_pytest(tmp_path / "project", timeout=300, PYTHONPATH=str(site))
    assert done.returncode != 0
    assert "supports Apache Airflow >=2.11.0,<4 (2.11.x and 3.x); this is Apache Airflow 2.10.5" in done.stderr


def test_a_dag_folder_that_does_not_exist_stops_pytest_naming_it(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nwhatsapp_isolated_airflow = true\nwhatsapp_dags_folder = airflow/dags\n"
    )
    (tmp_path / "test_user.py").write_text("def test_anything():\n    pass\n")
    done = run_user_pytest(tmp_path, timeout=300)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"whatsapp_dags_folder: {tmp_path / 'airflow' / 'dags'} is not a directory" in done.stderr
