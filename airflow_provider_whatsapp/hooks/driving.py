"""How a hook drives a conversation through the exchange core, one call after another.

:func:`conversation_steps` turns a whole conversation (see
:mod:`~airflow_provider_whatsapp.hooks.calls`) into the driver's steps, each call run through its
own :class:`~airflow_provider_whatsapp.hooks.exchange.GraphExchange` (built by
:func:`graph_exchange`), the look-up of an uncertain POST included. Both hooks drive this one loop.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

from airflow_provider_whatsapp.exceptions import GraphAPIError
from airflow_provider_whatsapp.hooks.calls import GraphCall
from airflow_provider_whatsapp.hooks.exchange import CallObserver, ExchangeLog, GraphExchange, Reconcile
from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy, GraphSettings, build_request
from airflow_provider_whatsapp.hooks.shared_view import SharedView
from airflow_provider_whatsapp.hooks.usage import ConnectionKey

T = TypeVar("T")


def conversation_steps(
    conversation: Generator[Any, Any, T], exchange_for: Callable[[GraphCall], GraphExchange]
) -> Generator[Any, Any, T]:
    """
    A whole conversation (see :mod:`~airflow_provider_whatsapp.hooks.calls`) as its driver's steps.

    Each :class:`~airflow_provider_whatsapp.hooks.calls.GraphCall` the conversation yields runs
    through its own :class:`.GraphExchange` (built by ``exchange_for``), the look-up of an uncertain
    POST included; the conversation is sent each call's JSON object or has its
    :class:`~airflow_provider_whatsapp.exceptions.GraphAPIError` thrown in. What is left for the
    driver: send each :class:`.Send` and answer it, sleep each :class:`.Sleep`, and answer whatever
    else the conversation yields (the onboarding conversation's need of a code). Both hooks drive
    this one loop, so they cannot drift apart.
    """
    reply: Any = None
    error: GraphAPIError | None = None
    while True:
        try:
            need = conversation.send(reply) if error is None else conversation.throw(error)
        except StopIteration as done:
            result: T = done.value
            return result
        reply, error = None, None
        if not isinstance(need, GraphCall):
            reply = yield need
            continue
        try:
            reply = yield from _call_steps(need, exchange_for)
        except GraphAPIError as failure:
            error = failure


def _call_steps(
    graph_call: GraphCall, exchange_for: Callable[[GraphCall], GraphExchange]
) -> Generator[Any, Any, dict[str, Any]]:
    steps = exchange_for(graph_call).steps()
    try:
        action = next(steps)
        while True:
            if isinstance(action, Reconcile):
                assert graph_call.reconcile is not None
                found = yield from conversation_steps(graph_call.reconcile(), exchange_for)
                action = steps.send(found)
            else:
                action = steps.send((yield action))
    except StopIteration as done:
        answer: dict[str, Any] = done.value
        return answer
    finally:
        # A call given up on half way (its look-up failed, the driver was cancelled) still
        # settles what it counted against its budgets.
        steps.close()


def graph_exchange(
    settings: GraphSettings,
    graph_call: GraphCall,
    *,
    policy: GraphRetryPolicy,
    connection: ConnectionKey,
    log: ExchangeLog,
    user_agent: str | None = None,
    shared: SharedView | None = None,
    observer: CallObserver | None = None,
    waiter: str | None = None,
    holds_place: bool = False,
) -> GraphExchange:
    """The exchange of one call of a conversation, as both hooks build it."""
    request = build_request(
        settings, graph_call.method, graph_call.path, params=graph_call.params, body=graph_call.body
    )
    if user_agent is not None:
        request.headers["User-Agent"] = user_agent
    return GraphExchange(
        request,
        policy=policy,
        connection=connection,
        scope=graph_call.scope,
        log=log,
        reconciles=graph_call.reconcile is not None,
        accept_after_uncertain=graph_call.accept_after_uncertain,
        numbers_of=graph_call.numbers_of,
        shared=shared,
        observer=observer,
        waiter=waiter,
        holds_place=holds_place,
    )
