"""The deployment's shared view of the budgets: two processes' stores over one backend, driven by hand.

Each "process" is a :class:`UsageStore` with a :class:`SharedView` of its own (its own name as
lease holder and writer) over one backend; their exchanges are driven with scripted answers, the
shared steps carried out against the backend, as the hooks' drivers do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from email.utils import formatdate
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import GraphThrottledError
from airflow_provider_whatsapp.hooks import shared_view
from airflow_provider_whatsapp.hooks.budgets import (
    FUTURE_TOLERANCE,
    ProcessBudgets,
    SharedReading,
    VariableBudgets,
    budget_name,
    parse_reading,
)
from airflow_provider_whatsapp.hooks.exchange import GraphExchange, RawResponse, Send, Sleep
from airflow_provider_whatsapp.hooks.graph import GraphRetryPolicy, GraphSettings, build_request
from airflow_provider_whatsapp.hooks.shared_view import Share, SharedView, run_share
from airflow_provider_whatsapp.hooks.usage import CallScope, ConnectionKey, UsageReading, UsageStore
from airflow_provider_whatsapp.hooks.waiters import waiter_name

WABA = "102290129340398"
SETTINGS = GraphSettings(token="EAAunit-shared-5b1c")
CONN = ConnectionKey(SETTINGS.host, "whatsapp_default")
POLICY = GraphRetryPolicy(max_attempts=3, exhausted_wait=30.0, max_throttle_wait=600.0)
LOG = logging.getLogger("test_shared_budgets")


def no_wait(seconds: float) -> None:
    """The lease's settle, with no rival's write to wait for in one process."""


class Variables:
    """A dict behind Airflow's ``Variable`` interface, shared by the test's "processes"."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.lock = threading.Lock()
        self.fail = False

    def get(self, key: str, default: Any, /) -> Any:
        if self.fail:
            raise ConnectionError("the API server is down")
        with self.lock:
            return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self.fail:
            raise ConnectionError("the API server is down")
        with self.lock:
            self.values[key] = value


class Process:
    """One task process: its own store and its own view of the shared budgets."""

    def __init__(self, name: str, variables: Variables, waiter: str | None = None, holds_place: bool = False) -> None:
        self.store = UsageStore()
        self.backend = VariableBudgets(variables, sleep=no_wait, holder=name)
        self.view = SharedView(self.backend, refresh=0.0)
        self.sleeps: list[float] = []
        self.steps: list[str] = []
        self.waiter = waiter
        self.holds_place = holds_place

    def exchange(self) -> GraphExchange:
        return GraphExchange(
            build_request(SETTINGS, "GET", f"{WABA}/phone_numbers"),
            policy=POLICY,
            connection=CONN,
            scope=CallScope(waba_id=WABA),
            log=LOG,
            shared=self.view,
            usage_store=self.store,
            waiter=self.waiter,
            holds_place=self.holds_place,
        )

    def call(self, answers: list[RawResponse], defer_over: float | None = None) -> Any:
        """Drive one call to its end; ``defer_over``: stop at a budget wait longer (as an operator defers)."""
        steps = self.exchange().steps()
        reply: Any = None
        try:
            for _ in range(1000):
                action = steps.send(reply)
                self.steps.append(action.op if isinstance(action, Share) else type(action).__name__)
                if isinstance(action, Share):
                    reply = run_share(self.backend, action)
                elif isinstance(action, Sleep):
                    if defer_over is not None and action.for_budget and max(action.seconds, action.held) > defer_over:
                        return "deferred"
                    self.sleeps.append(action.seconds)
                    reply = None
                else:
                    assert isinstance(action, Send)
                    reply = answers.pop(0)
        except StopIteration as done:
            return done.value
        except Exception as error:
            return error
        raise AssertionError("the exchange did not end")


def answer(
    percent: float, regain_minutes: float = 0, *, code: int | None = None, date: float | None = None
) -> RawResponse:
    usage = {WABA: [{"type": "whatsapp_business_management", "call_count": percent, "total_cputime": 1,
                     "total_time": 1, "estimated_time_to_regain_access": regain_minutes}]}  # fmt: skip
    headers = {"X-Business-Use-Case-Usage": json.dumps(usage), "Date": formatdate(date or time.time(), usegmt=True)}
    if code is not None:
        body = {"error": {"code": code, "message": "too many calls", "fbtrace_id": "Ashared"}}
        return RawResponse(400, headers, json.dumps(body).encode())
    return RawResponse(200, headers, json.dumps({"data": []}).encode())


