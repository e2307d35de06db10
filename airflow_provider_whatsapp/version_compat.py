"""The Airflow version this provider runs on, for the features that need a newer one.

Everything that only moved between versions is imported from ``airflow.providers.common.compat``;
these flags are for what an older Airflow does not have at all (see ``docs/compatibility.rst``).
"""

from __future__ import annotations

from airflow_provider_whatsapp import release_tuple


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """The running Airflow's ``(major, minor, micro)``, without pre-release or local parts."""
    from airflow import __version__

    return release_tuple(__version__)


_AIRFLOW_VERSION = get_base_airflow_version_tuple()
AIRFLOW_V_3_0_PLUS = _AIRFLOW_VERSION >= (3, 0, 0)
# Human-in-the-loop operators (the onboarding example's typed-in verification code).
AIRFLOW_V_3_1_PLUS = _AIRFLOW_VERSION >= (3, 1, 0)
# The declarative connection form: ``conn-fields`` in the provider info.
AIRFLOW_V_3_2_PLUS = _AIRFLOW_VERSION >= (3, 2, 0)

__all__ = ["AIRFLOW_V_3_0_PLUS", "AIRFLOW_V_3_1_PLUS", "AIRFLOW_V_3_2_PLUS", "get_base_airflow_version_tuple"]
