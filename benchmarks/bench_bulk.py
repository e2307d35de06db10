"""Benchmark 5, bulk DAG throughput: the bulk example DAG onboarding 200 numbers in a real
deployment (scheduler, dag-processor, triggerer, API server, LocalExecutor, PostgreSQL), against
the same DAG whose tasks make no Graph calls.

It needs the deployment harness of ``tests/deployment/``; without it the benchmark reports that
it did not run (and exits 0, so the other figures are still written).
"""

from __future__ import annotations

import argparse

from benchmarks.common import REPO, Result, emit

NAME = "5. bulk DAG throughput"
HARNESS = REPO / "tests" / "deployment" / "airflow_deployment.py"


def run(quick: bool = False) -> Result:
    result = Result(NAME)
    if not HARNESS.exists():
        result.notes.append(
            "not run: the deployment harness (tests/deployment/airflow_deployment.py) is not in this "
            "checkout yet, so no real scheduler/LocalExecutor/PostgreSQL deployment could be started"
        )
        return result
    result.notes.append("not run: the harness exists but this benchmark has not been wired to it yet")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    emit(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
