"""The private path ``tests/airflow_versions.py`` resets Airflow's secrets masker through: it must still be
the one Airflow masks with and resets for every task process, or every later test inherits the
masks of earlier ones."""

from __future__ import annotations

import importlib
import inspect

import pytest

from tests.airflow_versions import SECRETS_MASKER_MODULES, reset_secrets_masker

SECRET = "masker-reset-probe-7Qx4"


@pytest.mark.parametrize("module_name", SECRETS_MASKER_MODULES)
def test_the_reset_path_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert callable(getattr(module, "reset_secrets_masker", None)), f"{module_name}.reset_secrets_masker moved"


def test_airflow_resets_task_processes_through_the_same_path() -> None:
    from airflow.sdk.execution_time import supervisor

    assert f"from {SECRETS_MASKER_MODULES[0]} import reset_secrets_masker" in inspect.getsource(supervisor)


def test_a_secret_masked_through_the_public_api_is_forgotten_by_the_reset() -> None:
    from airflow.sdk.log import mask_secret

    masker = importlib.import_module(SECRETS_MASKER_MODULES[0])
    mask_secret(SECRET)
    assert masker.redact(f"token {SECRET}") == "token ***", "the public API masks elsewhere now"
    reset_secrets_masker()
    assert masker.redact(f"token {SECRET}") == f"token {SECRET}"


def test_the_core_masker_is_reset_too() -> None:
    core = importlib.import_module(SECRETS_MASKER_MODULES[1])
    core.mask_secret(SECRET)
    assert core.redact(f"token {SECRET}") == "token ***"
    reset_secrets_masker()
    assert core.redact(f"token {SECRET}") == f"token {SECRET}"
