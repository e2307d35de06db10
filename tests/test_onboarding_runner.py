"""The bulk onboarding runner stops when it is told to: cancelled by the triggerer, or at its deadline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

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