@pytest.fixture
def variables() -> Variables:
    return Variables()


def test_what_one_process_learns_holds_the_others_back(variables: Variables) -> None:
    first, second = Process("worker-1:11", variables), Process("worker-2:22", variables)
    # The first process's call spends the WABA's budget: Graph says so, and when it is regained.
    assert first.call([answer(100, regain_minutes=2)]) == {"data": []}
    # The second, a fresh process, has never heard of this WABA: before its first call it reads
    # what the first shared, and waits the regain time instead of being refused.
    assert second.call([answer(3)]) == {"data": []}
    assert len(second.sleeps) == 1 and 115 < second.sleeps[0] <= 2 * 60 + 2, second.sleeps
    reading = second.store.business_reading(CONN, WABA)
    assert reading is not None and reading.percent == 3, "its own answer is the newest reading now"


def test_what_a_call_costs_once_learnt_spares_later_processes_a_false_end(variables: Variables) -> None:
    key = (CONN, WABA)
    early = Process("worker-1:11", variables)
    # Its first reading (1 %) says one call costs at most two points: worth sharing, though far
    # from the end.
    early.call([answer(0)])
    assert early.store.per_call(key) == 2.0
    # A process that starts once half the budget is spent, its own first reading 50: taken alone,
    # one call might have cost all of it, and the budget would look one call from its end.
    late = Process("worker-2:22", variables)
    late.call([answer(50)])
    assert late.store.per_call(key) == 2.0
    assert late.view.leases_needed(late.store, (key,)) == ()
    assert not late.view.holds(key), "no lease taken far from the end"
    # Knowing less than the store, it writes nothing back that would undo what was learnt.
    stored = parse_reading(variables.values[late.view.name_of(key)], time.time())
    assert stored is not None and stored.per_call == 2.0


def test_near_the_end_one_process_sends_at_a_time(variables: Variables) -> None:
    first, second = Process("worker-1:11", variables), Process("worker-2:22", variables)
    first.call([answer(90)])
    first.call([answer(96)])
    key = (CONN, WABA)
    # The first holds the budget's lease: it has a call under way.
    assert first.backend.claim(first.view.name_of(key), 30.0)
    exchange = GraphExchange(
        build_request(SETTINGS, "GET", f"{WABA}/phone_numbers"),
        policy=POLICY,
        connection=CONN,
        scope=CallScope(waba_id=WABA),
        log=LOG,
        shared=second.view,
        usage_store=second.store,
    )
    steps, reply, held = exchange.steps(), None, []
    for _ in range(100):
        action = steps.send(reply)
        if isinstance(action, Send):
            break
        if isinstance(action, Sleep):
            held.append(action.seconds)
            if len(held) == 3:
                # The first's call was answered; it hands the lease back.
                first.backend.release(first.view.name_of(key))
        reply = run_share(second.backend, action) if isinstance(action, Share) else None
    else:
        raise AssertionError("the second call was never sent")
    # It waited while the first held the lease, and was sent once it was handed back.
    assert len(held) >= 3
    assert second.backend.claim(second.view.name_of(key), 30.0), "the second holds the lease now"


def test_a_lease_has_one_holder_when_two_claim_it_at_once(variables: Variables) -> None:
    name = "whatsapp_budget.x.waba"
    # B checked before A wrote, and writes while A waits for a rival's write to land: each reads
    # the lease back after its wait, and only the last writer finds its own name.
    late: list[bool] = []
    b = VariableBudgets(variables, sleep=no_wait, holder="process-b")

    def a_waits(seconds: float) -> None:
        if not late:  # the race, on A's first claim only
            variables.set(f"{name}.lease", json.dumps({"holder": "process-b", "until": time.time() + 30}))
            late.append(b.claim(name, 30.0))

    a = VariableBudgets(variables, sleep=a_waits, holder="process-a")
    assert a.claim(name, 30.0) is False
    assert late == [True]
    # A claim while a lease is held by another is refused at once, without writing.
    assert a.claim(name, 30.0) is False
    b.release(name)
    assert a.claim(name, 30.0) is True


