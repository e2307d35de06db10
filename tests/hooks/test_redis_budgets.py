"""The Redis backend of the shared budgets, against a real ``redis-server`` on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_whatsapp.hooks.budgets import RedisBudgets, SharedReading


@pytest.fixture(scope="module")
def redis_server() -> Iterator[object]:
    from devtools.celery_deployment import REDIS_SERVER, RedisServer

    if not Path(REDIS_SERVER).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{REDIS_SERVER} is not installed (.ci/run installs Debian's redis-server)")
        pytest.skip(f"{REDIS_SERVER} is not installed")
    server = RedisServer(Path(tempfile.mkdtemp(prefix="whatsapp-test-redis-")))
    server.start()
    yield server
    server.stop()


def test_a_reading_written_by_one_process_is_read_by_another(redis_server: object) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    writer, reader = RedisBudgets(url, holder="host-a:1"), RedisBudgets(url, holder="host-b:2")
    reading = SharedReading(97.0, time.time() + 120, time.time(), "writer", 3.4, "host-a:1")
    writer.write("whatsapp_budget.t1.waba", reading)
    assert reader.read("whatsapp_budget.t1.waba") == reading
    assert reader.read("whatsapp_budget.t1.other") is None
    assert "redis://" not in repr(reader), "the URL may hold a password"


def test_of_many_processes_claiming_one_lease_at_once_exactly_one_holds_it(redis_server: object) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    claimants = [RedisBudgets(url, holder=f"process-{index}") for index in range(8)]
    start = threading.Barrier(len(claimants))
    won: list[str] = []

    def claim(backend: RedisBudgets) -> None:
        start.wait(timeout=30)
        if backend.claim("whatsapp_budget.t2.waba", 30.0):
            won.append(backend.holder)

    threads = [threading.Thread(target=claim, args=(backend,)) for backend in claimants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 1, won
    holder = next(backend for backend in claimants if backend.holder == won[0])
    other = next(backend for backend in claimants if backend.holder != won[0])
    assert holder.claim("whatsapp_budget.t2.waba", 30.0), "the holder still holds it"
    assert not other.claim("whatsapp_budget.t2.waba", 30.0)
    holder.release("whatsapp_budget.t2.waba")
    assert other.claim("whatsapp_budget.t2.waba", 30.0)


def test_redis_down_is_the_process_view_with_a_warning_then_back(
    redis_server: object, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    backend = RedisBudgets(url, timeout=0.5, holder="host-a:1")
    reading = SharedReading(80.0, 0.0, time.time(), "writer", 2.0, "host-a:1")
    redis_server.stop()  # type: ignore[attr-defined]
    try:
        with caplog.at_level(logging.WARNING, logger="airflow_provider_whatsapp.hooks.budgets"):
            assert backend.read("whatsapp_budget.t3.waba") is None
            backend.write("whatsapp_budget.t3.waba", reading)
            assert backend.claim("whatsapp_budget.t3.waba", 30.0), "no store: every process goes on alone"
        assert backend.down and backend.failures == 1, "not asked again while down"
        assert [r for r in caplog.records if "could not be read" in r.getMessage()]
        assert url not in caplog.text
    finally:
        redis_server.start()  # type: ignore[attr-defined]
    backend._down_until = 0.0  # the retry delay passed
    backend.write("whatsapp_budget.t3.waba", reading)
    assert backend.read("whatsapp_budget.t3.waba") == reading


def test_the_holder_claiming_again_renews_its_lease(redis_server: object) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    holder, other = RedisBudgets(url, holder="process-a"), RedisBudgets(url, holder="process-b")
    name = "whatsapp_budget.t4.waba"
    assert holder.claim(name, 0.5)
    assert holder.claim(name, 30.0), "claimed again by its holder"
    ttl = holder.client.pttl(f"{name}.lease")
    assert 25_000 < ttl <= 30_000, ttl
    assert not other.claim(name, 30.0)
    # A lease another holds is never renewed for it by a claim.
    holder.release(name)
    assert other.claim(name, 0.5)
    assert not holder.claim(name, 30.0)
    assert other.client.pttl(f"{name}.lease") <= 500
