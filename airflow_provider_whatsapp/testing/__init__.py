"""Testing DAGs that use the provider: an Airflow home of their own, DAG runs and what they left.

The pytest plugin's fixtures (``airflow_provider_whatsapp.sandbox.pytest_plugin``) are built on
these; :mod:`~airflow_provider_whatsapp.testing.airflow_home` imports no Airflow, so that the home
can be set up before Airflow reads its configuration, and
:mod:`~airflow_provider_whatsapp.testing.dag_runs` imports Airflow only when called.
"""

from __future__ import annotations

from airflow_provider_whatsapp.testing.airflow_home import AirflowHomeError, AirflowTestHome
from airflow_provider_whatsapp.testing.dag_runs import DagImportError, DagRunResult, run_dag

__all__ = ["AirflowHomeError", "AirflowTestHome", "DagImportError", "DagRunResult", "run_dag"]
