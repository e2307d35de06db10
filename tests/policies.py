"""Retry policies shared by the tests (kept out of ``conftest.py`` so importing them has no side effects)."""

from __future__ import annotations

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
