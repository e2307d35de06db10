"""The provider as users install it: from its wheel, on every Airflow version it supports.

1. Builds the sdist and the wheel and checks them (``scripts/compat_wheel.py``): ``twine check``,
   the licences, the sandbox's JSON schema and ``py.typed`` in the wheel, its metadata, and that an
   installer refuses it beside an Airflow older than 2.11.
2. For each version, in a fresh virtualenv from ``requirements/compat/airflow-<version>.lock`` plus
   the wheel (not editable) and a fresh ``AIRFLOW_HOME``: ``airflow providers get``, the example
   DAGs with ``airflow dags test`` against the Graph sandbox, with only the environment the
   sandbox printed (``scripts/compat_dags.py``), and, except on the main run's version, the tests
   marked ``compat``, run from a copy of ``tests/`` so that the installed wheel is what they import.
   3.3.2, which the main run tests from the source tree, gets the create example DAG only.

Prints one line per version and a total; exits 1 when anything failed. Logs go to ``--logs``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from compat_dags import plan, run_outcome, sandbox_exports
from compat_wheel import COMMAND_TIMEOUT, REPO, UV, build, refused_beside_old_airflow, run

VERSIONS = ("2.11.2", "3.0.6", "3.1.8", "3.2.2", "3.3.2")
# The main run tests this one from the source tree: here only what the wheel adds.
MAIN_RUN_VERSION = "3.3.2"
MAIN_RUN_DAGS = ("example_whatsapp_create_phone_number",)
# Bounds the compat tests of one version as a whole (each test has its own timeout, pyproject.toml):
# a machine shared with other runs takes several times as long as an idle one.
TESTS_TIMEOUT = 3600
# `airflow dags test` of the bulk DAG runs it on that CSV already: the slowest test, twice.
DESELECTED = ("tests/test_example_dags.py::test_bulk_onboarding_dag_reads_the_csv",)
# A DAG run for each bad input of the create operator: tests/reliability/test_bad_input.py checks
# the same rows on every version without one, and DAG runs are the slow part on Airflow 3.0 and 3.1.
NOT_SELECTED = "not test_bad_input_fails_the_run_naming_field_and_rule"


@dataclass
class VersionResult:
    """What one Airflow version's run found."""

    version: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    dags_ok: int = 0
    dags: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failed and self.dags_ok == self.dags

    def line(self) -> str:
        tests = (
            "tests: the main run's"
            if self.version == MAIN_RUN_VERSION
            else f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"
        )
        status = "ok" if self.ok else "FAILED: " + "; ".join(self.problems or ["see the counts"])
        return (
            f"compat Airflow {self.version}: {tests}; example DAGs {self.dags_ok} of {self.dags} succeeded; "
            f"{self.seconds:.0f} s; {status}"
        )


def pytest_counts(junit: Path) -> tuple[int, int, int]:
    """Passed, failed (failures and errors) and skipped, from pytest's JUnit XML report."""
    if not junit.exists():
        return 0, 0, 0
    root = ElementTree.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    total = sum(int(suite.get("tests", 0)) for suite in suites)
    failed = sum(int(suite.get("failures", 0)) + int(suite.get("errors", 0)) for suite in suites)
    skipped = sum(int(suite.get("skipped", 0)) for suite in suites)
    return total - failed - skipped, failed, skipped


