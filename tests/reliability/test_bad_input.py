"""Bad input to every operator, the sensor and the connection: rejected before any request, naming
the field and the rule (the rows: ``tests/bad_input_cases.py``)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from tests.bad_input_cases import CASES, BadInput, as_params

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat


class FakeTaskInstance:
    """What operators touch of a task instance: the try number and XCom pushes."""

    try_number = 1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _operator(bad: BadInput) -> Any:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_whatsapp.operators import phone_numbers
    from airflow_provider_whatsapp.sensors import phone_numbers as sensors

    cls = getattr(phone_numbers, bad.operator, None) or getattr(sensors, bad.operator)
    # With native rendering (as DAGs passing values by XCom often use) "{{ params.nothing }}" is None.
    with DAG("bad_input", schedule=None, start_date=datetime(2026, 1, 1), render_template_as_native_obj=bad.native):
        return cls(task_id="under_test", **bad.kwargs)


@pytest.mark.parametrize("bad", as_params(CASES))
def test_bad_input_is_rejected_before_any_request(
    whatsapp_sandbox: Any, monkeypatch: Any, tally: Counter[str], bad: BadInput
) -> None:
    connection = json.loads(whatsapp_sandbox.airflow_conn_json())
    for key, value in bad.conn.items():
        if key in ("host", "password"):
            connection[key] = value
        else:
            connection.setdefault("extra", {})[key] = value
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", json.dumps(connection))

    context: dict[str, Any] = {"ti": FakeTaskInstance(), "params": {"nothing": None}}
    error: BaseException | None = None
    try:
        task = _operator(bad)
        task.render_template_fields(context)
        task.execute(context)
    except Exception as raised:
        error = raised
    sent = len(whatsapp_sandbox.requests)
    tally["bad inputs tried"] += 1
    tally["bad inputs rejected before any request, naming field and rule"] += int(bad.matches(error) and sent == 0)
    assert bad.matches(error), f"wanted '{bad.field}: ...{bad.rule}...', got {error!r}"
    assert sent == 0, "a request reached Graph before the input was checked"


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30