class SlowVariables(Variables):
    """Variables whose writes take ``write_takes`` seconds (a busy API server)."""

    def __init__(self, write_takes: float) -> None:
        super().__init__()
        self.write_takes = write_takes

    def set(self, key: str, value: Any) -> None:
        time.sleep(self.write_takes)
        super().set(key, value)


def test_a_claim_whose_write_was_slow_does_not_take_the_lease() -> None:
    # A rival may have read the lease free while this write was on its way, and written after the
    # read back: a claim that took longer than the rivals' settle is not sure of the lease.
    variables = SlowVariables(write_takes=0.06)
    slow = VariableBudgets(variables, slowest_write=0.05, settle=0.07, sleep=no_wait, holder="slow")
    assert slow.claim("whatsapp_budget.x.waba", 30.0) is False
    variables.write_takes = 0.0
    quick = VariableBudgets(variables, slowest_write=0.05, settle=0.07, sleep=no_wait, holder="quick")
    # What the slow claim wrote is a lease like any other: it runs out by itself.
    assert quick.claim("whatsapp_budget.x.waba", 30.0) is False
    variables.values["whatsapp_budget.x.waba.lease"] = json.dumps({"holder": "slow", "until": time.time() - 1})
    assert quick.claim("whatsapp_budget.x.waba", 30.0) is True


def test_a_slow_step_against_the_store_is_logged(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    # A call the store holds back says so: otherwise it waits without a word in its task's log.
    monkeypatch.setattr(shared_view, "SLOW_SHARE", 0.05)
    variables = SlowVariables(write_takes=0.06)
    backend = VariableBudgets(variables, sleep=no_wait, holder="slow")
    reading = SharedReading(10.0, 0.0, time.time(), "writer", 1.0, "slow")
    with caplog.at_level(logging.INFO, logger=shared_view.__name__):
        run_share(backend, Share("write", "whatsapp_budget.x.waba", reading=reading))
        run_share(backend, Share("read", "whatsapp_budget.x.waba"))
    [line] = [record.getMessage() for record in caplog.records if record.name == shared_view.__name__]
    assert (
        line.startswith("The shared budgets in Airflow Variables took 0.") and "to write whatsapp_budget.x.waba" in line
    )


def test_a_settle_no_longer_than_the_slowest_write_is_refused() -> None:
    with pytest.raises(ValueError, match="settle"):
        VariableBudgets(Variables(), slowest_write=1.0, settle=1.0)


def test_a_holder_renews_its_lease_without_waiting_for_rivals(variables: Variables) -> None:
    waits: list[float] = []
    holder = VariableBudgets(variables, sleep=waits.append, holder="holder")
    assert holder.claim("whatsapp_budget.x.waba", 30.0) and waits == [holder.settle]
    # Still its own: written again at once, with no read back (nobody could read it free).
    assert holder.claim("whatsapp_budget.x.waba", 30.0) and waits == [holder.settle]


def test_a_process_taking_the_lease_over_reads_the_last_holders_count_first(variables: Variables) -> None:
    process = Process("worker-2:22", variables)
    for percent in (84, 87, 90):
        process.call([answer(percent)])
    for share in process.view.release_all():
        run_share(process.backend, share)
    name = process.view.name_of((CONN, WABA))
    news: list[str] = []

    def last_holders_count_lands(seconds: float) -> None:
        # While this claim settles, the last holder's answer to its last call is shared: spent.
        if not news:
            news.append(SharedReading(100.0, time.time() + 60, time.time(), "writer", 3.0, "worker-1:11").to_json())
            variables.values[name] = news[0]

    process.backend.sleep = last_holders_count_lands
    # Its own 90 % leaves three calls; the count it reads once it holds the lease leaves none.
    assert process.call([answer(100, regain_minutes=1)]) == {"data": []}
    assert news, "the lease was not taken over"
    assert process.sleeps and max(process.sleeps) > 50, process.sleeps


def entry(**changed: Any) -> str:
    """A shared entry that is sound but for what ``changed`` says."""
    return json.dumps(
        {"percent": 90, "regain_at": 0, "observed_at": time.time(), "clock": "writer", "per_call": 1, "writer": "x"}
        | changed
    )


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        json.dumps({"percent": "a lot"}),
        entry(clock="moon"),
        entry(percent=1e9),
        # Written when the module is collected: a day ahead stays in the future however long the
        # session runs before this test.
        entry(observed_at=time.time() + FUTURE_TOLERANCE + 86400),
        entry(observed_at=time.time() - 7200),
        entry(percent=float("nan")),
    ],
    ids=["not-json", "not-object", "bad-type", "bad-clock", "absurd", "future", "too-old", "nan"],
)
def test_a_bad_entry_is_ignored_and_counted_never_a_crash(variables: Variables, raw: str) -> None:
    process = Process("worker-1:11", variables)
    variables.values[process.view.name_of((CONN, WABA))] = raw
    assert process.call([answer(5)]) == {"data": []}
    assert process.sleeps == []
    assert sum(process.backend.ignored.values()) == 1


