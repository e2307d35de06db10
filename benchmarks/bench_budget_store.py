"""Benchmark 7, the per-call cost of a shared budget store: the hook with the Redis store against
the same hook with the process store (nothing shared), one process, the same sandbox.

Each call of a hook whose ``budget_store`` is shared reads its budgets (the app's and the WABA's)
from the store before it is sent, as a task does in a deployment; far from a budget's end that is
all the store adds. Rounds interleave the two variants in a rotating order; the figure is the
median over rounds of each round's difference in mean wall time per call, so a slow stretch of
the machine moves both sides alike. Redis is Debian's ``redis-server``, started here on loopback.
The Variables store (``airflow``) is not measured here: outside a task it has no Task SDK to go
through, and inside one it reads a budget at most once a second away from its end.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import (
    WABA_ID,
    Result,
    SandboxProcess,
    airflow_environment,
    median,
    run_from_command_line,
    spread,
)

NAME = "7. shared budget store, per call"
TARGET_MS = 2.0
REDIS_CONN_ID = "whatsapp_redis_store"


def run(quick: bool = False) -> Result:
    result = Result(NAME)
    calls, rounds = (20, 3) if quick else (50, 40)
    from devtools.celery_deployment import REDIS_SERVER, RedisServer

    if not Path(REDIS_SERVER).exists():
        result.check(False, f"{REDIS_SERVER} is not installed (Debian's redis-server package)")
        return result
    redis_server = RedisServer(Path(tempfile.mkdtemp(prefix="whatsapp-bench-redis-")))
    redis_server.start()
    try:
        # A limit no run reaches: every call is far from its budget's end, the common case.
        with SandboxProcess(rate_limit=10**9, rate_window=3600.0) as sandbox:
            airflow_environment(sandbox.conn_json)
            shared = json.loads(sandbox.conn_json)
            store_url = f"redis://127.0.0.1:{redis_server.port}/1"
            shared["extra"] = {**shared.get("extra", {}), "budget_store": store_url}
            os.environ[f"AIRFLOW_CONN_{REDIS_CONN_ID.upper()}"] = json.dumps(shared)
            from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

            hooks = {"process store": WhatsAppBusinessHook(), "Redis store": WhatsAppBusinessHook(REDIS_CONN_ID)}
            number_id = hooks["process store"].create_phone_number(
                WABA_ID, "1", "5550100000", verified_name="Bench Co"
            )["id"]

            def reader(hook: WhatsAppBusinessHook) -> Callable[[], None]:
                def read() -> None:
                    node = hook.get_phone_number(number_id, waba_id=WABA_ID)
                    if not (isinstance(node, dict) and node.get("id") == number_id):
                        result.check(False, f"read {node!r}, wanted id {number_id}")

                return read

            variants = {name: reader(hook) for name, hook in hooks.items()}
            for function in variants.values():  # warm-up: connections, imports, the store's client
                for _ in range(5):
                    function()
            per_call: dict[str, list[float]] = {name: [] for name in variants}
            names = list(variants)
            for index in range(rounds):
                for name in names[index % 2 :] + names[: index % 2]:
                    start = time.perf_counter()
                    for _ in range(calls):
                        variants[name]()
                    per_call[name].append((time.perf_counter() - start) / calls)
            added = median([r - p for r, p in zip(per_call["Redis store"], per_call["process store"], strict=True)])
            for name in names:
                result.add(f"get_phone_number: {name}", median(per_call[name]) * 1e3, "ms/call")
            figure = result.add(
                "Redis store: added per call",
                added * 1e3,
                "ms/call",
                baseline=f"process store, same round ({median(per_call['process store']) * 1e3:.2f} ms/call)",
            )
            figure.target, figure.met = f"<= {TARGET_MS} ms", added * 1e3 <= TARGET_MS
            view = hooks["Redis store"].shared_view
            backend = view.backend if view is not None else None
            result.check(backend is not None and type(backend).__name__ == "RedisBudgets", f"store: {backend!r}")
            failures = getattr(backend, "failures", None)
            result.check(failures == 0, f"the Redis store failed {failures} times: the calls did not use it")
            result.notes.append(
                f"{calls * rounds} calls per variant in {rounds} interleaved rounds; spread of the round "
                "means around their median (10th/90th percentile): "
                + ", ".join(f"{name} {spread(per_call[name])}" for name in names)
            )
            stats = sandbox.stats()
            errors = [status for status in stats["statuses"] if status != 200]
            result.check(not errors, f"{len(errors)} sandbox answers were not 200")
            for hook in hooks.values():
                hook.close()
    finally:
        redis_server.stop()
    return result


if __name__ == "__main__":
    run_from_command_line(run, __doc__)
