"""Counters the reliability suites report at the end of the run (``-s`` or the terminal summary)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

TALLY: Counter[str] = Counter()


@pytest.fixture
def tally() -> Counter[str]:
    """Counts what the suites tried and found: faults, inputs, secrets, duplicates."""
    return TALLY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY:
        terminalreporter.write_sep("-", "reliability tally")
        for key in sorted(TALLY):
            terminalreporter.write_line(f"{key}: {TALLY[key]}")
