"""Benchmark 1, per-call overhead: our hook against raw ``requests`` and ``HttpHook.run``.

The same GET (read a number) and POST (create a number) is sent four ways to the same sandbox,
with the same headers: a raw ``requests.Session`` (the floor), ``WhatsAppBusinessHook``, the
http provider's ``HttpHook.run``, and a raw session that reads the environment once as the hook
does (``trust_env`` off), which shows the hook's own code apart from that saving: the target,
on the client's CPU per call, is against that session. Rounds
interleave the variants in a rotating order so drift hits each alike. The ratio is the median
over rounds of each round's paired ratio (a variant's mean time per call over raw ``requests``'
in the same round), so a slow stretch of the machine moves both sides of a ratio together; the
time per call shown beside it is the median over rounds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    WABA_ID,
    Result,
    SandboxProcess,
    airflow_environment,
    median,
    run_from_command_line,
    spread,
)

NAME = "1. per-call overhead"
TARGET = 1.05
ENV_ONCE = "raw requests, environment read once"


def run(quick: bool = False) -> Result:
    result = Result(NAME)
    calls, rounds = (20, 3) if quick else (50, 40)
    # A limit no run reaches: the usage headers then stay far below any slow-down threshold.
    with SandboxProcess(rate_limit=10**9, rate_window=3600.0) as sandbox:
        airflow_environment(sandbox.conn_json)
        os.environ["AIRFLOW_CONN_HTTP_SANDBOX"] = json.dumps({"conn_type": "http", "host": sandbox.url})
        import requests
        from airflow.providers.http.hooks.http import HttpHook

        from airflow_provider_whatsapp.hooks.graph import USER_AGENT
        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

        headers = {"Authorization": f"Bearer {sandbox.token}", "User-Agent": USER_AGENT, "Accept": "application/json"}
        session = requests.Session()
        # The hook reads the environment (proxies, CA bundle) once per session; raw requests does
        # on every call. This variant does what the hook does, to show the hook's own code apart.
        session_env_once = requests.Session()
        session_env_once.trust_env = False
        hook = WhatsAppBusinessHook()
        http_get = HttpHook(method="GET", http_conn_id="http_sandbox")
        http_post = HttpHook(method="POST", http_conn_id="http_sandbox")
        base = f"{sandbox.url}/v26.0"

        def expect_id(variant: str, node: Any, wanted: str | None = None) -> None:
            node_id = node.get("id") if isinstance(node, dict) else None
            # Messages are built only on failure: formatting them on every call would be measured.
            if not (isinstance(node_id, str) and node_id.isdigit() and (wanted is None or node_id == wanted)):
                result.check(False, f"{variant}: read {node!r}, wanted id {wanted or 'a new one'}")

        number_id = hook.create_phone_number(WABA_ID, "1", "5550100000", verified_name="Bench Co")["id"]
        counter = iter(range(1, 10**7))

        def body() -> dict[str, str]:
            return {"cc": "1", "phone_number": f"555{next(counter):07d}", "verified_name": "Bench Co"}

        def raw_get() -> None:
            response = session.get(f"{base}/{number_id}", headers=headers, timeout=30)
            response.raise_for_status()
            expect_id("raw get", response.json(), number_id)

        def raw_env_once_get() -> None:
            response = session_env_once.get(f"{base}/{number_id}", headers=headers, timeout=30)
            response.raise_for_status()
            expect_id("raw get, environment read once", response.json(), number_id)

        def ours_get() -> None:
            expect_id("ours get", hook.get_phone_number(number_id), number_id)

        def http_get_call() -> None:
            expect_id("http get", http_get.run(f"v26.0/{number_id}", headers=headers).json(), number_id)

        def raw_create() -> None:
            response = session.post(f"{base}/{WABA_ID}/phone_numbers", json=body(), headers=headers, timeout=30)
            response.raise_for_status()
            expect_id("raw create", response.json())

        def raw_env_once_create() -> None:
            response = session_env_once.post(
                f"{base}/{WABA_ID}/phone_numbers", json=body(), headers=headers, timeout=30
            )
            response.raise_for_status()
            expect_id("raw create, environment read once", response.json())

        def ours_create() -> None:
            values = body()
            expect_id("ours create", hook.create_phone_number(WABA_ID, **values))

        def http_create() -> None:
            response = http_post.run(f"v26.0/{WABA_ID}/phone_numbers", json=body(), headers=headers)
            expect_id("http create", response.json())

        operations: dict[str, dict[str, Callable[[], None]]] = {
            "get_phone_number": {
                "raw requests": raw_get,
                "our hook": ours_get,
                "HttpHook.run": http_get_call,
                ENV_ONCE: raw_env_once_get,
            },
            "create_phone_number": {
                "raw requests": raw_create,
                "our hook": ours_create,
                "HttpHook.run": http_create,
                ENV_ONCE: raw_env_once_create,
            },
        }
        for variants in operations.values():  # warm-up: connections, imports, caches
            for function in variants.values():
                function()
        warm = sandbox.reset()
        result.check(warm["not_ok"] == 0 and warm["numbers"] == 5, f"warm-up went wrong: {warm}")
        number_id = hook.create_phone_number(WABA_ID, "1", "5550100000", verified_name="Bench Co")["id"]
        created = 0
        for operation, variants in operations.items():
            if operation == "create_phone_number":
                sandbox.reset()
            per_call: dict[str, list[float]] = {name: [] for name in variants}
            cpu_per_call: dict[str, list[float]] = {name: [] for name in variants}
            names = list(variants)
            for index in range(rounds):
                order = names[index % len(names) :] + names[: index % len(names)]
                for name in order:
                    function = variants[name]
                    start, cpu_start = time.perf_counter(), time.process_time()
                    for _ in range(calls):
                        function()
                    per_call[name].append((time.perf_counter() - start) / calls)
                    cpu_per_call[name].append((time.process_time() - cpu_start) / calls)
                    if operation == "create_phone_number":
                        # Every batch of creates starts from the same WABA size (the sandbox's
                        # duplicate check scans the WABA's numbers).
                        done = sandbox.reset()
                        result.check(done["not_ok"] == 0, f"{name}: {done['not_ok']} calls were not answered 200")
                        result.check(done["numbers"] == calls, f"{name}: {done['numbers']} numbers, {calls} created")
                        created += done["numbers"]
            for name in names:
                ratio = paired_ratio(per_call[name], per_call["raw requests"])
                result.add(
                    f"{operation}: {name}",
                    median(per_call[name]) * 1e6,
                    "us/call",
                    baseline="raw requests, same round",
                    ratio=ratio,
                )
            # The target is against the raw session that does the same work (the environment read
            # once), on the client's CPU, so what it measures is the hook's own code, not a saving
            # raw requests forgoes, nor the machine's other load.
            for label, series, target in (("wall", per_call, None), ("client CPU", cpu_per_call, TARGET)):
                fair = paired_ratio(series["our hook"], series[ENV_ONCE])
                figure = result.add(
                    f"{operation}: our hook against {ENV_ONCE}, {label}",
                    median(series["our hook"]) * 1e6,
                    "us/call",
                    baseline=f"{ENV_ONCE}, {label}, same round ({median(series[ENV_ONCE]) * 1e6:.1f} us/call)",
                    ratio=fair,
                )
                if target is not None:
                    figure.target, figure.met = f"<= {target}x", fair <= target
            for name in names:
                # The client's own CPU per call: the sandbox runs in another process, so this is
                # the overhead itself, far less noisy than wall time on a shared machine.
                result.add(
                    f"{operation}: {name}, client CPU",
                    median(cpu_per_call[name]) * 1e6,
                    "us/call",
                    baseline="raw requests, client CPU, same round",
                    ratio=paired_ratio(cpu_per_call[name], cpu_per_call["raw requests"]),
                )
            result.notes.append(f"{operation}: {calls * rounds} calls per variant, {rounds} interleaved rounds")
            # How much the round means moved in this run, for reading the ratios above.
            result.notes.append(
                f"{operation}: spread of the round means around their median (10th/90th percentile), wall "
                + ", ".join(f"{name} {spread(per_call[name])}" for name in names)
                + "; client CPU "
                + ", ".join(f"{name} {spread(cpu_per_call[name])}" for name in names)
            )
        stats = sandbox.stats()
        wanted = calls * rounds * len(operations["create_phone_number"])
        result.check(created == wanted, f"{created} numbers created, {wanted} wanted")
        errors = [status for status in stats["statuses"] if status != 200]
        result.check(not errors, f"{len(errors)} sandbox answers were not 200")
        hook.close()
    return result


def paired_ratio(values: list[float], floors: list[float]) -> float:
    """Median over rounds of ``value / floor`` taken within each round."""
    return median([value / floor for value, floor in zip(values, floors, strict=True)])


if __name__ == "__main__":
    run_from_command_line(run, __doc__)
