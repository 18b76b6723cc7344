"""The App Home refresh registry on a real redis-server: who opened Home lately, per-person
trailing-edge coalescing of refreshes, and the cap on publishes per minute across replicas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from bot.redis.home import HomeViewers

T0 = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_only_recent_viewers_are_refreshed(redis_client: redis.Redis) -> None:
    viewers = HomeViewers(redis_client, viewer_ttl_s=600, min_gap_s=10, settle_s=1)
    assert viewers.schedule_refresh(at=at(0)) == 0

    viewers.opened("U0ALICE001", at=at(0))
    viewers.opened("U0BOB00001", at=at(500))

    assert viewers.schedule_refresh(at=at(700)) == 1  # Alice opened Home 700 s ago: forgotten
    assert viewers.take_due(at=at(710)) == ["U0BOB00001"]


def test_a_burst_gives_each_viewer_one_refresh_per_gap_at_its_trailing_edge(
    redis_client: redis.Redis,
) -> None:
    viewers = HomeViewers(redis_client, min_gap_s=10, settle_s=1)
    viewers.opened("U0ALICE001", at=at(0))  # shown at 0: the next refresh comes at 10 at best

    for step in range(50):  # 50 transitions within 5 s
        viewers.schedule_refresh(at=at(1 + step / 10))
    assert viewers.take_due(at=at(9.9)) == []
    assert viewers.take_due(at=at(10)) == ["U0ALICE001"]
    assert viewers.take_due(at=at(10)) == []  # taken once, by one replica

    viewers.schedule_refresh(at=at(30))  # quiet since: only the settle delay
    assert viewers.take_due(at=at(30.5)) == []
    assert viewers.take_due(at=at(31)) == ["U0ALICE001"]


def test_publishes_are_capped_per_minute_and_the_rest_wait(redis_client: redis.Redis) -> None:
    viewers = HomeViewers(redis_client, min_gap_s=0, settle_s=0, budget_per_minute=3)
    users = [f"U0VIEWER{n:02d}" for n in range(5)]
    start = 60 * 10  # a minute's start
    for user in users:
        viewers.opened(user, at=at(start - 120))  # opened two minutes earlier: other budget

    viewers.schedule_refresh(at=at(start))
    first = viewers.take_due(at=at(start))
    assert len(first) == 3
    assert viewers.take_due(at=at(start + 30)) == []  # this minute's budget is spent
    assert sorted(first + viewers.take_due(at=at(start + 60))) == users
