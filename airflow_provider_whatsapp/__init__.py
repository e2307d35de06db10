"""Apache Airflow provider for onboarding WhatsApp Business phone numbers through Meta's Graph API."""

from __future__ import annotations

import re
from importlib import metadata

__all__ = ["MAXIMUM_AIRFLOW_VERSION", "MINIMUM_AIRFLOW_VERSION", "__version__", "release_tuple"]

__version__ = "0.1.0"

# Kept equal to the ``apache-airflow`` range in pyproject.toml.
MINIMUM_AIRFLOW_VERSION = "2.11.0"
MAXIMUM_AIRFLOW_VERSION = "4"


def _installed_airflow_version() -> str | None:
    # Read from the installed distributions rather than ``airflow.__version__``: importing Airflow
    # takes seconds, and the Graph sandbox in this package must start without it.
    for distribution in ("apache-airflow-core", "apache-airflow"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def release_tuple(version: str) -> tuple[int, int, int]:
    """A version's ``(major, minor, micro)``, pre-release and local parts dropped (``"3.1.0rc1"`` ->
    ``(3, 1, 0)``); parsed with the standard library, which is all the sandbox in this package needs."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    parts = [int(part) for part in match.group().split(".")] if match else []
    major, minor, micro = (*parts, 0, 0, 0)[:3]
    return major, minor, micro


def _check_airflow_version(installed: str | None) -> None:
    if installed is None:
        return
    if not release_tuple(MINIMUM_AIRFLOW_VERSION) <= release_tuple(installed) < release_tuple(MAXIMUM_AIRFLOW_VERSION):
        raise RuntimeError(
            f"The package `airflow-provider-whatsapp:{__version__}` supports Apache Airflow "
            f">={MINIMUM_AIRFLOW_VERSION},<{MAXIMUM_AIRFLOW_VERSION} (2.11.x and 3.x); "
            f"this is Apache Airflow {installed}."
        )


_check_airflow_version(_installed_airflow_version())
