"""A local stand-in for Graph API's WhatsApp Business phone-number endpoints, for demos and tests.

Standard library only, and independent of the rest of the provider (and of Airflow), so users can
run it in their own DAG tests: ``with GraphSandbox() as sandbox: ...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_whatsapp.sandbox.faults import Fault
from airflow_provider_whatsapp.sandbox.state import DEFAULT_WABA_ID, FIXED_TEST_CODE, FIXED_TEST_PIN

if TYPE_CHECKING:
    from airflow_provider_whatsapp.sandbox.server import GraphSandbox

__all__ = ["DEFAULT_WABA_ID", "FIXED_TEST_CODE", "FIXED_TEST_PIN", "Fault", "GraphSandbox"]


def __getattr__(name: str) -> Any:
    # The HTTP server modules load only when the server is wanted.
    if name == "GraphSandbox":
        from airflow_provider_whatsapp.sandbox.server import GraphSandbox

        return GraphSandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