def test_an_entry_regaining_far_in_the_future_never_waits_past_max_throttle_wait(variables: Variables) -> None:
    process = Process("worker-1:11", variables)
    far = SharedReading(100.0, time.time() + 86400 * 30, time.time(), "writer", 3.0, "elsewhere")
    variables.values[process.view.name_of((CONN, WABA))] = far.to_json()
    process.call([answer(5)])
    assert process.sleeps and max(process.sleeps) <= POLICY.max_throttle_wait


def test_a_task_that_deferred_for_the_budget_finds_its_call_left_for_it(variables: Variables) -> None:
    triggerer = Process("triggerer:7", variables)
    for percent in (84, 87, 90):
        # Rising by whole calls: it learns what one call costs.
        triggerer.call([answer(percent)])
    triggerer.call([answer(100, regain_minutes=1)])
    # A task meets the spent budget: it takes a place among the waiters and defers.
    task = Process("worker-1:11", variables, waiter="task-a")
    assert task.call([], defer_over=30.0) == "deferred"
    name = task.view.name_of((CONN, WABA))
    assert task.backend.waiting(name) == {"task-a": 1}
    # The budget is regained; the triggerer, which never left, spends it up to the last call...
    for percent in (3, 90, 93):
        assert triggerer.call([answer(percent)]) == {"data": []}
    steps, reply = triggerer.exchange().steps(), None
    for _ in range(20):
        action = steps.send(reply)
        assert not isinstance(action, Send), "the triggerer took the call the waiting task was owed"
        reply = run_share(triggerer.backend, action) if isinstance(action, Share) else None
    # ...and the task, back as another process under the same waiter's name, gets it.
    back = Process("worker-2:22", variables, waiter="task-a", holds_place=True)
    assert back.call([answer(100, regain_minutes=1)]) == {"data": []}
    # Held back only by the slow-down near the end, not by its own place.
    assert all(seconds <= POLICY.slowdown_wait for seconds in back.sleeps), back.sleeps
    assert back.backend.waiting(name) == {}, "its place is given up once its call goes out"


def test_waiters_are_served_in_turn_and_never_hold_each_other_back(variables: Variables) -> None:
    triggerer = Process("triggerer:7", variables)
    for percent in (84, 87, 90, 93, 96):
        triggerer.call([answer(percent)])
    for share in triggerer.view.release_all():
        run_share(triggerer.backend, share)
    name = triggerer.view.name_of((CONN, WABA))
    # Two tasks came back from their deferrals; one call is left, and task-a took its place first.
    triggerer.backend.reserve(name, "task-a", 1, 60.0)
    time.sleep(0.01)
    triggerer.backend.reserve(name, "task-b", 1, 60.0)
    triggerer.backend.reserve(name, "task-a", 1, 60.0)  # taken again: its turn is kept
    assert list(triggerer.backend.waiting(name)) == ["task-a", "task-b"]
    later = Process("worker-2:22", variables, waiter="task-b", holds_place=True)
    # task-b leaves the last call to task-a, ahead of it, and defers rather than hold its slot...
    assert later.call([], defer_over=5.0) == "deferred"
    first = Process("worker-1:11", variables, waiter="task-a", holds_place=True)
    # ...and task-a, whose place task-b's does not hold back, makes its call at once.
    assert first.call([answer(100, regain_minutes=1)]) == {"data": []}
    assert all(seconds <= POLICY.slowdown_wait for seconds in first.sleeps), first.sleeps
    assert list(first.backend.waiting(name)) == ["task-b"]


