"""Each benchmark the runner knows (but the deployment budgets one), in ``--quick`` mode: it runs, and
its own correctness check passes.

Timing is never asserted here: the figures belong in ``benchmarks/RESULTS.md``, not in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import BENCHMARKS
from devtools.celery_deployment import REDIS_SERVER

REPO = Path(__file__).resolve().parent.parent


# The throughput benchmark starts a whole Airflow deployment (PostgreSQL, four components) first;
# the multi-WABA one waits for the next one-minute window of its constrained WABA.
TIMEOUTS = {"benchmarks.bench_throughput": 600, "benchmarks.bench_multi_waba": 240}


# Benchmark 8 would be a third deployment start in CI; its scenario (devtools/budget_scenario.py)
# runs in the budgets deployment tests.
QUICK_RUNS = sorted(module for module in BENCHMARKS.values() if module != "benchmarks.bench_deployment_budgets")


@pytest.mark.timeout(700)
@pytest.mark.parametrize("module", QUICK_RUNS)
def test_benchmark_quick_mode_is_correct(module: str) -> None:
    if module == "benchmarks.bench_budget_store" and not Path(REDIS_SERVER).exists() and os.environ.get("CI") != "true":
        pytest.skip(f"{REDIS_SERVER} not installed (Debian's redis-server; .ci/run installs it)")
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUTS.get(module, 110),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result; stderr: {done.stderr[-2000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["errors"] == [], result["errors"]
    assert result["correct"] is True
    assert done.returncode == 0
    assert result["figures"], "a benchmark that ran reports figures"
