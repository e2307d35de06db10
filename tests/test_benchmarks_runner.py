"""``benchmarks/run``'s runner: a benchmark that fails its own correctness check fails the run, and
the committed figures are then left as they were; a full run writes every line of ``RESULTS.md``
itself (the commit, the work tree, the machine and its load), a ``--quick`` run none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import benchmarks.__main__ as runner
from benchmarks.common import Result
from benchmarks.provenance import process_label, source


def run_all(monkeypatch: Any, tmp_path: Path, failing: set[str], *options: str) -> tuple[int, Path]:
    results = tmp_path / "RESULTS.md"

    def fake_run_one(key: str, quick: bool, log_dir: Path) -> Result:
        result = Result(key)
        result.add("a figure", 1.0, "s")
        result.check(key not in failing, "wrong IDs")
        return result

    monkeypatch.setattr(runner, "RESULTS", results)
    monkeypatch.setattr(runner, "REPO", tmp_path)
    monkeypatch.setattr(runner, "run_one", fake_run_one)
    monkeypatch.setattr(sys, "argv", ["benchmarks", *options])
    with pytest.raises(SystemExit) as exit_info:
        runner.main()
    return int(exit_info.value.code or 0), results


def test_a_failed_correctness_check_fails_the_run_and_writes_no_results(monkeypatch: Any, tmp_path: Path) -> None:
    code, results = run_all(monkeypatch, tmp_path, failing={"pacing"})
    assert code == 1
    assert not results.exists()


def test_a_correct_full_run_writes_the_results_with_where_and_when_they_were_measured(
    monkeypatch: Any, tmp_path: Path
) -> None:
    code, results = run_all(monkeypatch, tmp_path, failing=set())
    assert code == 0
    text = results.read_text()
    assert all(f"| {key} | a figure |" in text for key in runner.BENCHMARKS)
    # Not a git work tree here: said so, never left out.
    assert "- commit: unknown (not a git work tree)" in text
    assert "- work tree: unknown" in text
    stamps = ("- load average (1, 5, 15 min): ", "before the run; ", "- CPU over the run (", "- other processes, ")
    machine = ("- cpu: ", "- cores: ", "- memory: ", "- python: ", "- apache-airflow: ")
    for stamp in (*stamps, *machine):
        assert stamp in text, stamp


def test_a_quick_run_leaves_the_results_as_they_were(monkeypatch: Any, tmp_path: Path) -> None:
    (tmp_path / "RESULTS.md").write_text("the committed figures\n")
    code, results = run_all(monkeypatch, tmp_path, set(), "--quick")
    assert code == 0
    assert results.read_text() == "the committed figures\n"


def test_the_source_says_the_commit_and_whether_the_tree_differs_from_it(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, timeout=60)

    git("init", "-q")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "the measured code")
    clean = source(tmp_path)
    assert clean["commit"].endswith(" (the measured code)") and len(clean["commit"].split()[0]) == 40
    assert clean["tree"].startswith("clean")
    # The run's own output does not make the measured code differ.
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("figures\n")
    assert source(tmp_path)["tree"].startswith("clean")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert source(tmp_path)["tree"] == "DIRTY: 1 path(s) differ from the commit (code.py)"


@pytest.mark.parametrize(
    ("argv", "label"),
    [
        (["/opt/venv/bin/python", "/opt/venv/bin/airflow", "scheduler"], "airflow scheduler"),
        (["python3.11", "-u", "-m", "pytest", "tests/x.py"], "pytest"),
        (["/usr/bin/python3", "-c", "import airflow.sdk"], "python -c"),
        (["/usr/lib/postgresql/15/bin/postgres", "-D", "/tmp/pgdata"], "postgres"),
        (["/usr/lib/chromium/chromium --type=renderer --user-data-dir=/tmp/profile"], "chromium"),
        ([], "kernel"),
    ],
)
def test_processes_are_named_by_program_never_by_path(argv: list[str], label: str) -> None:
    assert process_label(argv, "comm") == label