def check_version(version: str, wheel: Path, dag_ids: list[str], work: Path, logs: Path) -> VersionResult:
    """Install the wheel on one Airflow and run what it needs; never raises."""
    result = VersionResult(version)
    started = time.monotonic()
    log = logs / f"airflow-{version}.log"
    try:
        _check_version(result, wheel, dag_ids, work / version, logs)
    except Exception as error:  # reported in the version's line, never lost
        result.problems.append(f"{type(error).__name__}: {error} (see {log})")
    finally:
        # The virtualenv and the copies go as soon as the version is done; its logs stay.
        shutil.rmtree(work / version, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def _check_version(result: VersionResult, wheel: Path, dag_ids: list[str], work: Path, logs: Path) -> None:
    version = result.version
    log = logs / f"airflow-{version}.log"
    venv, home = work / "venv", work / "airflow-home"
    home.mkdir(parents=True)
    python = venv / "bin" / "python"
    lock = REPO / "requirements" / "compat" / f"airflow-{version}.lock"
    for step in (
        [UV, "venv", "--quiet", "--python", sys.executable, venv],
        [UV, "pip", "sync", "--quiet", "--python", python, lock],
        [UV, "pip", "install", "--quiet", "--no-deps", "--python", python, wheel],
        [UV, "pip", "check", "--python", python],
    ):
        if run(step, log) != 0:
            result.problems.append(f"installing failed at `{' '.join(map(str, step[:3]))}` (see {log})")
            return
    database = home / "airflow.db"
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("AIRFLOW", "VIRTUAL_ENV"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{database}",
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow = venv / "bin" / "airflow"
    if run([airflow, "db", "migrate"], log, env=environment) != 0:
        result.problems.append(f"airflow db migrate failed (see {log})")
        return
    result.problems += provider_listed(airflow, environment, work / "providers.json")
    if version == MAIN_RUN_VERSION:
        dag_ids = list(MAIN_RUN_DAGS)
    result.dags = len(dag_ids)
    with sandbox_exports(python, log) as exports:
        for dag_id in dag_ids:
            dag_log = logs / f"airflow-{version}-{dag_id}.log"
            status = run([airflow, "dags", "test", dag_id], dag_log, env={**environment, **exports})
            problem = f"exited {status}" if status != 0 else run_outcome(database, dag_id)
            if problem is None:
                result.dags_ok += 1
            else:
                result.problems.append(f"`airflow dags test {dag_id}` {problem} (see {dag_log})")
    if version != MAIN_RUN_VERSION:
        run_compat_tests(result, python, environment, work, logs)


def provider_listed(airflow: Path, environment: dict[str, str], output: Path) -> list[str]:
    """``airflow providers get airflow-provider-whatsapp`` must list the installed wheel."""
    with output.open("w") as out:
        status = subprocess.run(
            [str(airflow), "providers", "get", "airflow-provider-whatsapp", "-o", "json"],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=environment,
            timeout=COMMAND_TIMEOUT,
            check=False,
        ).returncode
    # Some versions print log lines (which also start with "[") before the JSON.
    listed = [line for line in output.read_text().splitlines() if line.startswith("[{")]
    if status != 0 or not listed or json.loads(listed[0])[0].get("Provider") != "airflow-provider-whatsapp":
        return [f"`airflow providers get airflow-provider-whatsapp` failed (see {output})"]
    return []


def run_compat_tests(result: VersionResult, python: Path, environment: dict[str, str], work: Path, logs: Path) -> None:
    """The tests marked ``compat``, from a copy without the package source, so that they import the wheel."""
    tests_copy = work / "tests-copy"
    tests_copy.mkdir()
    for part in ("tests", "dags", "docs", "pyproject.toml"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, tests_copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tests_copy / part)
    junit = work / "junit.xml"
    deselect = [argument for test in DESELECTED for argument in ("--deselect", test)]
    # Only the modules with compat tests are collected: the others may import what is not installed
    # here (the browser tests' Playwright, the benchmarks).
    modules = sorted(
        str(path.relative_to(tests_copy))
        for path in (tests_copy / "tests").rglob("test_*.py")
        if "pytest.mark.compat" in path.read_text()
    )
    pytest_log = logs / f"airflow-{result.version}-pytest.log"
    options = ["-m", "compat", "-k", NOT_SELECTED, "-q", "-p", "no:randomly", "--durations=10", f"--junitxml={junit}"]
    status = run(
        [python, "-m", "pytest", *options, *deselect, *modules],
        pytest_log,
        timeout=TESTS_TIMEOUT,
        # The tests' Airflow home is the pytest plugin's (whatsapp_isolated_airflow in pyproject.toml), in
        # a temporary directory: under work, so that it goes with the version's virtualenv.
        env={**environment, "TMPDIR": str(work)},
        cwd=tests_copy,
    )
    result.passed, result.failed, result.skipped = pytest_counts(junit)
    if status == 124:
        result.problems.append(f"the tests timed out after {TESTS_TIMEOUT} s (see {pytest_log})")
    elif result.passed == 0:
        result.problems.append(f"no test passed (see {pytest_log})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("versions", nargs="*", default=list(VERSIONS), help=f"Airflow versions (default: {VERSIONS})")
    parser.add_argument("--jobs", type=int, default=2, help="versions checked at the same time (default 2)")
    parser.add_argument("--logs", type=Path, default=None, help="directory for the logs (default: a new one)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.versions) - set(VERSIONS))
    if unknown:
        parser.error(f"no lock for Airflow {', '.join(unknown)}: one of {', '.join(VERSIONS)}")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="whatsapp-provider-compat-"))
    logs = args.logs or work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"compat: logs in {logs}", flush=True)
    dist = work / "dist"
    problems = build(dist, logs / "build.log")
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != 1:
        print(f"compat: FAILED: {'; '.join(problems)}")
        return 1
    problems += refused_beside_old_airflow(wheels[0], work, logs / "build.log")
    print(
        f"compat build: {wheels[0].name}: " + ("ok" if not problems else "FAILED: " + "; ".join(problems)), flush=True
    )
    dag_ids, left_out = plan(REPO / "dags")
    print(f"compat example DAGs: {', '.join(dag_ids)}", flush=True)
    for dag_id, reason in left_out.items():
        print(f"compat example DAGs: {dag_id} left out: {reason}", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(check_version, version, wheels[0], dag_ids, work, logs) for version in args.versions]
        results = []
        for future in futures:
            results.append(future.result())
            print(results[-1].line(), flush=True)
    passed, failed, skipped = (sum(getattr(r, name) for r in results) for name in ("passed", "failed", "skipped"))
    dags_ok, dags = sum(r.dags_ok for r in results), sum(r.dags for r in results)
    ok = not problems and all(result.ok for result in results)
    print(f"compat total: example DAGs {dags_ok} of {dags} succeeded; {time.monotonic() - started:.0f} s")
    print(f"compat: {passed} passed, {failed} failed, {skipped} skipped")
    if ok and args.logs is None:
        shutil.rmtree(work, ignore_errors=True)
    elif not ok:
        print(f"compat: FAILED; logs in {logs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
