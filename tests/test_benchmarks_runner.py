"""``benchmarks/run``'s runner: a benchmark that fails its own correctness check fails the run, and
the committed figures are then left as they were."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import benchmarks.__main__ as runner
from benchmarks.common import Result


def run_all(monkeypatch: Any, tmp_path: Path, failing: set[str]) -> tuple[int, Path]:
    results = tmp_path / "RESULTS.md"

    def fake_run_one(key: str, quick: bool, log_dir: Path) -> Result:
        result = Result(key)
        result.add("a figure", 1.0, "s")
        result.check(key not in failing, "wrong IDs")
        return result

    monkeypatch.setattr(runner, "RESULTS", results)
    monkeypatch.setattr(runner, "REPO", tmp_path)
    monkeypatch.setattr(runner, "run_one", fake_run_one)
    monkeypatch.setattr(sys, "argv", ["benchmarks"])
    with pytest.raises(SystemExit) as exit_info:
        runner.main()
    return int(exit_info.value.code or 0), results


def test_a_failed_correctness_check_fails_the_run_and_writes_no_results(monkeypatch: Any, tmp_path: Path) -> None:
    code, results = run_all(monkeypatch, tmp_path, failing={"pacing"})
    assert code == 1
    assert not results.exists()


def test_a_correct_full_run_writes_the_results(monkeypatch: Any, tmp_path: Path) -> None:
    code, results = run_all(monkeypatch, tmp_path, failing=set())
    assert code == 0
    text = results.read_text()
    assert all(f"| {key} | a figure |" in text for key in runner.BENCHMARKS)
