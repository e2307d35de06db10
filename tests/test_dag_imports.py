"""Parsing the example DAGs imports no more of the provider than their tasks' definitions need:
of the Graph sandbox, only its client, which a macro calls when a task renders (not at parse)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Every example DAG parsed in one fresh interpreter; what it loaded of the sandbox is printed.
PARSE_ALL = """
import json, runpy, sys
for path in sys.argv[1:]:
    runpy.run_path(path)
print(json.dumps(sorted(name for name in sys.modules if name.startswith("airflow_provider_whatsapp.sandbox"))))
"""
SANDBOX_CLIENT = {"airflow_provider_whatsapp.sandbox", "airflow_provider_whatsapp.sandbox.client"}


def test_parsing_the_example_dags_loads_only_the_sandbox_client() -> None:
    dags = sorted(str(path) for path in (REPO / "dags").glob("example_*.py"))
    done = subprocess.run(
        [sys.executable, "-c", PARSE_ALL, *dags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "airflow_provider_whatsapp.sandbox.client" in loaded, "the DAGs' macro is no longer the client's"
    assert loaded <= SANDBOX_CLIENT, sorted(loaded - SANDBOX_CLIENT)