def near_end_under_the_triggerers_lease(variables: Variables) -> tuple[Process, str]:
    """A budget with about a dozen calls left, the triggerer sending under its lease."""
    triggerer = Process("triggerer:7", variables)
    for percent in (84, 87, 90, 50):
        triggerer.call([answer(percent)])
    name = triggerer.view.name_of((CONN, WABA))
    assert triggerer.view.holds((CONN, WABA)), "near the end, the triggerer sends under the lease"
    return triggerer, name


def test_a_waiter_the_others_counted_goes_without_waiting_for_the_lease(variables: Variables) -> None:
    triggerer, name = near_end_under_the_triggerers_lease(variables)
    triggerer.backend.reserve(name, "task-a", 1, 60.0)
    back = Process("worker-1:11", variables, waiter="task-a", holds_place=True)
    # The others leave its call to it: it goes while the triggerer still holds the lease...
    assert back.call([answer(53)]) == {"data": []}
    assert "claim" not in back.steps and not back.sleeps, back.steps
    # ...and keeps its place until its answer is shared, so nobody takes its call meanwhile.
    assert back.steps.index("unreserve") > back.steps.index("write"), back.steps
    assert back.backend.waiting(name) == {}


def test_a_waiter_behind_too_many_others_waits_for_the_lease(variables: Variables) -> None:
    triggerer, name = near_end_under_the_triggerers_lease(variables)
    for ahead in range(10):
        triggerer.backend.reserve(name, f"task-{ahead}", 1, 60.0)
    triggerer.backend.reserve(name, "task-z", 1, 60.0)
    back = Process("worker-1:11", variables, waiter="task-z", holds_place=True)
    # The waiters ahead take nearly all that is left: its call waits for the lease, not sent.
    assert back.call([], defer_over=1.0) == "deferred"
    assert "claim" in back.steps and "Send" not in back.steps, back.steps


def test_a_place_just_taken_is_not_yet_counted_by_the_others(variables: Variables) -> None:
    triggerer, name = near_end_under_the_triggerers_lease(variables)
    triggerer.backend.reserve(name, "task-a", 1, 60.0)
    # The same waiter's name, but no deferral behind it: the others may not have read its place.
    fresh = Process("worker-1:11", variables, waiter="task-a")
    assert fresh.call([], defer_over=1.0) == "deferred"
    assert "claim" in fresh.steps and "Send" not in fresh.steps, fresh.steps


def test_a_waiter_keeps_one_turn_on_all_its_budgets_when_a_place_was_lost(variables: Variables) -> None:
    first = waiter_name()
    time.sleep(0.01)
    second = waiter_name()
    backend = VariableBudgets(variables, sleep=no_wait)
    view, store = SharedView(backend, refresh=0.0), UsageStore()
    app, waba = CONN, (CONN, WABA)
    for key in (app, waba):
        store.merge_reading(key, UsageReading(96.0, 0.0, time.monotonic(), "shared"), per_call=3.0)
    # Two writes at once lost the first's place on the WABA's budget; it took it again later.
    backend.reserve(view.name_of(app), first, 1, 60.0)
    backend.reserve(view.name_of(app), second, 1, 60.0)
    backend.reserve(view.name_of(waba), second, 1, 60.0)

    def pull() -> None:
        steps, reply = view.pull(store, (app, waba)), None
        with contextlib.suppress(StopIteration):
            for _ in range(10):
                reply = run_share(backend, steps.send(reply))

    pull()
    # Not on the WABA's list, the first still waits for nobody there: the second is behind it.
    assert [view.waiting_for(key, first) for key in (app, waba)] == [0, 0]
    assert [view.waiting_for(key, second) for key in (app, waba)] == [1, 0]
    backend.reserve(view.name_of(waba), first, 1, 60.0)
    pull()
    # Back on the list, in its turn: the two queues are in one order, nobody waits for a waiter
    # that waits for it.
    assert list(backend.waiting(view.name_of(app))) == list(backend.waiting(view.name_of(waba))) == [first, second]
    assert [view.waiting_for(key, first) for key in (app, waba)] == [0, 0]
    assert [view.waiting_for(key, second) for key in (app, waba)] == [1, 1]
    assert [view.waiting_for(key, None) for key in (app, waba)] == [2, 2]


