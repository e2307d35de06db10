"""Fixtures of the end-to-end tests: one deployment for the session; where the screenshots went."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import PHASE_REPORTS, SCREENSHOTS
from tests.e2e.shared_deployment import Deployment, shared_deployment


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    """Airflow (api-server, scheduler, dag-processor, triggerer) on PostgreSQL, with the Graph sandbox."""
    with shared_deployment() as running:
        yield running


# What the distributed deployment test injected and counted, shown in the closing summary.
DISTRIBUTED_TALLY: dict[str, Any] = {}


@pytest.fixture
def distributed_tally() -> dict[str, Any]:
    return DISTRIBUTED_TALLY


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if DISTRIBUTED_TALLY:
        terminalreporter.write_sep("-", "distributed deployment tally")
        for key, value in DISTRIBUTED_TALLY.items():
            terminalreporter.write_line(f"{key}: {value}")
    screenshots = config.stash.get(SCREENSHOTS, None)
    if screenshots is not None and screenshots.taken:
        terminalreporter.write_line(f"UI screenshots ({len(screenshots.taken)}): {screenshots.folder}")
