"""The one real deployment the e2e tests share: starting Airflow and PostgreSQL is the slow part.

The deployment test and the browser tests run against it, in that order (file order): the
deployment test expects to find the sandbox holding only the numbers it created.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from airflow_provider_whatsapp.sandbox import GraphSandbox
from devtools.airflow_deployment import AirflowDeployment

APP_SECRET = "e2e-app-secret-3c9d51f0"
PIN = "861304"
CODE = "498564"
# Registered numbers stay PENDING until a test connects them, so the sensor surely defers.
CONNECT_DELAY = 3600.0
# The scheduled-onboarding DAG's requests table lives in a database of the deployment's PostgreSQL.
REQUESTS_DB_CONN_ID = "whatsapp_onboarding_db"


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
        app_secret=APP_SECRET, fixed_code=CODE, connect_delay=CONNECT_DELAY, code_request_cooldown=0.0
    ) as sandbox:
        env = {
            "AIRFLOW_CONN_WHATSAPP_DEFAULT": sandbox.airflow_conn_json(),
            "AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN": PIN,
            "AIRFLOW_VAR_WHATSAPP_ONBOARDING_CODE_SOURCE": "sandbox",
        }
        airflow = AirflowDeployment(env=env, databases={REQUESTS_DB_CONN_ID: "whatsapp_requests"})
        try:
            with airflow:
                print(f"\ndeployment up in {time.monotonic() - started:.1f}s on {airflow.database}")
                yield Deployment(airflow, sandbox, time.monotonic() - started)
        except BaseException:
            print(f"\nThe e2e deployment failed; where to look: {airflow.where_to_look()}", file=sys.stderr)
            raise
    print(f"e2e deployment session took {time.monotonic() - started:.1f}s")
