"""The one real deployment the e2e tests share: starting Airflow and PostgreSQL is the slow part.

The deployment test and the browser tests run against it, in that order (file order): the
deployment test expects to find the sandbox holding only the numbers it created. It serves the
example DAGs and the e2e tests' own (``tests/e2e/dags``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airflow_provider_whatsapp.sandbox import GraphSandbox
from devtools.airflow_deployment import AirflowDeployment

APP_SECRET = "e2e-app-secret-3c9d51f0"
PIN = "861304"
CODE = "498564"
# Registered numbers stay PENDING until a test connects them, so the sensor surely defers.
CONNECT_DELAY = 3600.0
# The scheduled-onboarding DAG's requests table lives in a database of the deployment's PostgreSQL.
REQUESTS_DB_CONN_ID = "whatsapp_onboarding_db"
# Budgets a test sets on a WABA of its own count calls in windows of this length, each WABA's
# from its first call; the other WABAs have no budget.
RATE_WINDOW = 60.0
# A connection whose tasks defer any budget wait longer than a few seconds instead of sleeping.
BUDGETS_CONN_ID = "whatsapp_budgets"
DEFER_WAIT_OVER = 10
REPO = Path(__file__).resolve().parents[2]


def dags_folder() -> Path:
    """A folder of links to the example DAGs (and the files they read) and the e2e tests' DAGs."""
    folder = Path(tempfile.mkdtemp(prefix="whatsapp-e2e-dags-"))
    for source in [*(REPO / "dags").iterdir(), *(REPO / "tests" / "e2e" / "dags").glob("*.py")]:
        if source.is_file():
            (folder / source.name).symlink_to(source)
    return folder


class Deployment:
    """Airflow and the Graph sandbox it talks to, and the runs tests made on them."""

    def __init__(self, airflow: AirflowDeployment, sandbox: GraphSandbox, started_in: float) -> None:
        self.airflow = airflow
        self.sandbox = sandbox
        self.started_in = started_in
        self.runs: dict[str, str] = {}


@contextmanager
def shared_deployment() -> Iterator[Deployment]:
    """Start the sandbox and Airflow with ``whatsapp_default`` and the PIN Variable; stop both after."""
    started = time.monotonic()
    with GraphSandbox(
        app_secret=APP_SECRET,
        fixed_code=CODE,
        connect_delay=CONNECT_DELAY,
        code_request_cooldown=0.0,
        rate_window=RATE_WINDOW,
        rate_window_from_first_call=True,
    ) as sandbox:
        env = {
            "AIRFLOW_CONN_WHATSAPP_DEFAULT": sandbox.airflow_conn_json(),
            f"AIRFLOW_CONN_{BUDGETS_CONN_ID.upper()}": sandbox.airflow_conn_json({"defer_wait_over": DEFER_WAIT_OVER}),
            "AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN": PIN,
            "AIRFLOW_VAR_WHATSAPP_ONBOARDING_CODE_SOURCE": "sandbox",
            "AIRFLOW__WHATSAPP__BUDGET_STORE": "airflow",
        }
        airflow = AirflowDeployment(
            env=env, databases={REQUESTS_DB_CONN_ID: "whatsapp_requests"}, dags_folder=dags_folder()
        )
        try:
            with airflow:
                print(f"\ndeployment up in {time.monotonic() - started:.1f}s on {airflow.database}")
                yield Deployment(airflow, sandbox, time.monotonic() - started)
        except BaseException:
            print(f"\nThe e2e deployment failed; where to look: {airflow.where_to_look()}", file=sys.stderr)
            raise
    print(f"e2e deployment session took {time.monotonic() - started:.1f}s")
