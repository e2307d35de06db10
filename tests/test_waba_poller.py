"""Status triggers share one list read per WABA per interval, in one event loop, against the sandbox."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
from airflow_provider_whatsapp.sandbox import Fault
from airflow_provider_whatsapp.status import DEFAULT_FAILURE_STATES, normalise_target
from airflow_provider_whatsapp.triggers.phone_numbers import PhoneNumberStatusTrigger
from airflow_provider_whatsapp.triggers.waba_poller import WabaStatusPoller

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

FAILURES = normalise_target(DEFAULT_FAILURE_STATES)
INTERVAL = 0.3
LIST_PATH = r"^/\d+/phone_numbers$"
NUMBER_PATH = r"^/\d+$"


def make_numbers(hook: WhatsAppBusinessHook, sandbox: Any, wabas: list[str], per_waba: int) -> dict[str, str]:
    """Create ``per_waba`` PENDING numbers on each WABA; return number ID -> WABA."""
    numbers: dict[str, str] = {}
    for w, waba in enumerate(wabas):
        for index in range(per_waba):
            node = hook.create_phone_number(waba, "1", f"55501{w:02d}{index:03d}", verified_name="Acme Wait")
            numbers[str(node["id"])] = waba
            sandbox.set_fields(str(node["id"]), status="PENDING")
    sandbox.reset_requests()
    return numbers


def trigger_for(number_id: str, waba_id: str | None, deadline: float | None = None) -> PhoneNumberStatusTrigger:
    return PhoneNumberStatusTrigger(
        phone_number_id=number_id,
        target={"status": ["CONNECTED"]},
        failure_states=FAILURES,
        poke_interval=INTERVAL,
        deadline=deadline,
        waba_id=waba_id,
    )


async def first_event(trigger: PhoneNumberStatusTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


async def wait_until(condition: Any, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_forty_triggers_on_two_wabas_share_one_read_per_waba_per_interval(
    whatsapp_connection: Any, hook: WhatsAppBusinessHook
) -> None:
    sandbox = whatsapp_connection
    wabas = [sandbox.default_waba_id, sandbox.add_waba()]
    numbers = make_numbers(hook, sandbox, wabas, 20)

    async def scenario() -> tuple[list[dict[str, Any]], int]:
        tasks = [asyncio.create_task(first_event(trigger_for(n, waba))) for n, waba in numbers.items()]
        lists = lambda: len(sandbox.requests_to(method="GET", path=LIST_PATH))  # noqa: E731
        # Let three intervals of reads happen while every number is still pending.
        await wait_until(lambda: lists() >= 6)
        reads_before = lists()
        for number_id in numbers:
            sandbox.set_fields(number_id, status="CONNECTED")
        events = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        return events, reads_before

    events, reads_before = asyncio.run(scenario())
    assert [event["status"] for event in events] == ["success"] * 40
    list_reads = sandbox.requests_to(method="GET", path=LIST_PATH)
    # One list read per WABA per interval (20 numbers fit one page): never one per trigger.
    per_waba = {waba: sum(1 for r in list_reads if r.path.startswith(f"/{waba}/")) for waba in wabas}
    assert abs(per_waba[wabas[0]] - per_waba[wabas[1]]) <= 1, per_waba
    assert reads_before <= 8, reads_before  # 3 intervals x 2 WABAs, plus one each in flight
    assert sandbox.requests_to(method="GET", path=NUMBER_PATH) == [], "no number was read alone"
    assert WabaStatusPoller._pollers == {}, "the pollers stopped with their last trigger"


def test_first_read_waits_one_interval(whatsapp_connection: Any, hook: WhatsAppBusinessHook) -> None:
    sandbox = whatsapp_connection
    [(number_id, waba)] = make_numbers(hook, sandbox, [sandbox.default_waba_id], 1).items()
    sandbox.set_fields(number_id, status="CONNECTED")

    async def scenario() -> tuple[dict[str, Any], float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        event = await asyncio.wait_for(first_event(trigger_for(number_id, waba)), timeout=30)
        return event, loop.time() - started

    event, elapsed = asyncio.run(scenario())
    assert event["status"] == "success"
    assert elapsed >= INTERVAL
    assert len(sandbox.requests) == 1


def test_a_number_missing_from_its_waba_is_read_alone_and_ends_on_its_terminal_state(
    whatsapp_connection: Any, hook: WhatsAppBusinessHook
) -> None:
    sandbox = whatsapp_connection
    other_waba = sandbox.add_waba()
    [(number_id, _)] = make_numbers(hook, sandbox, [other_waba], 1).items()
    sandbox.set_fields(number_id, status="DELETED")
    # The trigger was told the wrong WABA (or the number left it): the list does not hold it.
    event = asyncio.run(asyncio.wait_for(first_event(trigger_for(number_id, sandbox.default_waba_id)), timeout=30))
    assert event["status"] == "failed"
    assert "DELETED" in event["message"]
    assert len(sandbox.requests_to(method="GET", path=NUMBER_PATH)) == 1


def test_a_failing_list_read_fires_nothing_and_the_wait_goes_on(
    whatsapp_connection: Any, hook: WhatsAppBusinessHook, monkeypatch: Any
) -> None:
    sandbox = whatsapp_connection
    monkeypatch.setenv(
        "AIRFLOW_CONN_WHATSAPP_DEFAULT",
        sandbox.airflow_conn_json({"max_attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.02}),
    )
    numbers = make_numbers(hook, sandbox, [sandbox.default_waba_id], 3)
    sandbox.inject(Fault.http(503, b"busy"), count=4, method="GET", path=LIST_PATH)

    async def scenario() -> list[dict[str, Any]]:
        tasks = [asyncio.create_task(first_event(trigger_for(n, w))) for n, w in numbers.items()]
        await wait_until(lambda: len(sandbox.requests_to(method="GET", path=LIST_PATH)) >= 4)
        assert not any(task.done() for task in tasks), "a failed list read fired an event"
        for number_id in numbers:
            sandbox.set_fields(number_id, status="CONNECTED")
        return list(await asyncio.wait_for(asyncio.gather(*tasks), timeout=30))

    events = asyncio.run(scenario())
    assert [event["status"] for event in events] == ["success"] * 3
    assert sandbox.requests_to(method="GET", path=NUMBER_PATH) == []


def test_the_poller_stops_when_its_last_trigger_is_cancelled(
    whatsapp_connection: Any, hook: WhatsAppBusinessHook
) -> None:
    sandbox = whatsapp_connection
    numbers = make_numbers(hook, sandbox, [sandbox.default_waba_id], 2)

    async def scenario() -> int:
        tasks = [asyncio.create_task(first_event(trigger_for(n, w))) for n, w in numbers.items()]
        await wait_until(lambda: len(sandbox.requests_to(method="GET", path=LIST_PATH)) >= 1)
        assert len(WabaStatusPoller._pollers) == 1
        for task in tasks:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
        reads = len(sandbox.requests)
        await asyncio.sleep(3 * INTERVAL)
        return len(sandbox.requests) - reads

    assert asyncio.run(scenario()) == 0
    assert WabaStatusPoller._pollers == {}


def test_a_trigger_cancelled_as_its_node_arrives_stops(whatsapp_connection: Any, hook: WhatsAppBusinessHook) -> None:
    # The triggerer cancels a trigger (its task cleared, the trigger moved to another triggerer)
    # at any moment, the moment the poller hands it a node included: asyncio.wait_for on Python
    # 3.11 returned the node then and swallowed the cancellation, and the trigger waited on.
    sandbox = whatsapp_connection
    [(number_id, waba)] = make_numbers(hook, sandbox, [sandbox.default_waba_id], 1).items()

    async def scenario() -> str:
        task = asyncio.create_task(first_event(trigger_for(number_id, waba)))
        await wait_until(lambda: sum(poller.subscribers for poller in WabaStatusPoller._pollers.values()) == 1)
        [poller] = WabaStatusPoller._pollers.values()
        [subscription] = poller._subscriptions
        subscription.updates.put_nowait({"id": number_id, "status": "PENDING"})
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        return ("cancelled" if task.cancelled() else "ended") if done else "still waiting"

    assert asyncio.run(scenario()) == "cancelled"
    assert WabaStatusPoller._pollers == {}


def test_timeout_while_waiting_on_the_poller(whatsapp_connection: Any, hook: WhatsAppBusinessHook) -> None:
    import time

    sandbox = whatsapp_connection
    [(number_id, waba)] = make_numbers(hook, sandbox, [sandbox.default_waba_id], 1).items()
    trigger = trigger_for(number_id, waba, deadline=time.time() + 2.5 * INTERVAL)
    event = asyncio.run(asyncio.wait_for(first_event(trigger), timeout=30))
    assert event["status"] == "timeout"
    assert "PENDING" in event["message"]
