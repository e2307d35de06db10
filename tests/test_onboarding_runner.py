"""The bulk onboarding runner stops when it is told to: cancelled by the triggerer, or at its deadline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_whatsapp.hooks import calls
from airflow_provider_whatsapp.hooks.whatsapp_async import WhatsAppBusinessAsyncHook
from airflow_provider_whatsapp.onboarding.runner import OnboardingRunner

# Exercises the provider through Airflow's connection lookup: run on every supported version.
pytestmark = pytest.mark.compat

NUMBERS = 40


def rows() -> list[dict[str, Any]]:
    return [{"cc": "1", "phone_number": f"555013{index:04d}", "verified_name": "Acme Bulk"} for index in range(NUMBERS)]


async def calls_after_stop(sandbox: Any, *, cancel: bool, deadline: float | None) -> tuple[int, Any]:
    """Run the runner until its first create, stop it, and count what reached Graph after."""
    async with WhatsAppBusinessAsyncHook() as hook:
        runner = OnboardingRunner(hook, pin="123456", numbers_per_waba=1, deadline=deadline)
        run = asyncio.ensure_future(runner.run(rows()))
        loop = asyncio.get_running_loop()
        limit = loop.time() + 30
        while not sandbox.requests_to(method="POST") and not run.done():
            assert loop.time() < limit, "the runner sent no create in time"
            await asyncio.sleep(0.01)
        if cancel:
            run.cancel()
        done, _ = await asyncio.wait({run}, timeout=30)
        assert done, "the runner did not stop"
        sent = len(sandbox.requests)
        await asyncio.sleep(1.0)
        settled = len(sandbox.requests)
        await asyncio.sleep(1.0)
        assert len(sandbox.requests) == settled, "calls still going out two seconds after the stop"
        outcome = "cancelled" if run.cancelled() else run.result()
        return settled - sent, outcome


def test_a_cancelled_run_sends_nothing_more(whatsapp_connection: Any) -> None:
    # A trigger the triggerer cancels (its task cleared, the trigger moved) must not leave its
    # numbers' conversations going on in the background: another triggerer may run them again.
    later, outcome = asyncio.run(calls_after_stop(whatsapp_connection, cancel=True, deadline=None))
    assert outcome == "cancelled"
    # At most the one call of its one lane that was on the wire when it was cancelled.
    assert later <= 1


def test_the_deadline_stops_the_run_and_reports_what_it_interrupted(whatsapp_connection: Any) -> None:
    # Every step of a number to the sandbox takes a little while: a deadline a moment away ends
    # the run with most of its numbers unstarted or interrupted, each reported, none lost.
    from airflow_provider_whatsapp.sandbox import Fault

    whatsapp_connection.inject(Fault.delay(0.2), method="POST", count=NUMBERS * 4)
    later, report = asyncio.run(calls_after_stop(whatsapp_connection, cancel=False, deadline=time.time() + 1.0))
    assert later == 0
    assert len(report["numbers"]) == NUMBERS
    interrupted = [entry for entry in report["numbers"] if "interrupted" in entry["result"]]
    assert interrupted, report["counts"]
    assert all(entry["retry"] for entry in interrupted)


# Graph asks for the new verification long after the first; the sandbox's cooldown between two
# code requests would refuse the second at once.
@pytest.mark.whatsapp_sandbox(code_request_cooldown=0.0)
@pytest.mark.parametrize("with_codes", [True, False], ids=["code source", "a person enters the code"])
def test_a_number_graph_wants_verified_again_goes_back_to_the_code_step(
    whatsapp_connection: Any, with_codes: bool
) -> None:
    # 133006 at register: the way forward is a new code, verified, then register again; once.
    from airflow_provider_whatsapp.sandbox import Fault
    from airflow_provider_whatsapp.sandbox.client import verification_code_for

    sandbox = whatsapp_connection
    sandbox.inject(Fault.graph_error(133006, message="Phone number needs to be verified again"), path=r"/register$")

    async def run() -> dict[str, Any]:
        async with WhatsAppBusinessAsyncHook() as hook:
            runner = OnboardingRunner(hook, pin="123456", code_source=verification_code_for if with_codes else None)
            row = {"cc": "1", "phone_number": "5550140001", "verified_name": "Acme Again"}
            if not with_codes:
                # A person entered the first code: the number starts at register.
                node = await hook.converse(
                    calls.create_or_find_phone_number(sandbox.default_waba_id, "1", "5550140001", "Acme Again")
                )
                number_id = str(node[0]["id"])
                sandbox.set_fields(number_id, code_verification_status="VERIFIED")
            return await asyncio.wait_for(runner.run([row]), timeout=60)

    report = asyncio.run(run())
    [entry] = report["numbers"]
    requests_for = lambda step: len(sandbox.requests_to("POST", rf"/{step}$"))  # noqa: E731
    assert entry["result"].get("verified_again") is True, entry
    assert "error" not in entry["result"], entry
    if with_codes:
        assert entry["outcome"] == "onboarded", entry
        # The code step twice (created in this run, then again after the 133006), register twice.
        assert (requests_for("request_code"), requests_for("verify_code"), requests_for("register")) == (2, 2, 2)
    else:
        # Back at the code step, waiting for a person's code: not failed, its code requested.
        assert entry["outcome"] != "onboarded" and entry["result"]["code_requested"] is True, entry
        assert (requests_for("request_code"), requests_for("register")) == (1, 1)


@pytest.mark.whatsapp_sandbox(code_request_cooldown=0.0)
def test_a_second_133006_is_the_numbers_error_with_its_way_forward(whatsapp_connection: Any) -> None:
    from airflow_provider_whatsapp.exceptions import WAY_FORWARD
    from airflow_provider_whatsapp.sandbox import Fault
    from airflow_provider_whatsapp.sandbox.client import verification_code_for

    sandbox = whatsapp_connection
    sandbox.inject(Fault.graph_error(133006, message="Verify again"), count=2, path=r"/register$")

    async def run() -> dict[str, Any]:
        async with WhatsAppBusinessAsyncHook() as hook:
            runner = OnboardingRunner(hook, pin="123456", code_source=verification_code_for)
            row = {"cc": "1", "phone_number": "5550140002", "verified_name": "Acme Twice"}
            return await asyncio.wait_for(runner.run([row]), timeout=60)

    [entry] = asyncio.run(run())["numbers"]
    result = entry["result"]
    assert result["failed_step"] == "register" and result["error"]["code"] == 133006, entry
    assert result["error"]["way_forward"] == WAY_FORWARD[133006]
    assert len(sandbox.requests_to("POST", r"/register$")) == 2
