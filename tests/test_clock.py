"""The bot's clock follows Redis's: measured against the real redis-server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import redis

from bot.redis.clock import ServerClock
from bot.redis.store import ReleaseStore, connect
from tests.infra.processes import free_port


def test_the_clock_reads_redis_time_plus_the_local_clock(redis_client: redis.Redis) -> None:
    store = ReleaseStore(redis_client)
    clock = ServerClock(store=store)

    read = clock()
    server = store.server_time()

    assert read.tzinfo is not None
    assert abs(server - read) < timedelta(milliseconds=50)
    assert abs(datetime.now(UTC) - read) < timedelta(seconds=1)  # same machine: no skew


def test_a_redis_outage_costs_one_attempt_per_resync_then_the_local_clock_serves() -> None:
    clock = ServerClock(store=ReleaseStore(connect(f"redis://127.0.0.1:{free_port()}/0")))

    started = time.monotonic()
    first = clock()
    calls = [clock() for _ in range(100)]
    elapsed = time.monotonic() - started

    assert abs(datetime.now(UTC) - first) < timedelta(seconds=1)
    assert calls == sorted(calls)
    assert elapsed < 1.0  # refused connections fail fast, and only the first call tried