class OverwrittenOnce(Variables):
    """A rival's read-modify-write of the waiting list that read before the next write and
    writes right after it, undoing it once."""

    def __init__(self, rival: str) -> None:
        super().__init__()
        self.rival = rival

    def set(self, key: str, value: Any) -> None:
        before = self.values.get(key)
        super().set(key, value)
        if key.endswith(".waiting") and self.rival:
            places = json.loads(before) if before else {}
            places[self.rival], self.rival = [1, time.time() + 60.0, time.time()], ""
            super().set(key, json.dumps(places))


def test_a_place_undone_by_a_rivals_write_is_taken_again() -> None:
    variables = OverwrittenOnce(rival="task-b")
    backend = VariableBudgets(variables, sleep=no_wait)
    backend.reserve("whatsapp_budget.x.waba", "task-a", 1, 60.0)
    # Read back after the rival's write landed, the place was gone: taken again, beside the rival's.
    assert backend.waiting("whatsapp_budget.x.waba") == {"task-b": 1, "task-a": 1}


def test_a_place_given_up_that_a_rivals_write_brought_back_is_given_up_again() -> None:
    variables = OverwrittenOnce(rival="")
    backend = VariableBudgets(variables, sleep=no_wait)
    backend.reserve("whatsapp_budget.x.waba", "task-a", 1, 60.0)
    # The rival read the list with task-a's place in it, and writes it back after task-a's call.
    variables.rival = "task-b"
    backend.unreserve("whatsapp_budget.x.waba", "task-a")
    # Read back, the place was there again: given up again, the rival's kept.
    assert backend.waiting("whatsapp_budget.x.waba") == {"task-b": 1}


def test_a_waiter_that_never_comes_back_holds_the_budget_only_for_a_while(variables: Variables) -> None:
    backend = VariableBudgets(variables, sleep=no_wait, holder="worker-1:11")
    backend.reserve("whatsapp_budget.x.waba", "task-a", 1, 0.05)
    assert backend.waiting("whatsapp_budget.x.waba") == {"task-a": 1}
    time.sleep(0.1)
    assert backend.waiting("whatsapp_budget.x.waba") == {}


@pytest.mark.parametrize(
    "raw", ["{", "[]", '{"task-a": "x"}', '{"task-a": [1000, 1e18]}', '{"task-a": [1, 1]}', '{"task-a": []}']
)
def test_a_bad_waiting_list_is_ignored(variables: Variables, raw: str) -> None:
    variables.values["whatsapp_budget.x.waba.waiting"] = raw
    backend = VariableBudgets(variables, sleep=no_wait)
    assert backend.waiting("whatsapp_budget.x.waba") == {}
    backend.reserve("whatsapp_budget.x.waba", "task-b", 1, 60.0)
    assert backend.waiting("whatsapp_budget.x.waba") == {"task-b": 1}


def test_two_connections_with_one_token_spend_one_budget() -> None:
    one, other = GraphSettings(token="EAAunit-one-4f1a"), GraphSettings(token="EAAunit-two-7c2e")
    assert one.app_fingerprint == GraphSettings(token="EAAunit-one-4f1a").app_fingerprint
    assert one.app_fingerprint != other.app_fingerprint
    assert "EAAunit" not in one.app_fingerprint and len(one.app_fingerprint) == 16


def test_two_hosts_with_one_token_are_two_budgets() -> None:
    assert budget_name("https://graph.facebook.com", "whatsapp_default", WABA) != budget_name(
        "https://graph.example.test", "whatsapp_default", WABA
    )
    assert budget_name("https://graph.facebook.com", "a", WABA) != budget_name("https://graph.facebook.com", "b", WABA)
    assert budget_name("https://graph.facebook.com", "a", None).endswith(".app")


