"""The provider as users install it: from its wheel, on every Airflow version it supports.

1. Builds the sdist and the wheel, checks their metadata with ``twine check`` and what the wheel
   holds (licences, the sandbox's JSON schema, ``py.typed``, licence expression, URLs, classifiers).
2. Checks that an installer refuses the wheel beside an Airflow older than 2.11.
3. For each version (each in a fresh virtualenv from ``requirements/compat/airflow-<version>.lock``
   plus the wheel, not editable, and a fresh ``AIRFLOW_HOME``): ``airflow providers get``, every
   example DAG with ``airflow dags test`` against the Graph sandbox and, except for the main run's
   version, the tests marked ``compat``, run from a copy of ``tests/`` so that the installed wheel is
   what they import. 3.3.2, which the main run tests from the source tree, gets the wheel checks and
   the create example DAG only.

Prints one line per version and a total; exits 1 when anything failed. Logs go to ``--logs``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parent.parent
UV = REPO / ".venv" / "bin" / "uv"
VERSIONS = ("2.11.2", "3.0.6", "3.1.8", "3.2.2", "3.3.2")
# The main run tests this one from the source tree: here only what the wheel adds.
MAIN_RUN_VERSION = "3.3.2"
WHEEL_ONLY_DAGS = ("example_whatsapp_create_phone_number",)
# What the example DAGs read besides the sandbox's connection: the two-step PINs.
PIN_ENVIRONMENT = {
    "AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN": "482915",
    "AIRFLOW_CONN_WHATSAPP_TWO_STEP_PIN": json.dumps({"conn_type": "generic", "password": "739164"}),
}
REQUIRED_IN_WHEEL = (
    "airflow_provider_whatsapp/py.typed",
    "airflow_provider_whatsapp/sandbox/phone_number_schemas.json",
    "airflow_provider_whatsapp/sandbox/LICENSE.meta-openapi",
    "licenses/LICENSE",
    "licenses/airflow_provider_whatsapp/sandbox/LICENSE.meta-openapi",
)
COMMAND_TIMEOUT = 900
SANDBOX_START_TIMEOUT = 60


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
            "wheel checks only (tests: main run)"
            if self.version == MAIN_RUN_VERSION
            else f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"
        )
        status = "ok" if self.ok else "FAILED: " + "; ".join(self.problems or ["see the counts"])
        return (
            f"compat Airflow {self.version}: {tests}; example DAGs {self.dags_ok} of {self.dags} ok; "
            f"{self.seconds:.0f} s; {status}"
        )


def run(command: Sequence[str | Path], log: Path, **kwargs: object) -> int:
    """Run a command with its output appended to ``log``; return its exit status."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(map(str, command))}\n")
        out.flush()
        try:
            return subprocess.run(
                [str(part) for part in command],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=COMMAND_TIMEOUT,
                check=False,
                **kwargs,  # type: ignore[arg-type]
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"timed out after {COMMAND_TIMEOUT} s\n")
            return 124


def build(dist: Path, log: Path) -> list[str]:
    """Build the sdist and the wheel into ``dist``; return the problems found in them."""
    if run([UV, "build", "--sdist", "--wheel", "--out-dir", dist, REPO], log) != 0:
        return [f"the build failed (see {log})"]
    problems = []
    if (
        run(
            [
                REPO / ".venv" / "bin" / "twine",
                "check",
                "--strict",
                *sorted(dist.glob("*.whl")),
                *sorted(dist.glob("*.tar.gz")),
            ],
            log,
        )
        != 0
    ):
        problems.append(f"twine check failed (see {log})")
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata_name] = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    for required in REQUIRED_IN_WHEEL:
        if not any(name == required or name.endswith(".dist-info/" + required) for name in names):
            problems.append(f"{required} is not in {wheel.name}")
    problems += metadata_problems(metadata)
    if run(["tar", "-tzf", sdist], log) != 0 or "/LICENSE\n" not in log.read_text():
        problems.append(f"LICENSE is not in {sdist.name}")
    return problems


