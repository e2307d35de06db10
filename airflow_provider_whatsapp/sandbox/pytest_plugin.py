"""pytest fixtures for the Graph API sandbox (registered as a ``pytest11`` entry point).

Fixtures: ``whatsapp_sandbox``, ``whatsapp_sandbox_factory``, ``whatsapp_connection``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_whatsapp.sandbox.server import GraphSandbox


@pytest.fixture
def whatsapp_sandbox_factory() -> Iterator[Callable[..., GraphSandbox]]:
    """A callable taking ``GraphSandbox`` keyword arguments and returning a started sandbox.

    Every sandbox it started is stopped at teardown.
    """
    started: list[GraphSandbox] = []

    def make(**kwargs: Any) -> GraphSandbox:
        sandbox = GraphSandbox(**kwargs)
        started.append(sandbox)
        return sandbox.start()

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def whatsapp_sandbox(whatsapp_sandbox_factory: Callable[..., GraphSandbox]) -> GraphSandbox:
    """A fresh started sandbox with random verification codes, stopped after the test."""
    return whatsapp_sandbox_factory(fixed_code=None)


@pytest.fixture
def whatsapp_connection(whatsapp_sandbox: GraphSandbox, monkeypatch: pytest.MonkeyPatch) -> GraphSandbox:
    """The ``whatsapp_sandbox``, with ``AIRFLOW_CONN_WHATSAPP_DEFAULT`` pointing at it."""
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", whatsapp_sandbox.airflow_conn_json())
    return whatsapp_sandbox
