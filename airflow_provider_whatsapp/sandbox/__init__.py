"""A local stand-in for Graph API's WhatsApp Business phone-number endpoints, for demos and tests.

Standard library only, and independent of the rest of the provider (and of Airflow), so users can
run it in their own DAG tests: ``with GraphSandbox() as sandbox: ...``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_whatsapp.sandbox.faults import Fault
    from airflow_provider_whatsapp.sandbox.server import GraphSandbox
    from airflow_provider_whatsapp.sandbox.state import DEFAULT_WABA_ID, FIXED_TEST_CODE, FIXED_TEST_PIN

__all__ = ["DEFAULT_WABA_ID", "FIXED_TEST_CODE", "FIXED_TEST_PIN", "Fault", "GraphSandbox"]

# Each name loads its module when first used: a DAG file that imports only the sandbox's client
# (for a macro) parses without the server, its state or its faults.
_HOMES = {
    "DEFAULT_WABA_ID": "state",
    "FIXED_TEST_CODE": "state",
    "FIXED_TEST_PIN": "state",
    "Fault": "faults",
    "GraphSandbox": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
