"""Whether and when a failed Graph call is tried again, decided by ``tenacity``.

The exchange core (:mod:`~airflow_provider_whatsapp.hooks.exchange`) does no I/O, so it cannot
hand tenacity a function to call: it drives tenacity's decision engine instead. After each failed
attempt it records the error on a ``tenacity.RetryCallState`` and asks
``tenacity.Retrying.iter``, which answers with a ``tenacity.DoSleep`` (the exchange
yields that wait to its driver, then attempts again) or re-raises the error (give up). What to
retry, how long to wait and when to stop are tenacity strategies made from the
:class:`~airflow_provider_whatsapp.hooks.graph.GraphRetryPolicy`, so both hooks, sync and async,
retry by the same rules.
"""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from airflow_provider_whatsapp.exceptions import GraphAPIError
from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy

#: Told of a wait before the next attempt: the error, the wait, and the attempt that failed.
BeforeRetry = Callable[[GraphAPIError, float, int], None]
#: Told that waiting once more would pass ``max_total_wait``: the error and the wait it wanted.
GiveUp = Callable[[GraphAPIError, float], None]


def _error_of(state: tenacity.RetryCallState) -> GraphAPIError:
    assert state.outcome is not None
    error = state.outcome.exception()
    assert isinstance(error, GraphAPIError)
    return error


def graph_retrying(policy: GraphRetryPolicy, *, before_retry: BeforeRetry, give_up: GiveUp) -> tenacity.Retrying:
    """
    The tenacity engine of one Graph call's retries, after the policy.

    :param policy: what to retry (:meth:`~.GraphRetryPolicy.should_retry`), how long to wait
        (:meth:`~.GraphRetryPolicy.wait_for`: Graph's regain time, else backoff with jitter), and
        when to stop (``max_attempts`` attempts, or a wait that would take all the call's waits
        past ``max_total_wait``).
    :param before_retry: tenacity's ``before_sleep``: told of each wait it decided on.
    :param give_up: told when the call stops because its waits would pass ``max_total_wait``.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        return policy.wait_for(_error_of(state), state.attempt_number)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        # tenacity decides the wait before it asks whether to stop: the wait is known here.
        if state.idle_for + state.upcoming_sleep > policy.max_total_wait:
            give_up(_error_of(state), state.upcoming_sleep)
            return True
        return False

    def before_sleep(state: tenacity.RetryCallState) -> None:
        before_retry(_error_of(state), state.upcoming_sleep, state.attempt_number)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(policy.should_retry),
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        # The error itself, not tenacity's RetryError: the table in exceptions.py is the contract.
        reraise=True,
    )
    retrying.begin()
    return retrying


def next_wait(state: tenacity.RetryCallState, error: GraphAPIError) -> float:
    """Record ``error`` as the outcome of the state's attempt; the wait before the next, or raise it.

    The state's ``retry_object`` (a :func:`graph_retrying` engine) decides.
    """
    state.set_exception((type(error), error, error.__traceback__))
    action = state.retry_object.iter(state)
    # After a failure tenacity re-raises (not retried, or stopped) or says how long to sleep.
    assert isinstance(action, tenacity.DoSleep), action
    state.prepare_for_next_attempt()
    return float(action)
