"""An operator whose budget is spent defers to the triggerer, holding no worker slot, and keeps
its place among the budget's waiters across the deferral (the sandbox over HTTP, the operator's
own ``execute``; what the whole deployment does is tests/e2e/test_deployment_budgets.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import BudgetWaitRequired
from airflow_provider_whatsapp.operators.base import MIN_BUDGET_DEFERRAL, RESUME_LEAD, WhatsAppBaseOperator
from airflow_provider_whatsapp.sandbox import GraphSandbox

# Deferring is Airflow's: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat


class ListNumbersOperator(WhatsAppBaseOperator):
    """Lists the connection's WABA's numbers: one Graph call."""

    def execute_graph(self, context: Any) -> Any:
        return len(list(self.hook.list_phone_numbers(str(self.hook.default_waba_id))))


class SpentBudgetOperator(WhatsAppBaseOperator):
    """Meets a budget that asks for ``seconds`` of waiting."""

    def __init__(self, *, seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def execute_graph(self, context: Any) -> Any:
        raise BudgetWaitRequired(self.seconds, "102290129340398")


@pytest.mark.whatsapp_sandbox
@pytest.mark.parametrize(("wait", "deferred_for"), [(60.0, 60.0 - RESUME_LEAD), (16.0, MIN_BUDGET_DEFERRAL)])
def test_a_deferred_task_comes_back_just_before_its_budget_is_regained(
    whatsapp_connection: GraphSandbox, wait: float, deferred_for: float
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    with pytest.raises(TaskDeferred) as deferred:
        SpentBudgetOperator(task_id="spent", seconds=wait).execute({})
    # Its process starts and reads its budgets again meanwhile; the rest of the wait it sleeps.
    left = (deferred.value.trigger.moment - datetime.now(UTC)).total_seconds()
    assert deferred_for - 5 <= left <= deferred_for, left


@pytest.mark.whatsapp_sandbox(rate_limit=2, rate_window=3600.0)
def test_a_spent_budget_defers_the_task_with_its_waiters_name(whatsapp_connection: GraphSandbox) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    first = ListNumbersOperator(task_id="first")
    assert first.execute({}) == 0
    assert first.execute({}) == 0
    second = ListNumbersOperator(task_id="second")
    calls = len(whatsapp_connection.requests)
    with pytest.raises(TaskDeferred) as deferred:
        # Its first call reads the budget spent (the process's own reading): a wait of the
        # window's regain time, longer than defer_wait_over.
        second.execute({})
    assert len(whatsapp_connection.requests) == calls, "nothing was sent"
    assert deferred.value.method_name == "resume_after_budget_wait"
    left = (deferred.value.trigger.moment - datetime.now(UTC)).total_seconds()
    assert MIN_BUDGET_DEFERRAL - 5 <= left <= 600, left
    waiter = deferred.value.kwargs["budget_waiter"]
    assert waiter == second.hook.budget_waiter

    # Back as another process: the same waiter, whose next call gives its place up.
    back = ListNumbersOperator(task_id="second")
    with pytest.raises(TaskDeferred):
        back.resume_after_budget_wait({}, event=None, budget_waiter=waiter)
    assert back.hook.budget_waiter == waiter
