"""The retry policy shared by the tests (kept out of ``conftest.py`` so importing it has no side effects).

Use it wherever a test only needs retries to be fast; a test about a policy's own behaviour builds
that policy itself.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy

# Retries in tests wait milliseconds; what the hook *asked* to wait is recorded and asserted.
FAST_POLICY = GraphRetryPolicy(
    max_attempts=4,
    max_total_wait=60.0,
    backoff_initial=0.001,
    backoff_max=0.005,
    max_throttle_wait=30.0,
    slowdown_wait=0.0,
    exhausted_wait=1.0,
)


def fast_policy_extras(**overrides: Any) -> dict[str, Any]:
    """:data:`FAST_POLICY` (with ``overrides``) as connection extras, for tasks that build their own hook."""
    return asdict(replace(FAST_POLICY, **overrides))
