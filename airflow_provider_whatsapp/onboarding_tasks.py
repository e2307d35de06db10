"""Deprecated: moved to :mod:`airflow_provider_whatsapp.onboarding.task_groups` (goes away in the next release)."""

from __future__ import annotations

import warnings

from airflow_provider_whatsapp.onboarding.task_groups import *  # noqa: F403

warnings.warn(
    "airflow_provider_whatsapp.onboarding_tasks moved to airflow_provider_whatsapp.onboarding.task_groups",
    DeprecationWarning,
    stacklevel=2,
)
