"""Apache Airflow provider for onboarding WhatsApp Business phone numbers through Meta's Graph API."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
