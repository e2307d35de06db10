"""``scripts/demo --ui``: a local Airflow and the Graph sandbox, to click through the provider by hand.

Starts the sandbox and Airflow (api-server, scheduler, dag-processor, triggerer; PostgreSQL when
Debian's binaries are there, SQLite otherwise), stores what the example DAGs read (the
``whatsapp_default`` connection, the two-step PIN as a Variable and as a connection) through the
REST API, so that the UI shows them, waits until the example DAGs are there, prints the address
and the login, and serves until Ctrl-C, which stops everything it started.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_whatsapp.sandbox import FIXED_TEST_CODE, GraphSandbox
from devtools.airflow_deployment import REPO, AirflowDeployment, wait_until

USERNAME = "admin"
PIN_VARIABLE = "whatsapp_two_step_pin"
# A demo left running is stopped after this long, like everything else here: nothing runs unbounded.
MAX_SERVE_SECONDS = 12 * 3600


def serve(pin: str) -> int:
    """Run the UI demo until Ctrl-C (or SIGTERM); return the exit status."""
    # Set here, not inherited: a shell starting the demo in the background ignores SIGINT for it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    password = secrets.token_urlsafe(12)
    try:
        with GraphSandbox(fixed_code=FIXED_TEST_CODE, connect_delay=2.0) as sandbox:
            airflow = AirflowDeployment(login=(USERNAME, password))
            print(f"Graph sandbox on {sandbox.url}; starting Airflow (about a minute)...", flush=True)
            with airflow:
                _store(airflow, sandbox.example_dag_environment(pin))
                examples = _wait_for_examples(airflow)
                _print_ready(airflow, sandbox, password, examples)
                return _watch(airflow)
    except KeyboardInterrupt:
        print("\nStopped: Airflow, its database and the Graph sandbox.", flush=True)
        return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _store(airflow: AirflowDeployment, environment: dict[str, str]) -> None:
    """Store the connections and Variables the example DAGs read, so that the UI shows them.

    :param environment: ``AIRFLOW_CONN_*`` and ``AIRFLOW_VAR_*`` values, as the sandbox gives them.
    """
    for name, value in environment.items():
        if name.startswith("AIRFLOW_VAR_"):
            airflow.api("POST", "/variables", json={"key": name.removeprefix("AIRFLOW_VAR_").lower(), "value": value})
        elif name.startswith("AIRFLOW_CONN_"):
            conn = json.loads(value)
            body: dict[str, Any] = {"connection_id": name.removeprefix("AIRFLOW_CONN_").lower()}
            body["conn_type"] = conn["conn_type"]
            body.update({field: conn[field] for field in ("host", "password") if field in conn})
            if "extra" in conn:
                body["extra"] = json.dumps(conn["extra"])
            if conn.get("host"):
                # Airflow 3.3.2's Test button refuses a connection without a port (apache/airflow#73298).
                body["port"] = urlsplit(conn["host"]).port
            airflow.api("POST", "/connections", json=body)


def _wait_for_examples(airflow: AirflowDeployment) -> list[str]:
    wanted = sorted(path.stem for path in (REPO / "dags").glob("example_*.py"))

    def listed() -> bool:
        dags = airflow.api("GET", "/dags", params={"dag_id_pattern": "example_whatsapp", "limit": 100})["dags"]
        return {dag["dag_id"] for dag in dags} >= set(wanted)

    wait_until(listed, 180, f"the dag-processor to serialize {', '.join(wanted)}")
    return wanted


def _print_ready(airflow: AirflowDeployment, sandbox: GraphSandbox, password: str, examples: list[str]) -> None:
    lines = [
        "",
        f"Airflow UI:    {airflow.api_url}",
        f"Login:         {USERNAME} / {password}",
        f"Example DAGs:  {', '.join(examples)}",
        f"Connection:    whatsapp_default -> the Graph sandbox on {sandbox.url} (WABA {sandbox.default_waba_id})",
        f"Variable:      {PIN_VARIABLE} (the two-step PIN; also the password of connection {PIN_VARIABLE})",
        f"Codes:         the sandbox 'sends' every number the code {FIXED_TEST_CODE}; the last one sent to a number:",
        f"               {sandbox.url}/_sandbox/codes/<phone-number-id>",
        "",
        "To type the code yourself: Dags > example_whatsapp_onboarding > Trigger, switch 'unattended' off,",
        "then Browse > Required Actions > WhatsApp verification code. Walkthrough: docs/walkthrough.rst",
        f"Logs:          {airflow.home}",
        "Ctrl-C stops everything this started.",
    ]
    print("\n".join(lines), flush=True)


def _watch(airflow: AirflowDeployment) -> int:
    """Serve until interrupted; a component that exits ends the demo, saying where to look."""
    deadline = time.monotonic() + MAX_SERVE_SECONDS
    while time.monotonic() < deadline:
        exited = airflow.exited_components()
        if exited:
            print(f"{', '.join(exited)} exited; {airflow.where_to_look()}", flush=True)
            return 1
        time.sleep(1)
    print(f"Stopping after {MAX_SERVE_SECONDS // 3600} hours.", flush=True)
    return 0
