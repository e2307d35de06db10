"""The bulk example DAG at the scale BSPs meet: thousands of numbers on many WABAs in one run.

Past Airflow's ``[core] max_map_length`` (1,024 by default) the design that mapped tasks per
number could not even start; batches of the onboarding operator map over a handful of task
instances whatever the count.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

BULK = "example_whatsapp_bulk_onboarding"
PIN = "482915"
WABAS = int(__import__("os").environ.get("SCALE_WABAS", "50"))
PER_WABA = 100
TOTAL = WABAS * PER_WABA


@pytest.fixture
def sandbox(whatsapp_sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    sandbox = whatsapp_sandbox_factory(wabas=WABAS, code_request_cooldown=0.0)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN", PIN)
    return sandbox


def scale_rows(sandbox: Any) -> list[dict[str, str]]:
    return [
        {"cc": "1", "phone_number": f"55{w:02d}{i:06d}", "verified_name": f"Scale {w}-{i}", "waba_id": waba}
        for w, waba in enumerate(sandbox.waba_ids)
        for i in range(PER_WABA)
    ]


def test_five_thousand_numbers_on_fifty_wabas_in_one_run(run_dag: Any, sandbox: Any) -> None:
    rows = scale_rows(sandbox)
    assert len(rows) == TOTAL

    result = run_dag(BULK, {"numbers": rows})

    assert result.state == "success", result.task_states
    report = result.xcom("report")
    assert report["counts"] == {"onboarded": TOTAL}
    assert report["unfinished"] == 0 and report["missing_batches"] == []
    # Each row's entry, in input order, names the number Graph now holds for it.
    numbers = sandbox.numbers()
    assert len(numbers) == TOTAL
    by_digits = {n["display_phone_number"].replace("+", "").replace(" ", "").replace("-", ""): n for n in numbers}
    for row, entry in zip(rows, report["numbers"], strict=True):
        node = by_digits[row["cc"] + row["phone_number"]]
        assert entry["phone_number_id"] == node["id"] and entry["waba_id"] == row["waba_id"]
    # Each number created once and registered once; four calls each, one list read per WABA.
    assert all(sandbox.register_calls(n["id"]) == 1 for n in numbers)
    creates = Counter(r.body["phone_number"] for r in sandbox.requests_to(method="POST", path=r"/phone_numbers$"))
    assert set(creates.values()) == {1} and len(creates) == TOTAL
    assert len(sandbox.requests_to(method="GET", path=r"^/\d+/phone_numbers$")) == WABAS
    assert len(sandbox.requests) == 4 * TOTAL + WABAS
    # A handful of task instances for 5,000 numbers: batches of whole WABAs.
    onboard = sorted(index for task_id, index in result.task_states if task_id == "onboard")
    assert onboard == list(range(5))
    assert len(result.task_states) == 1 + 5 + 1
