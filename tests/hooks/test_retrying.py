"""The retry decisions of a Graph call are tenacity's, made from the policy (hooks/retrying.py)."""

from __future__ import annotations

import pytest
import tenacity

from airflow_provider_whatsapp.exceptions import GraphPermanentError, GraphThrottledError, GraphTransientError
from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy
from airflow_provider_whatsapp.hooks.retrying import graph_retrying, next_wait


class Told:
    def __init__(self) -> None:
        self.retries: list[tuple[str, float, int]] = []
        self.gave_up: list[tuple[str, float]] = []

    def before_retry(self, error: Exception, wait: float, attempt: int) -> None:
        self.retries.append((type(error).__name__, wait, attempt))

    def give_up(self, error: Exception, wait: float) -> None:
        self.gave_up.append((type(error).__name__, wait))


def engine(policy: GraphRetryPolicy) -> tuple[tenacity.RetryCallState, Told]:
    told = Told()
    retrying = graph_retrying(policy, before_retry=told.before_retry, give_up=told.give_up)
    return tenacity.RetryCallState(retrying, None, (), {}), told


def throttled(seconds: float) -> GraphThrottledError:
    return GraphThrottledError("spent", code=80008, retry_after=seconds)


def test_graphs_regain_time_is_waited_and_told_before_the_wait() -> None:
    state, told = engine(GraphRetryPolicy(max_attempts=3))
    assert next_wait(state, throttled(42.0)) == 42.0
    assert next_wait(state, throttled(7.0)) == 7.0
    assert told.retries == [("GraphThrottledError", 42.0, 1), ("GraphThrottledError", 7.0, 2)]


def test_the_error_itself_is_raised_not_tenacitys_retry_error() -> None:
    state, told = engine(GraphRetryPolicy(max_attempts=2))
    permanent = GraphPermanentError("no such number", code=100)
    with pytest.raises(GraphPermanentError) as raised:
        next_wait(state, permanent)
    assert raised.value is permanent
    assert told.retries == []


def test_stops_after_max_attempts_with_the_last_error() -> None:
    state, told = engine(GraphRetryPolicy(max_attempts=2, backoff_initial=1.0, backoff_max=1.0))
    first, last = GraphTransientError("busy", code=2), GraphTransientError("still busy", code=2)
    assert 0.5 <= next_wait(state, first) <= 1.0
    with pytest.raises(GraphTransientError) as raised:
        next_wait(state, last)
    assert raised.value is last
    assert len(told.retries) == 1 and told.gave_up == []


def test_stops_before_the_waits_would_pass_max_total_wait() -> None:
    state, told = engine(GraphRetryPolicy(max_attempts=10, max_total_wait=100.0))
    assert next_wait(state, throttled(60.0)) == 60.0
    error = throttled(60.0)
    with pytest.raises(GraphThrottledError) as raised:
        next_wait(state, error)
    assert raised.value is error
    assert told.gave_up == [("GraphThrottledError", 60.0)]
