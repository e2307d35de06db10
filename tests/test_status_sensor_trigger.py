"""PhoneNumberStatusSensor (poking) and PhoneNumberStatusTrigger (deferred) against the sandbox."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_whatsapp.exceptions import InvalidInputError
from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
from airflow_provider_whatsapp.sensors.phone_numbers import PhoneNumberStatusSensor
from airflow_provider_whatsapp.status import DEFAULT_FAILURE_STATES, normalise_target
from airflow_provider_whatsapp.triggers.phone_numbers import PhoneNumberStatusTrigger

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

TARGET = {"status": ["CONNECTED"]}
FAILURES = normalise_target(DEFAULT_FAILURE_STATES)


@pytest.fixture
def number_id(hook: WhatsAppBusinessHook, whatsapp_connection: Any) -> str:
    node = hook.create_phone_number(whatsapp_connection.default_waba_id, "1", "5550100031", verified_name="Acme")
    whatsapp_connection.reset_requests()
    return str(node["id"])


def first_event(trigger: PhoneNumberStatusTrigger, limit: float = 20.0) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(run(), timeout=limit))


def make_trigger(number_id: str, **kwargs: Any) -> PhoneNumberStatusTrigger:
    kwargs.setdefault("target", TARGET)
    kwargs.setdefault("failure_states", FAILURES)
    kwargs.setdefault("poke_interval", 0.05)
    return PhoneNumberStatusTrigger(phone_number_id=number_id, **kwargs)


class TestTrigger:
    def test_serializes_only_plain_values_and_rebuilds(self, whatsapp_connection: Any) -> None:
        trigger = make_trigger("123", deadline=1_900_000_000.0)
        path, kwargs = trigger.serialize()
        assert path == "airflow_provider_whatsapp.triggers.phone_numbers.PhoneNumberStatusTrigger"
        rebuilt = PhoneNumberStatusTrigger(**kwargs)
        assert rebuilt.serialize() == (path, kwargs)
        assert whatsapp_connection.token not in repr(kwargs)
        assert whatsapp_connection.token not in repr(trigger)

    def test_fires_success_once_connected(self, whatsapp_connection: Any, number_id: str) -> None:
        whatsapp_connection.set_fields(number_id, status="PENDING")
        trigger = make_trigger(number_id)

        async def connect_later() -> dict[str, Any]:
            async def flip() -> None:
                # Only once the trigger has read PENDING, so that it must read again to see the change
                # (however long its connection lookup takes).
                deadline = time.monotonic() + 15
                while not whatsapp_connection.requests and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                whatsapp_connection.set_fields(number_id, status="CONNECTED")

            flipper = asyncio.create_task(flip())
            async for event in trigger.run():
                await flipper
                return dict(event.payload)
            raise AssertionError("no event")

        event = asyncio.run(asyncio.wait_for(connect_later(), timeout=20))
        assert event["status"] == "success"
        assert event["node"]["status"] == "CONNECTED"
        reads = whatsapp_connection.requests
        assert len(reads) >= 2
        assert {r.method for r in reads} == {"GET"}

    def test_fails_at_once_on_terminal_state(self, whatsapp_connection: Any, number_id: str) -> None:
        whatsapp_connection.set_fields(number_id, status="BANNED")
        event = first_event(make_trigger(number_id))
        assert event["status"] == "failed"
        assert "BANNED" in event["message"]
        assert len(whatsapp_connection.requests) == 1

    def test_times_out(self, whatsapp_connection: Any, number_id: str) -> None:
        event = first_event(make_trigger(number_id, deadline=time.time() + 0.2))
        assert event["status"] == "timeout"
        assert "status=PENDING" in event["message"]

    def test_reports_graph_error(self, whatsapp_connection: Any) -> None:
        event = first_event(make_trigger("999999999"))
        assert event["status"] == "error"
        assert event["error"]["code"] == 100
        assert event["error"]["fbtrace_id"]


class TestSensor:
    def test_poke_returns_node_when_met(self, whatsapp_connection: Any, number_id: str) -> None:
        whatsapp_connection.set_fields(number_id, status="CONNECTED")
        sensor = PhoneNumberStatusSensor(task_id="wait", phone_number_id=number_id, target={"status": "connected"})
        result = sensor.poke({})  # type: ignore[arg-type]
        assert result.is_done
        assert result.xcom_value["status"] == "CONNECTED"

    def test_poke_not_done_while_pending(self, whatsapp_connection: Any, number_id: str) -> None:
        sensor = PhoneNumberStatusSensor(task_id="wait", phone_number_id=number_id, target={"status": "CONNECTED"})
        assert not sensor.poke({}).is_done  # type: ignore[arg-type]

    @pytest.mark.parametrize(("field", "state"), [("status", "BANNED"), ("name_status", "DECLINED")])
    def test_terminal_state_fails_with_the_state(
        self, whatsapp_connection: Any, number_id: str, field: str, state: str
    ) -> None:
        whatsapp_connection.set_fields(number_id, **{field: state})
        sensor = PhoneNumberStatusSensor(task_id="wait", phone_number_id=number_id, target={"status": "CONNECTED"})
        with pytest.raises(AirflowFailException, match=f"{field} is {state}"):
            sensor.poke({})  # type: ignore[arg-type]

    def test_a_target_state_is_not_a_failure(self, whatsapp_connection: Any, number_id: str) -> None:
        whatsapp_connection.set_fields(number_id, status="DELETED")
        sensor = PhoneNumberStatusSensor(task_id="wait", phone_number_id=number_id, target={"status": "DELETED"})
        assert sensor.poke({}).is_done  # type: ignore[arg-type]

    def test_bad_target_is_rejected_before_any_request(self, whatsapp_connection: Any) -> None:
        sensor = PhoneNumberStatusSensor(task_id="wait", phone_number_id="123", target={})
        with pytest.raises(InvalidInputError, match="target"):
            sensor.poke({})  # type: ignore[arg-type]
        assert whatsapp_connection.requests == []

    def test_execute_complete(self) -> None:
        sensor = PhoneNumberStatusSensor(task_id="wait", phone_number_id="123", target=TARGET)
        node = {"id": "123", "status": "CONNECTED"}
        assert sensor.execute_complete({}, {"status": "success", "node": node}) == node  # type: ignore[arg-type]
        with pytest.raises(AirflowFailException, match="timeout: gave up"):
            sensor.execute_complete({}, {"status": "timeout", "message": "gave up"})  # type: ignore[arg-type]


class TestAsyncHookRetries:
    """The trigger's reads follow the sync hook's retry and throttle rules (one shared policy)."""

    @staticmethod
    def read(number_id: str, **kwargs: Any) -> tuple[Any, list[float]]:
        from airflow_provider_whatsapp.hooks.whatsapp_async import WhatsAppBusinessAsyncHook
        from tests.policies import FAST_POLICY

        waits: list[float] = []

        async def record(seconds: float) -> None:
            waits.append(seconds)

        async def run() -> Any:
            async with WhatsAppBusinessAsyncHook(retry_policy=FAST_POLICY, sleep=record) as hook:
                try:
                    return await hook.get_phone_number(number_id, **kwargs)
                except Exception as error:
                    return error

        return asyncio.run(asyncio.wait_for(run(), timeout=20)), waits

    def test_throttle_waits_the_time_announced(self, whatsapp_connection: Any, number_id: str) -> None:
        from airflow_provider_whatsapp.sandbox import Fault

        whatsapp_connection.inject(Fault.http(503, b"busy", headers={"Retry-After": "4"}), method="GET")
        node, waits = self.read(number_id)
        assert node["id"] == number_id
        assert waits == [4.0]
        assert len(whatsapp_connection.requests) == 2

    def test_transient_graph_error_is_retried(self, whatsapp_connection: Any, number_id: str) -> None:
        from airflow_provider_whatsapp.sandbox import Fault

        whatsapp_connection.inject(Fault.graph_error(2, is_transient=True, http_status=500), count=2, method="GET")
        node, waits = self.read(number_id)
        assert node["id"] == number_id
        assert len(waits) == 2

    def test_permanent_error_is_not_retried(self, whatsapp_connection: Any) -> None:
        from airflow_provider_whatsapp.exceptions import GraphPermanentError

        error, waits = self.read("999999999")
        assert isinstance(error, GraphPermanentError)
        assert error.code == 100
        assert waits == []
        assert len(whatsapp_connection.requests) == 1

    def test_malformed_json_is_a_graph_error(self, whatsapp_connection: Any, number_id: str) -> None:
        from airflow_provider_whatsapp.exceptions import GraphAPIError
        from airflow_provider_whatsapp.sandbox import Fault

        whatsapp_connection.inject(Fault.malformed_json(200), count=10, method="GET")
        error, _ = self.read(number_id)
        assert isinstance(error, GraphAPIError)
        assert error.http_status == 200