def test_an_unreachable_store_degrades_to_the_process_view_with_one_warning(
    variables: Variables, caplog: pytest.LogCaptureFixture
) -> None:
    process = Process("worker-1:11", variables)
    variables.fail = True
    with caplog.at_level(logging.WARNING, logger="airflow_provider_whatsapp.hooks.budgets"):
        assert process.call([answer(100, regain_minutes=1)]) == {"data": []}
        assert process.call([answer(5)]) == {"data": []}
    # The process's own reading still paces it; the store is not asked again for a while.
    assert process.sleeps and process.sleeps[0] > 50
    assert process.backend.failures >= 1 and process.backend.down
    warnings = [r for r in caplog.records if "could not be" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_a_regain_time_in_graphs_clock_holds_on_a_machine_whose_clock_is_off(variables: Variables) -> None:
    writer, reader = Process("host-a:1", variables), Process("host-b:2", variables)
    graph_now = time.time() - 3600  # Graph's clock is an hour behind both machines'
    # The reader has measured its own offset to Graph from its own answers.
    reader.call([answer(1, date=graph_now)])
    writer.call([answer(100, regain_minutes=3, date=graph_now)])
    entry = parse_reading(variables.values[writer.view.name_of((CONN, WABA))], time.time())
    assert entry is not None and entry.clock == "graph" and abs(entry.regain_at - (graph_now + 180)) < 2
    reader.call([answer(2, date=graph_now)])
    assert reader.sleeps and 175 < reader.sleeps[-1] <= 3 * 60 + 2, reader.sleeps
    # A fresh process, with no answer of its own yet, goes by the writer's offset.
    fresh = Process("host-c:3", variables)
    fresh.call([answer(3, date=graph_now)])
    assert fresh.sleeps and 175 < fresh.sleeps[0] <= 3 * 60 + 2, fresh.sleeps


def test_a_throttle_without_a_header_is_shared_as_spent(variables: Variables) -> None:
    first, second = Process("worker-1:11", variables), Process("worker-2:22", variables)
    refusal = RawResponse(400, {}, json.dumps({"error": {"code": 80008, "message": "too many"}}).encode())
    result = first.call([refusal, refusal, refusal])
    assert isinstance(result, GraphThrottledError)
    second.call([answer(1)])
    assert second.sleeps and second.sleeps[0] >= POLICY.exhausted_wait - 1


def test_nothing_shared_means_every_process_alone() -> None:
    backend = ProcessBudgets()
    assert backend.read("x") is None and backend.claim("x", 1.0)


class CountingVariables(Variables):
    """Variables that count what the processes ask of them."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def get(self, key: str, default: Any, /) -> Any:
        self.asked += 1
        return super().get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.asked += 1
        super().set(key, value)


def test_near_the_end_a_process_holds_the_lease_for_its_calls_not_per_call() -> None:
    variables = CountingVariables()
    first = Process("worker-1:11", variables)
    first.view.refresh = 60.0
    key = (CONN, WABA)
    first.call([answer(80)])
    asked_before = variables.asked
    # Ten calls near the end, in the lease's time: the lease is asked for once (read, written,
    # read back), the budget read once after taking it over and never again (nobody else sends
    # under this lease), each reading written (whoever takes the lease over next starts from
    # it), the waiting list read at most twice.
    for percent in range(85, 95):
        assert first.call([answer(percent)]) == {"data": []}
    assert first.view.holds(key)
    assert variables.asked - asked_before <= 3 + 1 + 10 + 2, variables.asked - asked_before
    # Another process near the end waits for it: the lease is held.
    second = Process("worker-2:22", variables)
    assert not second.backend.claim(second.view.name_of(key), 5.0)
    # Spent: the lease is handed back, so whoever calls first after the regain time takes it.
    first.call([answer(100, regain_minutes=1)])
    assert not first.view.holds(key)
    assert second.backend.claim(second.view.name_of(key), 5.0)


def test_a_held_lease_is_renewed_before_it_runs_out(variables: Variables) -> None:
    first = Process("worker-1:11", variables)
    first.view.lease_seconds = 1.0
    first.call([answer(90)])
    first.call([answer(91)])
    key = (CONN, WABA)
    name = first.view.name_of(key)
    assert first.view.holds(key) is False, "less than the renewal margin left: asked again next call"
    lease = json.loads(variables.values[f"{name}.lease"])
    first.call([answer(92)])
    renewed = json.loads(variables.values[f"{name}.lease"])
    assert renewed["holder"] == "worker-1:11" and renewed["until"] > lease["until"]