def metadata_problems(metadata: str) -> list[str]:
    """What the wheel's METADATA lacks of what the package index and its users read."""
    from trove_classifiers import classifiers as known_classifiers

    fields: dict[str, list[str]] = {}
    for line in metadata.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(": ")
        fields.setdefault(name, []).append(value)
    problems = []
    if fields.get("License-Expression") != ["Apache-2.0 AND MIT"]:
        problems.append(f"License-Expression is {fields.get('License-Expression')}")
    urls = {value.split(", ", 1)[0] for value in fields.get("Project-URL", [])}
    problems += [f"no {label} URL" for label in ("Documentation", "Changelog", "Source", "Issues") if label not in urls]
    classifiers = fields.get("Classifier", [])
    problems += [f"unknown classifier {value!r}" for value in classifiers if value not in known_classifiers]
    for wanted in (
        "Typing :: Typed",
        "Framework :: Apache Airflow :: Provider",
        "Programming Language :: Python :: 3.11",
    ):
        if wanted not in classifiers:
            problems.append(f"no classifier {wanted!r}")
    if not any(value.startswith("Development Status :: ") for value in classifiers):
        problems.append("no Development Status classifier")
    if "apache-airflow<4,>=2.11.0" not in fields.get("Requires-Dist", []):
        problems.append(f"Airflow range is not >=2.11.0,<4: {fields.get('Requires-Dist')}")
    return problems


def refused_on_old_airflow(wheel: Path, work: Path, log: Path) -> list[str]:
    """The installer must refuse the wheel beside Airflow 2.10, naming the Airflow range."""
    requirements = work / "old-airflow.in"
    requirements.write_text(f"apache-airflow==2.10.5\nairflow-provider-whatsapp @ {wheel.as_uri()}\n")
    before = log.stat().st_size if log.exists() else 0
    status = run([UV, "pip", "compile", "--quiet", "--python-version", "3.11", requirements], log)
    answer = log.read_text()[before:]
    if status == 0 or "apache-airflow>=2.11.0" not in answer:
        return [f"the wheel was not refused beside Airflow 2.10.5 (see {log})"]
    return []


@contextmanager
def graph_sandbox(python: Path, log: Path) -> Iterator[dict[str, str]]:
    """A Graph sandbox on a free port; yields the environment its start-up lines say to export."""
    with log.open("a") as out:
        process = subprocess.Popen(
            [python, "-u", "-m", "airflow_provider_whatsapp.sandbox", "--port", "0", "--connect-delay", "1"],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    # Read by a thread, so that waiting for a line is bounded by a timeout.
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True).start()
    try:
        environment: dict[str, str] = {}
        deadline = time.monotonic() + SANDBOX_START_TIMEOUT
        while True:
            # Until the connection is printed, then as long as more start-up lines follow at once.
            wait = 1.0 if "AIRFLOW_CONN_WHATSAPP_DEFAULT" in environment else deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(wait, 0.0))
            except queue.Empty:
                break
            match = re.match(r"export (\w+)='(.*)'$", line.strip())
            if match:
                environment[match[1]] = match[2]
        if "AIRFLOW_CONN_WHATSAPP_DEFAULT" not in environment:
            raise RuntimeError(f"the Graph sandbox printed no connection to export (see {log})")
        yield environment
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


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


