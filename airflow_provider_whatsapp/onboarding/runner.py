"""Many numbers onboarded at once in one event loop, each WABA at the pace of its own budget.

This is what the onboarding trigger runs in the triggerer (and the onboarding operator in its
worker when it is not deferrable). :class:`OnboardingRunner` plans from one list read per WABA
(:func:`~airflow_provider_whatsapp.onboarding.plan.plan_onboarding`), runs each planned number's
conversation (:func:`~airflow_provider_whatsapp.onboarding.conversation.onboard_number`) with a
few numbers of each WABA at a time, and ends with the report: for every input row what Graph
holds, read again for the WABAs whose numbers did not all finish. Waiting for a spent budget is
the exchange core's pacing: it holds only that WABA's calls, so one throttled WABA never slows
the others, and in the triggerer it holds no worker slot.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from airflow_provider_whatsapp.exceptions import (
    GraphAPIError,
    GraphPermanentError,
    InvalidInputError,
    recorded_as,
    retry_may_cure,
)
from airflow_provider_whatsapp.onboarding.conversation import CodeRequest, NeedCode, onboard_number
from airflow_provider_whatsapp.onboarding.plan import (
    NOT_CREATED,
    NOT_REGISTERED,
    ONBOARDED,
    PROGRESS_FIELDS,
    UNKNOWN,
    by_digits,
    number_digits,
    plan_onboarding,
    readable_waba,
    waba_of,
)
from airflow_provider_whatsapp.onboarding.report import report_onboarding

log = logging.getLogger(__name__)

#: Numbers of one WABA onboarded at once by default: enough to hide each call's round trip,
#: few enough that a budget running out leaves few numbers half done.
DEFAULT_NUMBERS_PER_WABA = 4
#: WABAs whose list is read at once.
PARALLEL_LIST_READS = 8
# A progress line every this many seconds while numbers are being onboarded.
PROGRESS_EVERY = 30.0
#: Outcomes that are no further step for this run: nothing a retry of the task would change.
SETTLED_OUTCOMES = frozenset({ONBOARDED})
INTERRUPTED = "the run's deadline passed before this number finished"

#: Answers a code request: the code, or ``None`` (sync or async).
CodeSource = Callable[[CodeRequest], Any]


class AsyncGraph(Protocol):
    """What the runner needs of :class:`~airflow_provider_whatsapp.hooks.whatsapp_async.WhatsAppBusinessAsyncHook`."""

    async def asettings(self) -> Any: ...

    async def list_phone_numbers(self, waba_id: str, fields: Any = ...) -> list[dict[str, Any]]: ...

    async def converse(self, conversation: Any, answer: Any = ...) -> Any: ...


class OnboardingRunner:
    """
    Onboard many numbers, of one WABA or many, in one event loop; return the report.

    :param hook: the async hook the calls go through (its connection's budgets pace them).
    :param pin: the two-step PIN the numbers are registered with.
    :param code_source: answers each number's code request once the code is sent; ``None``: a
        number stops once its code is requested (a person completes it).
    :param numbers_per_waba: numbers of one WABA onboarded at once.
    :param deadline: ``time.time()`` by which the run stops starting calls and reports; ``None``
        for none.
    :param data_localization_region: local storage the numbers are registered with, if any.
    """

    def __init__(
        self,
        hook: AsyncGraph,
        *,
        pin: str,
        code_source: CodeSource | None = None,
        numbers_per_waba: int = DEFAULT_NUMBERS_PER_WABA,
        deadline: float | None = None,
        data_localization_region: str | None = None,
    ) -> None:
        self.hook = hook
        self.pin = pin
        self.code_source = code_source
        self.numbers_per_waba = max(1, int(numbers_per_waba))
        self.deadline = deadline
        self.data_localization_region = data_localization_region
        self._done: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(numbers_per_waba={self.numbers_per_waba}, codes={self.code_source is not None})"

    async def run(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """
        Plan, onboard and report ``rows``; see :func:`~airflow_provider_whatsapp.onboarding.report.report_onboarding`.

        Each entry of the report's ``numbers`` also has ``row`` (its index in ``rows``), ``key``
        (the row's, if it gave one), ``result`` (what its steps did) and ``retry``: whether a
        later try may get further (a transient or throttled failure, Graph unreadable, the
        deadline), as against an outcome that stands (onboarded, a Graph refusal, an input rule,
        a code to enter).
        """
        settings = await self.hook.asettings()
        default_waba_id = settings.waba_id
        holdings = await self._read_wabas(self._wabas_of(rows, default_waba_id))
        numbers = plan_onboarding(rows, default_waba_id, _reader(holdings), unreadable=GraphAPIError)
        results: list[dict[str, Any]] = [{} for _ in numbers]
        started = [index for index, number in enumerate(numbers) if number.get("start")]
        await self._onboard(numbers, started, results, settings.host)
        # Rows that broke an input rule never reached Graph: nothing to read again for them.
        unfinished = {
            str(numbers[index]["waba_id"])
            for index in started
            if not results[index].get("registered_id")
            and not recorded_as(results[index].get("error"), InvalidInputError)
        }
        again = await self._read_wabas(unfinished & set(holdings))
        report = report_onboarding(numbers, results, _reader(again))
        for planned, entry, result in zip(numbers, report["numbers"], results, strict=True):
            entry.update(row=planned["row"], result=result, retry=_retry(entry, result))
            if "key" in planned:
                entry["key"] = planned["key"]
        report["retry"] = sum(bool(entry["retry"]) for entry in report["numbers"])
        return report

    @staticmethod
    def _wabas_of(rows: Sequence[Mapping[str, Any]], default_waba_id: str | None) -> set[str]:
        wabas = set()
        for row in rows:
            readable = readable_waba(waba_of(row, default_waba_id))
            if readable is not None and number_digits(row.get("cc"), row.get("phone_number")) is not None:
                wabas.add(readable)
        return wabas

    async def _read_wabas(self, wabas: set[str]) -> dict[str, dict[str, dict[str, Any]] | GraphAPIError]:
        gate = asyncio.Semaphore(PARALLEL_LIST_READS)

        async def read(waba_id: str) -> dict[str, dict[str, Any]] | GraphAPIError:
            async with gate:
                try:
                    return by_digits(await self.hook.list_phone_numbers(waba_id, fields=list(PROGRESS_FIELDS)))
                except GraphAPIError as error:
                    log.warning("Could not read the numbers of WABA %s: %s", waba_id, error)
                    return error

        ordered = sorted(wabas)
        return dict(zip(ordered, await asyncio.gather(*(read(waba) for waba in ordered)), strict=True))

    async def _onboard(
        self, numbers: list[dict[str, Any]], started: list[int], results: list[dict[str, Any]], host: str
    ) -> None:
        lanes: dict[str, list[int]] = {}
        for index in started:
            lanes.setdefault(str(numbers[index].get("waba_id")), []).append(index)
        if not lanes:
            return

        async def lane(indexes: list[int]) -> None:
            queue = iter(indexes)

            async def worker() -> None:
                for index in queue:
                    results[index] = await self._onboard_one(numbers[index], host)
                    self._done[_progress_label(results[index])] += 1

            await asyncio.gather(*(worker() for _ in range(min(self.numbers_per_waba, len(indexes)))))

        log.info(
            "Onboarding %d numbers of %d WABAs, %d at a time per WABA", len(started), len(lanes), self.numbers_per_waba
        )
        work = asyncio.ensure_future(asyncio.gather(*(lane(indexes) for indexes in lanes.values())))
        progress = asyncio.ensure_future(self._report_progress(len(started)))
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # arrives as its inner future finishes, and a trigger the triggerer cancels must stop
            # (with its work, which awaiting it here cancels too).
            async with asyncio.timeout(self._time_left()):
                await work
        except TimeoutError:
            for index in started:
                if not results[index]:
                    results[index] = {"interrupted": INTERRUPTED}
            log.warning("The deadline passed: %d numbers not finished", sum("interrupted" in r for r in results))
        finally:
            progress.cancel()
        log.info("Onboarding done: %s", dict(self._done))

    async def _onboard_one(self, number: Mapping[str, Any], host: str) -> dict[str, Any]:
        conversation = onboard_number(
            number,
            pin=self.pin,
            graph_host=host,
            codes=self.code_source is not None,
            data_localization_region=self.data_localization_region,
        )
        result: dict[str, Any] = await self.hook.converse(conversation, self._answer)
        return result

    async def _answer(self, need: Any) -> str | None:
        if not isinstance(need, NeedCode) or self.code_source is None:
            raise TypeError(f"the onboarding conversation asked for {type(need).__name__}")
        try:
            if inspect.iscoroutinefunction(self.code_source):
                code = await self.code_source(need.request)
            else:
                code = await asyncio.to_thread(self.code_source, need.request)
        except Exception as error:  # a user's code source: anything it raises is its own
            log.warning(
                "The code source failed for %s: %s: %s", need.request.phone_number_id, type(error).__name__, error
            )
            return None
        return None if code in (None, "") else str(code)

    async def _report_progress(self, total: int) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            log.info("Onboarding: %d of %d numbers done so far: %s", sum(self._done.values()), total, dict(self._done))

    def _time_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.time())


def _reader(holdings: Mapping[str, Any]) -> Callable[[str], dict[str, dict[str, Any]]]:
    def read(waba_id: str) -> dict[str, dict[str, Any]]:
        held = holdings.get(waba_id)
        if held is None:
            raise GraphPermanentError(f"WABA {waba_id} was not read")
        if isinstance(held, GraphAPIError):
            raise held
        return dict(held)

    return read


def _progress_label(result: Mapping[str, Any]) -> str:
    if result.get("registered_id"):
        return "registered"
    if result.get("error"):
        return f"failed at {result.get('failed_step')}"
    if result.get("code_requested"):
        return "code requested"
    return "left as it was"


def _retry(entry: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
    """Whether a later try of the run may get this number further than this one did."""
    if entry["outcome"] in SETTLED_OUTCOMES:
        return False
    if result.get("interrupted"):
        return True
    error = entry.get("error") or result.get("error")
    if error:
        return retry_may_cure(error)
    if result.get("code_requested") or result.get("note"):
        return False
    # Unknown, or not finished without an error: only a lost call or a killed run does that.
    return entry["outcome"] in (UNKNOWN, NOT_CREATED, NOT_REGISTERED) and bool(entry.get("started_at"))
