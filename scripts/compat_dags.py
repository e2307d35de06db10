"""The example DAGs of the compatibility run: which it runs, the sandbox it runs them against, and
how each run ended.

Each DAG runs with ``airflow dags test`` and, besides a fresh ``AIRFLOW_HOME``, only the
environment the sandbox's command line prints to export (README: "The Graph sandbox"), as a user
following the README would run it.
"""

from __future__ import annotations

import ast
import queue
import shlex
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

# The example DAGs that run against the Graph sandbox alone: `airflow dags test` runs each on every
# Airflow version of the run.
SANDBOX_DAGS = (
    "example_whatsapp_bulk_onboarding",
    "example_whatsapp_create_phone_number",
    "example_whatsapp_migration",
    "example_whatsapp_onboarding",
    "example_whatsapp_preverified",
)
# Example DAGs that need more than the sandbox (a database, another service, another DAG's run),
# with why: the run prints the reason and leaves them out. Declare a new example DAG in one of the
# two; one declared in neither is left out, and the run says so.
DAGS_LEFT_OUT: dict[str, str] = {
    "example_whatsapp_scheduled_onboarding": "reads and writes back its requests table (the whatsapp_onboarding_db "
    "connection, through common-sql), a database the sandbox does not provide",
    "example_whatsapp_onboarded_numbers": "scheduled on the asset alias example_whatsapp_scheduled_onboarding "
    "publishes through: it runs on that DAG's asset events",
}
UNDECLARED = "declared in neither SANDBOX_DAGS nor DAGS_LEFT_OUT of scripts/compat_dags.py"
# The line the sandbox's command line prints after its exports.
END_OF_START_UP = "# Serving until Ctrl-C"
SANDBOX_START_TIMEOUT = 120


def example_dag_ids(folder: Path) -> list[str]:
    """The DAG IDs defined in ``folder``'s Python files, read from their source without importing them.

    ``DAG(dag_id=...)`` or ``DAG("...")``, and functions decorated with ``@dag`` (their
    ``dag_id``, or the function's name).
    """
    found: set[str] = set()
    for source in sorted(folder.glob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called_name(node.func) == "DAG":
                found.update(_dag_id_argument(node))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    call = decorator if isinstance(decorator, ast.Call) else None
                    if _called_name(call.func if call else decorator) == "dag":
                        found.update((call and _dag_id_argument(call)) or [node.name])
    return sorted(found)


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _dag_id_argument(call: ast.Call) -> list[str]:
    values = [keyword.value for keyword in call.keywords if keyword.arg == "dag_id"] + call.args[:1]
    return [value.value for value in values[:1] if isinstance(value, ast.Constant) and isinstance(value.value, str)]


def plan(folder: Path) -> tuple[list[str], dict[str, str]]:
    """The example DAGs to run, and those left out with why."""
    to_run: list[str] = []
    left_out: dict[str, str] = {}
    for dag_id in example_dag_ids(folder):
        if dag_id in SANDBOX_DAGS:
            to_run.append(dag_id)
        else:
            left_out[dag_id] = DAGS_LEFT_OUT.get(dag_id, UNDECLARED)
    return to_run, left_out


@contextmanager
def sandbox_exports(python: Path, log: Path) -> Iterator[dict[str, str]]:
    """The Graph sandbox's command line on a free port; yields the environment it printed to export."""
    with log.open("a") as out:
        process = subprocess.Popen(
            [str(python), "-m", "airflow_provider_whatsapp.sandbox", "--port", "0", "--connect-delay", "1"],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stdout or ():
            lines.put(line.rstrip("\n"))
        lines.put(None)  # the sandbox closed its output: it stopped

    # Read by a thread, so that waiting for the start-up lines is bounded by a deadline.
    threading.Thread(target=read, daemon=True).start()
    try:
        environment: dict[str, str] = {}
        deadline = time.monotonic() + SANDBOX_START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise RuntimeError(f"the Graph sandbox did not finish starting in {SANDBOX_START_TIMEOUT} s") from None
            if line is None:
                raise RuntimeError(f"the Graph sandbox stopped while starting (see {log})")
            if line == END_OF_START_UP:
                break
            if line.startswith("export "):
                [assignment] = shlex.split(line.removeprefix("export "))
                name, _, value = assignment.partition("=")
                environment[name] = value
        yield environment
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def run_outcome(database: Path, dag_id: str) -> str | None:
    """How the DAG's last run in the metadata database ended: ``None`` when it succeeded, else what went wrong.

    ``airflow dags test`` exits 0 on a failed run on some versions, so its exit status is not enough.
    """
    with closing(sqlite3.connect(database)) as connection:
        runs = connection.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchall()
        if not runs:
            return "no DAG run was recorded"
        run_id, state = runs[0]
        if state == "success":
            return None
        unfinished = connection.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?"
            " AND (state IS NULL OR state NOT IN ('success', 'skipped'))",
            (dag_id, run_id),
        ).fetchall()
    tasks = ", ".join(f"{task}{'' if index < 0 else f'[{index}]'}: {ts}" for task, index, ts in unfinished[:8])
    return f"the run ended {state} ({tasks})"
