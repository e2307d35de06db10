"""Benchmark 3, import cost: fresh-interpreter time to import our operators and parse each DAG.

Baselines, measured in the same run and interleaved with ours: ``import airflow.sdk`` alone, and
the http provider's operator module. Every case is a new ``python -c`` process, timed from spawn
to exit; the figure is the median of the runs and its ratio to ``import airflow.sdk``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.common import REPO, Result, airflow_environment, median, run_from_command_line, spread

NAME = "3. import cost"
TARGET = 1.05
BASELINE = "import airflow.sdk"
HTTP = "import airflow.providers.http.operators.http"
OURS = "import airflow_provider_whatsapp.operators.phone_numbers"
# A DAG file that parses without defining a DAG would be timed doing nothing: fail the run instead.
PARSE = (
    "import runpy, sys; from airflow.sdk import DAG; found = runpy.run_path({path!r}); "
    "sys.exit(0 if any(isinstance(v, DAG) for v in found.values()) else 3)"
)


def cases(quick: bool) -> dict[str, str]:
    result = {BASELINE: "import airflow.sdk", HTTP: HTTP, OURS: OURS}
    if quick:
        del result[HTTP]
    dags = sorted((REPO / "dags").glob("example_*.py"))
    for dag in dags[:1] if quick else dags:
        result[f"parse dags/{dag.name}"] = PARSE.format(path=str(dag))
    return result


def run(quick: bool = False) -> Result:
    result = Result(NAME)
    runs = 1 if quick else 15
    env = {**os.environ, **airflow_environment()}
    env.pop("AIRFLOW_CONN_WHATSAPP_DEFAULT", None)
    todo = cases(quick)
    timings: dict[str, list[float]] = {name: [] for name in todo}
    for name, code in {} if quick else todo.items():  # warm the .pyc caches; not timed
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
        result.check(done.returncode == 0, f"{name} failed: {done.stderr.decode()[-400:]}")
    if not result.correct:
        return result
    for index in range(runs):
        names = list(todo)
        # Interleaved, and the order rotates: drift and neighbours hit every case alike.
        for name in names[index % len(names) :] + names[: index % len(names)]:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", todo[name]], env=env, capture_output=True, timeout=120)
            timings[name].append(time.perf_counter() - start)
            result.check(done.returncode == 0, f"{name} failed: {done.stderr.decode()[-400:]}")
    base = median(timings[BASELINE])
    for name, values in timings.items():
        value = median(values)
        figure = result.add(name, value, "s", baseline=BASELINE, ratio=value / base)
        if name == OURS:
            figure.target = f"<= {TARGET}x {BASELINE}"
            figure.met = value / base <= TARGET
    result.notes.append(f"median of {runs} fresh interpreters per case, interleaved")
    result.notes.append(
        "spread of each case's interpreter times around its median (10th/90th percentile): "
        + ", ".join(f"{name} {spread(values)}" for name, values in timings.items())
    )
    return result


if __name__ == "__main__":
    run_from_command_line(run, __doc__)