def check_version(version: str, wheel: Path, work: Path, logs: Path) -> VersionResult:
    """Install the wheel on one Airflow and run what it needs; never raises."""
    result = VersionResult(version)
    started = time.monotonic()
    log = logs / f"airflow-{version}.log"
    try:
        _check_version(result, wheel, work / version, log, logs)
    except Exception as error:  # reported in the version's line, never lost
        result.problems.append(f"{type(error).__name__}: {error} (see {log})")
    finally:
        # The virtualenv and the copies go as soon as the version is done; its logs stay.
        shutil.rmtree(work / version, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def _check_version(result: VersionResult, wheel: Path, work: Path, log: Path, logs: Path) -> None:
    version = result.version
    venv, home, tests_copy = work / "venv", work / "airflow-home", work / "tests-copy"
    for directory in (home, tests_copy):
        directory.mkdir(parents=True)
    lock = REPO / "requirements" / "compat" / f"airflow-{version}.lock"
    python = venv / "bin" / "python"
    for step in (
        [UV, "venv", "--quiet", "--python", sys.executable, venv],
        [UV, "pip", "sync", "--quiet", "--python", python, lock],
        [UV, "pip", "install", "--quiet", "--no-deps", "--python", python, wheel],
        [UV, "pip", "check", "--python", python],
    ):
        if run(step, log) != 0:
            result.problems.append(f"installing failed at `{' '.join(map(str, step[:3]))}` (see {log})")
            return
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("AIRFLOW", "VIRTUAL_ENV"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow = venv / "bin" / "airflow"
    if run([airflow, "db", "migrate"], log, env=environment) != 0:
        result.problems.append(f"airflow db migrate failed (see {log})")
        return
    providers = work / "providers.json"
    with providers.open("w") as out:
        status = subprocess.run(
            [airflow, "providers", "get", "airflow-provider-whatsapp", "-o", "json"],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=environment,
            timeout=COMMAND_TIMEOUT,
            check=False,
        ).returncode
    listed = [line for line in providers.read_text().splitlines() if line.startswith("[{")]
    if status != 0 or not listed or json.loads(listed[0])[0].get("Provider") != "airflow-provider-whatsapp":
        result.problems.append(f"`airflow providers get airflow-provider-whatsapp` failed (see {providers})")
    dag_ids = sorted(path.stem for path in (REPO / "dags").glob("example_*.py"))
    if version == MAIN_RUN_VERSION:
        dag_ids = list(WHEEL_ONLY_DAGS)
    result.dags = len(dag_ids)
    with graph_sandbox(python, log) as sandbox_environment:
        dag_environment = {**environment, **PIN_ENVIRONMENT, **sandbox_environment}
        for dag_id in dag_ids:
            if (
                run([airflow, "dags", "test", dag_id], logs / f"airflow-{version}-{dag_id}.log", env=dag_environment)
                == 0
            ):
                result.dags_ok += 1
            else:
                result.problems.append(
                    f"`airflow dags test {dag_id}` failed (see {logs}/airflow-{version}-{dag_id}.log)"
                )
    if version == MAIN_RUN_VERSION:
        return
    # A copy without the package source, so that the tests import the installed wheel.
    for part in ("tests", "dags", "docs", "pyproject.toml"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, tests_copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tests_copy / part)
    junit = work / "junit.xml"
    test_environment = {**environment, "WHATSAPP_PROVIDER_TEST_HOME": str(work / "test-home")}
    (work / "test-home").mkdir()
    run(
        [
            *(python, "-m", "pytest", "-m", "compat", "-q", "-p", "no:randomly", "--durations=20"),
            # `airflow dags test` above runs that DAG on that CSV already: the slowest test, twice.
            *("--deselect", "tests/test_example_dags.py::test_bulk_onboarding_dag_reads_the_csv"),
            f"--junitxml={junit}",
        ],
        logs / f"airflow-{version}-pytest.log",
        env=test_environment,
        cwd=tests_copy,
    )
    result.passed, result.failed, result.skipped = pytest_counts(junit)
    if result.passed == 0:
        result.problems.append(f"no test passed (see {logs}/airflow-{version}-pytest.log)")


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
    [wheel] = dist.glob("*.whl") if dist.exists() and list(dist.glob("*.whl")) else [None]
    if wheel is None:
        print(f"compat: FAILED: {'; '.join(problems)}")
        return 1
    problems += refused_on_old_airflow(wheel, work, logs / "build.log")
    print(f"compat build: {wheel.name}: " + ("ok" if not problems else "FAILED: " + "; ".join(problems)), flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(check_version, version, wheel, work, logs) for version in args.versions]
        results = []
        for future in futures:
            results.append(future.result())
            print(results[-1].line(), flush=True)
    passed = sum(result.passed for result in results)
    failed = sum(result.failed for result in results)
    skipped = sum(result.skipped for result in results)
    dags_ok, dags = sum(r.dags_ok for r in results), sum(r.dags for r in results)
    ok = not problems and all(result.ok for result in results)
    print(f"compat total: example DAGs {dags_ok} of {dags} ok; {time.monotonic() - started:.0f} s")
    print(f"compat: {passed} passed, {failed} failed, {skipped} skipped")
    if ok and args.logs is None:
        shutil.rmtree(work, ignore_errors=True)
    elif not ok:
        print(f"compat: FAILED; logs in {logs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
