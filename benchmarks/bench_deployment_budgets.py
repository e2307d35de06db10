"""Benchmark 8, rate limits across a deployment: 100 numbers on 5 WABAs, two of them on small
budgets, on the LocalExecutor deployment the e2e tests share (PostgreSQL, scheduler, API server,
triggerer; the Variables budget store).

The scenario of tests/e2e/test_deployment_budgets.py, made larger (``devtools/budget_scenario.py``):
the bulk DAG onboards 18 numbers on each of the 5 WABAs in the triggerer while 10 mapped create
tasks, each in a process of its own, create numbers on the first small-budget WABA. It runs twice
on fresh WABAs: first with no budget on any (the work without throttling: its worker slot-seconds
are the baseline), then with two WABAs at 30 calls a minute. Figures: the calls Graph refused, the
small-budget WABAs' first to last call against the least their budgets allow, and the worker
slot-seconds against the run without budgets. What the shared store adds to a call is benchmark 7.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from benchmarks.common import Result, run_from_command_line

NAME = "8. budgets across a deployment"
WALL_TARGET = 1.15
SLOT_TARGET = 1.5
WABAS = 5
SMALL_BUDGET_WABAS = 2
RUN_TIMEOUT = 1200.0


def run(quick: bool = False) -> Result:
    from benchmarks.bench_throughput import bulk_rows, least_time
    from devtools.budget_scenario import CONTENTION, deferrals, run_scenario
    from tests.e2e.shared_deployment import BUDGETS_CONN_ID, RATE_WINDOW, shared_deployment

    result = Result(NAME)
    # Quick: one window, the budgets never bind; the scenario's code and its checks run all the same.
    budget, per_waba, creates_count = (30, 1, 2) if quick else (30, 18, 10)
    started = time.monotonic()
    with shared_deployment() as deployment:
        airflow, sandbox = deployment.airflow, deployment.sandbox
        result.notes.append(
            f"LocalExecutor with parallelism {airflow.parallelism}, metadata database {airflow.database}, budget "
            f"store: Airflow Variables; {os.cpu_count()} cores shared by every process of the deployment and "
            "the sandbox"
        )
        # Unmeasured: the first runs of the DAGs pay for parsing and first connections.
        warm = sandbox.add_waba(name="Bench warm-up")
        run_scenario(airflow, sandbox, bulk_rows([warm], 1, 0), ["557000000"], warm, BUDGETS_CONN_ID, RUN_TIMEOUT)
        outcomes: dict[str, dict[str, Any]] = {}
        wabas: dict[str, list[str]] = {}
        for series, label in enumerate(("free", "bound"), start=1):
            limits = [budget if label == "bound" and i < SMALL_BUDGET_WABAS else None for i in range(WABAS)]
            wabas[label] = [
                sandbox.add_waba(name=f"Bench {label} {i}", rate_limit=limit) for i, limit in enumerate(limits)
            ]
            rows = bulk_rows(wabas[label], per_waba, series)
            creates = [f"557{series}0{i:04d}" for i in range(creates_count)]
            rejected_before = sandbox.rejected_calls
            outcome = run_scenario(airflow, sandbox, rows, creates, wabas[label][0], BUDGETS_CONN_ID, RUN_TIMEOUT)
            outcome["refused"] = sandbox.rejected_calls - rejected_before
            outcome["deferred"] = len(deferrals(airflow, CONTENTION, outcome["runs"][CONTENTION]))
            outcome["numbers"], outcome["creates"] = len(rows) + len(creates), len(creates)
            report = outcome["report"]
            result.check(report["counts"] == {"onboarded": len(rows)}, f"{label} run: bulk outcomes {report['counts']}")
            outcomes[label] = outcome
        registered = Counter(sandbox.register_calls(n["id"]) for n in sandbox.numbers())
        created = Counter(n["display_phone_number"] for n in sandbox.numbers())
        free, bound = outcomes["free"], outcomes["bound"]
        small = wabas["bound"][:SMALL_BUDGET_WABAS]
        times = [r.time for r in free["calls"] if r.status == 200]
        per_call = (max(times) - min(times)) / max(1, len(times))
        least, measured = least_time(sandbox, small, budget, RATE_WINDOW, per_call)
        for waba in small:
            # A window the calls left short of its budget is where the wall time went.
            # ...and when in each window its calls went, from the window's start.
            offsets: dict[int, list[float]] = {}
            for r in bound["calls"]:
                if r.waba_id == waba and r.status == 200:
                    window, offset = divmod(r.time - sandbox.rate_window_anchor(waba), RATE_WINDOW)
                    offsets.setdefault(int(window), []).append(offset)
            by_window = ", ".join(
                f"{len(got)} ({min(got):.1f}-{max(got):.1f} s)" if (got := offsets.get(w)) else "0"
                for w in range(max(offsets, default=-1) + 1)
            )
            result.notes.append(f"small-budget WABA {waba}: calls served per window {by_window or 'none'}")
    # The warm-up's one bulk number and one create are on the sandbox too.
    bulk_numbers = 1 + sum(o["report"]["counts"].get("onboarded", 0) for o in outcomes.values())
    creates_total = 1 + sum(o["creates"] for o in outcomes.values())
    result.check(set(created.values()) == {1}, "a number created twice")
    result.check(registered == Counter({1: bulk_numbers, 0: creates_total}), f"registers per number {dict(registered)}")

    numbers = bound["numbers"]
    result.add("calls refused under small budgets", bound["refused"], "calls", target="0", met=bound["refused"] == 0)
    wall = result.add(
        f"{numbers} numbers on {WABAS} WABAs, {SMALL_BUDGET_WABAS} at {budget} calls per {RATE_WINDOW:.0f} s: "
        "the small-budget WABAs' first to last call",
        measured,
        "s",
        baseline=f"the least their budgets allow ({least:.1f} s)",
        ratio=measured / least if least else float("nan"),
    )
    wall.target, wall.met = f"<= {WALL_TARGET}x", wall.ratio is not None and wall.ratio <= WALL_TARGET
    slots = result.add(
        "worker slot-seconds under small budgets",
        bound["slot_seconds"],
        "s",
        baseline=f"the same runs without budgets ({free['slot_seconds']:.1f} s)",
        ratio=bound["slot_seconds"] / free["slot_seconds"] if free["slot_seconds"] else float("nan"),
    )
    slots.target, slots.met = f"<= {SLOT_TARGET}x", slots.ratio is not None and slots.ratio <= SLOT_TARGET
    for label, outcome in outcomes.items():
        served = sum(1 for r in outcome["calls"] if r.status == 200)
        result.notes.append(
            f"{label} run: {outcome['numbers']} numbers, {served} calls served, {outcome['refused']} refused, "
            f"{outcome['wall']:.1f} s wall, {outcome['slot_seconds']:.1f} worker slot-seconds, "
            f"{outcome['deferred']} budget waits deferred"
        )
    result.notes.append(f"benchmark took {time.monotonic() - started:.0f} s, the deployment's start included")
    return result


if __name__ == "__main__":
    run_from_command_line(run, __doc__)
