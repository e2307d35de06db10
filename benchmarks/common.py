"""Shared by every benchmark: the sandbox in its own process, the Airflow environment, results."""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WABA_ID = "102290129340398"
# Bounds every wait on a child process: a wedged sandbox fails the benchmark instead of hanging it.
CHILD_TIMEOUT = 60.0


class BenchmarkError(Exception):
    """The benchmark's own correctness check failed: its figures are not to be trusted."""


def airflow_environment(conn_json: str | None = None) -> dict[str, str]:
    """Set (and return) a throwaway Airflow home before anything imports Airflow."""
    home = os.environ.get("WHATSAPP_BENCH_HOME") or tempfile.mkdtemp(prefix="whatsapp-bench-home-")
    values = {
        "WHATSAPP_BENCH_HOME": home,
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        # The hook logs one line per paced call; the benchmark measures the calls, not the logging.
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    if conn_json is not None:
        values["AIRFLOW_CONN_WHATSAPP_DEFAULT"] = conn_json
    os.environ.update(values)
    return values


class SandboxProcess:
    """A :class:`GraphSandbox` serving from a child process (see ``benchmarks/sandbox_process.py``).

    :param options: keyword arguments of ``GraphSandbox``, plus ``conn_extra`` for the connection.
    """

    def __init__(self, **options: Any) -> None:
        self.options = options
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.token = ""
        self.conn_json = ""
        self.hello = {}

    def __enter__(self) -> SandboxProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sandbox_process", json.dumps(self.options)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.hello: dict[str, Any] = self._read_line()
        self.url, self.token, self.conn_json = self.hello["url"], self.hello["token"], self.hello["conn"]
        return self

    def _read_line(self) -> Any:
        assert self._proc is not None and self._proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            if not selector.select(CHILD_TIMEOUT):
                raise BenchmarkError("the sandbox process did not answer in time")
        line = self._proc.stdout.readline()
        if not line:
            raise BenchmarkError(f"the sandbox process exited (code {self._proc.poll()})")
        return json.loads(line)

    def stats(self) -> dict[str, Any]:
        """Counters: rejected calls and their times, calls per window, statuses, numbers."""
        return self.command("stats")

    def reset(self) -> dict[str, Any]:
        """Forget every number and request; answers how many numbers and non-200 answers there were."""
        return self.command("reset")

    def command(self, line: str) -> dict[str, Any]:
        """Send one command (``stats``, ``reset``, ``reset_connections``, ``connect <id>``, ``advance <s>``)."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        result: dict[str, Any] = self._read_line()
        return result

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Figure:
    """One measured figure, and its ratio to the baseline measured in the same run."""

    benchmark: str
    name: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


@dataclass
class Result:
    """What a benchmark hands back to the runner."""

    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    correct: bool = True
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, name: str, value: float, unit: str, **kwargs: Any) -> Figure:
        figure = Figure(self.benchmark, name, value, unit, **kwargs)
        self.figures.append(figure)
        return figure

    def check(self, condition: bool, message: str) -> None:
        """Record a correctness failure (the benchmark then exits non-zero)."""
        if not condition:
            self.correct = False
            self.errors.append(message)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        figures = [Figure(**figure) for figure in data.pop("figures")]
        return cls(figures=figures, **data)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """How far the 10th and 90th percentiles of ``values`` lie from their median, in percent."""
    if len(values) < 2:
        return "n/a (one sample)"
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    middle = statistics.median(values)
    return f"{(deciles[0] / middle - 1) * 100:+.1f} %/{(deciles[-1] / middle - 1) * 100:+.1f} %"


def emit(result: Result) -> None:
    """Print the result as the last stdout line (the runner reads it) and exit by correctness."""
    print("RESULT " + result.to_json(), flush=True)
    raise SystemExit(0 if result.correct else 1)


def run_from_command_line(run: Callable[[bool], Result], description: str | None) -> None:
    """The command line of a benchmark whose one option is ``--quick``: run it and emit its result."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    emit(run(parser.parse_args().quick))
