"""Import cost: fresh-interpreter time to import our operators and to parse each example DAG.

Baselines, measured in the same run and interleaved with ours: ``import airflow.sdk`` alone, and
the http provider's operator module. Reports the median of N runs and the ratio to ``airflow.sdk``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def cases() -> dict[str, str]:
    result = {
        "import airflow.sdk (baseline)": "import airflow.sdk",
        "import http provider operators": "import airflow.providers.http.operators.http",
        "import our operators": "import airflow_provider_whatsapp.operators.phone_numbers",
    }
    for dag in sorted((REPO / "dags").glob("example_*.py")):
        result[f"parse {dag.name}"] = f"import runpy; runpy.run_path({str(dag)!r})"
    return result


def run(runs: int = 15) -> dict[str, Any]:
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-import-home-"))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    timings: dict[str, list[float]] = {name: [] for name in cases()}
    for code in cases().values():  # warm the .pyc caches, not timed
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=120)
    for _ in range(runs):
        for name, code in cases().items():  # interleaved: drift hits every case alike
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
            timings[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed: {done.stderr.decode()[-500:]}")
    medians = {name: statistics.median(values) for name, values in timings.items()}
    base = medians["import airflow.sdk (baseline)"]
    rows = [
        {"case": name, "median_s": round(value, 3), "ratio_to_sdk": round(value / base, 3), "runs": runs}
        for name, value in medians.items()
    ]
    worst = max(row["ratio_to_sdk"] for row in rows if "http" not in row["case"] and "baseline" not in row["case"])
    return {"rows": rows, "worst_ratio": worst, "target": 1.05}


if __name__ == "__main__":
    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
    for row in result["rows"]:
        print(f"{row['case']:<55} {row['median_s']:>7.3f}s  x{row['ratio_to_sdk']:.3f}")
