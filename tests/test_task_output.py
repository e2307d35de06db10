"""``task_output``: on Airflow 3.0 it leaves out what only Airflow's ``dag.test()`` prints (its
supervisor channel's DEBUG echo, the local-variable panels of its tracebacks) and keeps the rest."""

from __future__ import annotations

import pytest

from tests import airflow_versions
from tests.airflow_versions import task_output

# Exercises what each Airflow version's dag.test() prints: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

PRINTED = "\n".join(
    [
        "2026-12-01 22:29:06 [debug    ] Sending request        msg=MaskSecret(value='918273', name=None)",
        "2026-12-01 22:29:06 [debug    ] Received message from task runner msg=SetRenderedFields(pin='918273')",
        "[2026-12-01 22:29:06,911] {phone_numbers.py:141} INFO - \x1b[32mPhone number ID: 106540352242922\x1b[0m",
        "│ /work/airflow_provider_whatsapp/operators/phone_numbers.py:251 in execute_graph │",
        "│ ╭──────────── locals ────────────╮ │",
        "│ │    code = '850546'             │ │",
        "│ ╰────────────────────────────────╯ │",
        "GraphPermanentError: (#100) The verification code was not accepted",
    ]
)


def test_what_is_kept_on_every_version() -> None:
    kept = task_output(PRINTED)
    assert "\x1b[" not in kept
    assert "Phone number ID: 106540352242922" in kept
    assert "phone_numbers.py:251 in execute_graph" in kept
    assert "GraphPermanentError: (#100) The verification code was not accepted" in kept


def test_on_airflow_3_0_the_supervisor_echo_and_the_locals_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(airflow_versions, "AIRFLOW_V_3_0_PLUS", True)
    monkeypatch.setattr(airflow_versions, "AIRFLOW_V_3_1_PLUS", False)
    kept = task_output(PRINTED)
    assert "918273" not in kept and "850546" not in kept
    assert "locals" not in kept


@pytest.mark.parametrize(("v3_0", "v3_1"), [(False, False), (True, True)], ids=["2.x", "3.1+"])
def test_elsewhere_nothing_but_colours_is_left_out(monkeypatch: pytest.MonkeyPatch, v3_0: bool, v3_1: bool) -> None:
    monkeypatch.setattr(airflow_versions, "AIRFLOW_V_3_0_PLUS", v3_0)
    monkeypatch.setattr(airflow_versions, "AIRFLOW_V_3_1_PLUS", v3_1)
    assert task_output(PRINTED) == PRINTED.replace("\x1b[32m", "").replace("\x1b[0m", "")
