"""Deprecated: moved to :mod:`airflow_provider_whatsapp.onboarding.requests_table` (goes away in the next release)."""

from __future__ import annotations

import warnings

from airflow_provider_whatsapp.onboarding.requests_table import *  # noqa: F403

warnings.warn(
    "airflow_provider_whatsapp.onboarding_requests moved to airflow_provider_whatsapp.onboarding.requests_table",
    DeprecationWarning,
    stacklevel=2,
)
