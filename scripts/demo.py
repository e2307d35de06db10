"""Run the example onboarding DAG against the Graph sandbox with ``airflow dags test``.

Starts the sandbox on a free loopback port, points ``whatsapp_default`` at it, runs
create -> request code -> verify -> register -> wait (deferred) for CONNECTED, and prints the new
phone-number ID and its final status as the sandbox holds it. With ``--ui``, starts a local
Airflow with its UI instead (``devtools/ui_demo.py``) and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_whatsapp.sandbox import FIXED_TEST_CODE, GraphSandbox

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / ".demo" / "airflow"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dag-id", default="example_whatsapp_onboarding")
    parser.add_argument("--conf", default='{"cc": "1", "phone_number": "5550100001", "verified_name": "Acme Support"}')
    parser.add_argument(
        "--ui", action="store_true", help="start a local Airflow with its UI instead, and serve until Ctrl-C"
    )
    args = parser.parse_args()
    # A demo PIN; in production keep it in a secrets backend, never in the DAG.
    pin = os.environ.get("WHATSAPP_DEMO_PIN", "482915")
    if args.ui:
        sys.path.insert(0, str(REPO))
        from devtools.ui_demo import serve

        return serve(pin)

    HOME.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{HOME}/airflow.db",
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    log_path = HOME / "demo.log"
    with GraphSandbox(fixed_code=FIXED_TEST_CODE, connect_delay=2.0) as sandbox, log_path.open("w") as log:
        env.update(sandbox.example_dag_environment(pin))
        print(f"Graph sandbox on {sandbox.url} (WABA {sandbox.default_waba_id})", flush=True)
        print(f"Running {args.dag_id} with airflow dags test; log: {log_path}", flush=True)
        steps = [[airflow, "db", "migrate"], [airflow, "dags", "test", args.dag_id, "--conf", args.conf]]
        for step in steps:
            done = subprocess.run(step, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=600, check=False)
            if done.returncode != 0:
                print(f"FAILED: {' '.join(step[1:3])} exited {done.returncode}; see {log_path}", file=sys.stderr)
                return 1
        # dags test does not fail its exit code on a failed run; the sandbox's state is the truth.
        numbers = sandbox.numbers()
        if not numbers:
            print(f"FAILED: the DAG created no phone number; see {log_path}", file=sys.stderr)
            return 1
        for number in numbers:
            status = {k: number.get(k) for k in ("code_verification_status", "name_status", "status")}
            if status["status"] != "CONNECTED" and args.dag_id == "example_whatsapp_onboarding":
                print(f"FAILED: {number['id']} ended {json.dumps(status)}; see {log_path}", file=sys.stderr)
                return 1
            print(f"New phone-number ID: {number['id']} ({number['display_phone_number']})")
            print(f"Final status: {json.dumps(status)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
