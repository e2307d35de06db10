"""Benchmark 4, trigger scale: 1,000 ``PhoneNumberStatusTrigger`` runs in one event loop.

Every number is registered, and all turn ``CONNECTED`` together a fixed delay after the triggers
start (not after their registration, which takes longer on a loaded machine), so every trigger
polls a few times before its number is connected; the numbers sit on 10 WABAs. Three variants,
each in its own interpreter so their memory figures do not mix (the sandbox runs in another
process, so the CPU time is the triggers' alone):

* ``shared``: our triggers given their ``waba_id``: one list read per WABA per interval;
* ``ours``: our triggers without a WABA, each reading its own number every interval (the
  provider's polling before shared reads);
* ``http``: the same wait written the way the http provider's ``HttpSensorTrigger`` polls, one
  ``aiohttp`` session per poll through ``HttpAsyncHook``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from benchmarks.common import REPO, WABA_ID, Result, SandboxProcess, airflow_environment, emit

NAME = "4. trigger scale"
RSS_TARGET_MB = 50.0
# Everything in one variant's event loop must be over by then, whatever goes wrong.
RUN_TIMEOUT = 300.0
WABAS = 10
# A connection delay no run reaches.
NEVER = 10.0**9


def _rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _prepare(count: int, waba_ids: list[str]) -> list[tuple[str, str]]:
    """Create and register ``count`` pre-verified numbers, spread over the WABAs (none connects
    on its own); return (number ID, WABA ID) pairs."""
    from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook

    hook = WhatsAppBusinessHook()
    ids = []
    for index in range(count):
        waba = waba_ids[index % len(waba_ids)]
        node = hook.create_phone_number(
            waba, "1", f"555{index:07d}", verified_name="Bench Co", preverified_id="900000000000001"
        )
        hook.call("POST", f"{node['id']}/register", body={"messaging_product": "whatsapp", "pin": "730264"})
        ids.append((str(node["id"]), waba))
    hook.close()
    return ids


async def _ours(number_id: str, poke_interval: float, waba_id: str | None) -> dict[str, Any]:
    from airflow_provider_whatsapp.triggers.phone_numbers import PhoneNumberStatusTrigger

    trigger = PhoneNumberStatusTrigger(
        phone_number_id=number_id,
        target={"status": ["CONNECTED"]},
        failure_states={"status": ["BANNED", "DELETED"]},
        poke_interval=poke_interval,
        deadline=time.time() + RUN_TIMEOUT,
        waba_id=waba_id,
    )
    async for event in trigger.run():
        return dict(event.payload)
    return {"status": "no event"}


async def _http_sensor_style(number_id: str, poke_interval: float, headers: dict[str, str]) -> dict[str, Any]:
    from airflow.providers.http.hooks.http import HttpAsyncHook

    hook = HttpAsyncHook(method="GET", http_conn_id="http_sandbox")
    async for node in _poll_http(hook, number_id, poke_interval, headers):
        return {"status": "success", "node": node}
    return {"status": "no event"}


async def _poll_http(
    hook: Any, number_id: str, poke_interval: float, headers: dict[str, str]
) -> AsyncIterator[dict[str, Any]]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        # As HttpSensorTrigger does: a fresh aiohttp session (and connection) for every poll.
        async with hook.session() as http:
            response = await http.run(endpoint=f"v26.0/{number_id}", data={"fields": "id,status"}, headers=headers)
            node = await response.json()
        if node.get("status") == "CONNECTED":
            yield node
            return
        await asyncio.sleep(poke_interval)


async def _measure(
    variant: str, ids: list[tuple[str, str]], poke_interval: float, connect_delay: float, sandbox: SandboxProcess
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {sandbox.token}", "Accept": "application/json"}
    peak_rss = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak_rss
        while not stop.is_set():
            peak_rss = max(peak_rss, _rss_bytes())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    def one(pair: tuple[str, str]) -> Any:
        number_id, waba = pair
        if variant in ("ours", "shared"):
            return _ours(number_id, poke_interval, waba if variant == "shared" else None)
        return _http_sensor_style(number_id, poke_interval, headers)

    # Warm-up with one trigger: imports, connection lookup, the pooled client are not "per trigger".
    sandbox.command(f"connect {ids[0][0]}")
    warm = await asyncio.wait_for(one(ids[0]), 60)
    sandbox.command("reset_connections")
    requests_before = sandbox.stats()["requests"]
    rss_before = _rss_bytes()
    cpu_before = time.process_time()
    wall_before = time.monotonic()
    sampler = asyncio.create_task(sample())

    async def connect_later() -> None:
        await asyncio.sleep(connect_delay)
        await asyncio.to_thread(sandbox.command, "connect_all")

    connector = asyncio.create_task(connect_later())
    events = await asyncio.wait_for(asyncio.gather(*(one(pair) for pair in ids[1:])), RUN_TIMEOUT)
    await connector
    wall = time.monotonic() - wall_before
    cpu = time.process_time() - cpu_before
    stop.set()
    await sampler
    # The server counts connections: short-lived ones (one per poll) escape any client-side sampling.
    stats = sandbox.stats()
    statuses = stats["statuses"][requests_before:]
    return {
        "warm": warm.get("status"),
        "events": events,
        "rss_before": rss_before,
        "rss_peak": max(peak_rss, _rss_bytes()),
        "cpu": cpu,
        "wall": wall,
        "polls": len(statuses),
        "non_200": sum(status != 200 for status in statuses),
        "max_connections": stats["peak_open_connections"],
        "connections_opened": stats["accepted_connections"],
    }


def _variant(variant: str, count: int, connect_delay: float, poke_interval: float) -> dict[str, Any]:
    # No number connects on its own: _measure connects them all once the triggers run.
    with SandboxProcess(rate_limit=10**9, rate_window=3600.0, connect_delay=NEVER, wabas=WABAS) as sandbox:
        airflow_environment(sandbox.conn_json)
        os.environ["AIRFLOW_CONN_HTTP_SANDBOX"] = json.dumps({"conn_type": "http", "host": sandbox.url})
        ids = _prepare(count + 1, sandbox.hello.get("waba_ids") or [WABA_ID])
        measured = asyncio.run(_measure(variant, ids, poke_interval, connect_delay, sandbox))
    statuses = [event.get("status") for event in measured.pop("events")]
    return {**measured, "triggers": len(statuses), "succeeded": statuses.count("success")}


def run(quick: bool = False) -> Result:
    result = Result(NAME)
    count, connect_delay, poke_interval = (50, 1.5, 0.4) if quick else (1000, 8.0, 2.0)
    measured: dict[str, dict[str, Any]] = {}
    for variant in ("shared", "ours", "http"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_triggers",
                "--variant",
                variant,
                "--count",
                str(count),
                "--connect-delay",
                str(connect_delay),
                "--poke-interval",
                str(poke_interval),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT + 120,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("VARIANT ")]
        if done.returncode != 0 or not lines:
            result.check(False, f"{variant} run failed: {done.stderr[-800:]}")
            return result
        measured[variant] = json.loads(lines[-1][len("VARIANT ") :])
    labels = {
        "shared": "our trigger, shared reads per WABA",
        "ours": "our trigger, one read per number",
        "http": "HttpSensorTrigger-style (aiohttp session per poll)",
    }
    for variant, values in measured.items():
        result.check(values["triggers"] == count, f"{variant}: {values['triggers']} triggers ran, {count} wanted")
        result.check(values["succeeded"] == count, f"{variant}: {values['succeeded']} of {count} saw CONNECTED")
        result.check(values["non_200"] == 0, f"{variant}: {values['non_200']} polls were not answered 200")
        result.check(values["warm"] == "success", f"{variant}: the warm-up trigger ended {values['warm']}")
        if variant != "shared":
            result.check(values["polls"] >= 2 * count, f"{variant}: only {values['polls']} polls for {count} triggers")
    per_number = measured["ours"]
    for variant in ("shared", "ours"):
        values = measured[variant]
        # Every trigger's first read comes one interval after it started, then one per interval.
        intervals = math.ceil(values["wall"] / poke_interval - 1e-6)
        reads = values["polls"] / intervals
        figure = result.add(
            f"{labels[variant]}: Graph reads per interval",
            reads,
            "reads",
            baseline="one read per number",
            ratio=reads / (per_number["polls"] / math.ceil(per_number["wall"] / poke_interval - 1e-6)),
        )
        if variant == "shared":
            figure.target, figure.met = f"<= {WABAS} (one page each)", reads <= WABAS
        cpu = values["cpu"] / intervals * 1e3
        result.add(
            f"{labels[variant]}: CPU time per interval",
            cpu,
            "ms",
            baseline="one read per number",
            ratio=cpu / (per_number["cpu"] / math.ceil(per_number["wall"] / poke_interval - 1e-6) * 1e3),
        )
    base = measured["http"]
    for variant, values in measured.items():
        ours = variant in ("ours", "shared")
        label = labels[variant]
        extra_mb = (values["rss_peak"] - values["rss_before"]) / 2**20
        base_mb = (base["rss_peak"] - base["rss_before"]) / 2**20
        result.add(
            f"{label}: extra RSS for {count} triggers",
            extra_mb,
            "MB",
            baseline="HttpSensorTrigger-style",
            ratio=extra_mb / base_mb if base_mb > 0 else None,
            target=f"<= {RSS_TARGET_MB:g} MB" if ours else "",
            met=extra_mb <= RSS_TARGET_MB if ours else None,
        )
        per_poll = values["cpu"] / values["polls"] * 1e3
        result.add(
            f"{label}: CPU time per poll",
            per_poll,
            "ms",
            baseline="HttpSensorTrigger-style",
            ratio=per_poll / (base["cpu"] / base["polls"] * 1e3),
        )
        result.add(
            f"{label}: open connections to the sandbox (peak)",
            values["max_connections"],
            "connections",
            baseline="HttpSensorTrigger-style",
            ratio=values["max_connections"] / max(1, base["max_connections"]),
            target="pooled (<= 20, not one per trigger)" if ours else "",
            met=values["max_connections"] <= 20 if ours else None,
        )
        result.add(
            f"{label}: TCP connections opened",
            values["connections_opened"],
            "connections",
            baseline="HttpSensorTrigger-style",
            ratio=values["connections_opened"] / max(1, base["connections_opened"]),
        )
        result.add(f"{label}: polls", values["polls"], "polls")
        result.add(f"{label}: wall time", values["wall"], "s")
    result.notes.append(
        f"{count} triggers on {WABAS} WABAs, numbers connect {connect_delay:g} s after the triggers start, "
        f"poke interval {poke_interval:g} s; reads per interval = polls / intervals begun during the wait"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variant", choices=("shared", "ours", "http"))
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--connect-delay", type=float, default=8.0)
    parser.add_argument("--poke-interval", type=float, default=2.0)
    args = parser.parse_args()
    if args.variant:
        print("VARIANT " + json.dumps(_variant(args.variant, args.count, args.connect_delay, args.poke_interval)))
        return
    emit(run(args.quick))


if __name__ == "__main__":
    main()
