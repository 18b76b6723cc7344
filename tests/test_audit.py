"""The audit trail and `release-bot audit export` (bot.entrypoints.audit), run by pytest.

The release service runs on the real Redis (fixture `redis_server`) with the demo's simulated
cluster and an announcer that posts nothing; the export is read back as JSON lines, through the
function and through the console script in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bot.application.service import ReleaseService
from bot.core.apps import BotConfig, ChannelRef
from bot.core.machine import Approve, Notify, Rollback
from bot.core.ports import HistoryEntry, SlackRefs
from bot.core.release import Phase, Release
from bot.entrypoints.audit import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, export_command, parse_since
from bot.entrypoints.demo import DEMO_APP, DEMO_PLAN, SimulatedCluster, Transcript
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore
from tests.infra.processes import free_port
from tests.infra.redis_server import RedisServer

APP = DEMO_APP.name
ANA, BOB = "U0ANA", "U0BOB"
COMMANDS, CARDS = "C0DEPLOYS", "C0RELEASES"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
WORKTREE = Path(__file__).resolve().parents[1]


class Clock:
    """Each reading is 1 ms after the last, so every entry has its own time; `skip` jumps."""

    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        self.at += timedelta(milliseconds=1)
        return self.at

    def skip(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class SilentAnnouncer:
    def show_card(self, release: Release) -> SlackRefs:
        return SlackRefs(card_ts=release.card_ts or "1.0", thread_ts=release.thread_ts or "1.0")

    def notify(self, release: Release, notice: Notify) -> None:
        pass


def service_on(client: redis.Redis, clock: Clock) -> tuple[ReleaseService, ReleaseStore]:
    store = ReleaseStore(client)
    # commands are typed in one channel, cards clicked in another: the app allows both
    channels = (ChannelRef(COMMANDS), ChannelRef(CARDS))
    rules = DEMO_APP.authorization.model_copy(update={"channels": channels})
    app = DEMO_APP.model_copy(update={"authorization": rules})
    config = BotConfig(source="tests", apps={APP: app}, plans={DEMO_PLAN.name: DEMO_PLAN})
    service = ReleaseService(
        config=config,
        store=store,
        leases=Leases(store=store),
        cluster=SimulatedCluster(transcript=Transcript()),
        announcer=SilentAnnouncer(),
        clock=clock,
    )
    return service, store


def export(redis_server: RedisServer, **options: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    code = export_command(environ={"REDIS_URL": redis_server.url}, out=out, **options)
    assert code == EXIT_OK
    return [json.loads(line) for line in out.getvalue().splitlines()]


def tick_until(service: ReleaseService, store: ReleaseStore, clock: Clock, release_id: str,
               phase: Phase) -> None:  # fmt: skip
    for _ in range(20):
        stored = store.get(release_id)
        assert stored is not None
        if stored.release.phase is phase:
            return
        clock.skip(10)
        service.tick()
    raise AssertionError(f"release never reached {phase}")


def run_release(client: redis.Redis) -> str:
    """Start, three automatic stages, a refused approval (four eyes), an approval from a card,
    a rollback typed in a channel, the automatic end; returns the release id."""
    clock = Clock()
    service, store = service_on(client, clock)
    started = service.start(app_name=APP, version="v2", plan_name=None, user=ANA, channel=COMMANDS)
    assert started.release is not None
    release_id = started.release.id
    tick_until(service, store, clock, release_id, Phase.AWAITING_APPROVAL)
    approve = Approve(by=ANA, stage_index=2)
    assert not service.act(app_name=APP, event=approve, actor=ANA, channel=COMMANDS).applied
    approve = Approve(by=BOB, stage_index=2)
    clicked = service.act_on_release(release_id=release_id, event=approve, actor=BOB, channel=CARDS)
    assert clicked.applied
    rollback = Rollback(by=BOB, reason="latency")
    assert service.act(app_name=APP, event=rollback, actor=BOB, channel=COMMANDS).applied
    tick_until(service, store, clock, release_id, Phase.ROLLED_BACK)
    return release_id


def test_a_whole_release_is_exported_once_each_in_order(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    release_id = run_release(redis_client)

    lines = export(redis_server, app=APP)

    trail = [(e["actor"], e["action"], e["outcome"][:8], e["channel"]) for e in lines]
    assert trail == [
        (ANA, "start", "applied", COMMANDS),
        ("release-bot", "CanaryReady", "applied", None),
        ("release-bot", "StageTimerElapsed", "applied", None),
        ("release-bot", "StageTimerElapsed", "applied", None),
        ("release-bot", "StageTimerElapsed", "applied", None),
        (ANA, "Approve", "refused:", COMMANDS),
        (BOB, "Approve", "applied", CARDS),
        (BOB, "Rollback", "applied", COMMANDS),
        ("release-bot", "RollbackDone", "applied", None),
    ]
    assert "four-eyes" in lines[5]["outcome"]
    assert {e["release_id"] for e in lines} == {release_id}
    assert {e["app"] for e in lines} == {APP}
    times = [datetime.fromisoformat(e["at"]) for e in lines]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[0] > T0 and times[-1] < T0 + timedelta(minutes=5)
    assert lines == export(redis_server)  # one app: all apps' trail is the same


def test_every_app_merged_in_time_order_and_since_filters(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    store = ReleaseStore(redis_client)
    for minute, app in [(0, "cart"), (1, "shop-api"), (2, "cart"), (3, "billing"), (4, "shop-api")]:
        at = (T0 + timedelta(minutes=minute)).isoformat()
        store.append_history(app, HistoryEntry(at, "-", ANA, "lock", "applied", app=app))

    merged = export(redis_server)
    assert [(e["app"], e["at"][11:16]) for e in merged] == [
        ("cart", "12:00"), ("shop-api", "12:01"), ("cart", "12:02"), ("billing", "12:03"),
        ("shop-api", "12:04"),
    ]  # fmt: skip
    assert [e["at"][11:16] for e in export(redis_server, app="cart")] == ["12:00", "12:02"]
    since = export(redis_server, since="2026-11-26T12:02:00Z")
    assert [e["at"][11:16] for e in since] == ["12:02", "12:03", "12:04"]
    both = export(redis_server, app="shop-api", since="2026-11-26T12:02:00+00:00")
    assert [e["at"][11:16] for e in both] == ["12:04"]


def test_since_a_duration_means_the_last_of_it(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    store = ReleaseStore(redis_client)
    now = store.server_time()
    for days in (10, 8, 6, 1):
        at = (now - timedelta(days=days)).isoformat()
        store.append_history(APP, HistoryEntry(at, "-", ANA, f"lock{days}", "applied", app=APP))

    assert [e["action"] for e in export(redis_server, since="7d")] == ["lock6", "lock1"]
    assert parse_since("2h", now=lambda: T0) == T0 - timedelta(hours=2)
    assert parse_since("2026-11-26", now=lambda: T0) == datetime(2026, 11, 26, tzinfo=UTC)
    out = io.StringIO()
    bad = export_command(since="last week", environ={"REDIS_URL": redis_server.url}, out=out)
    assert bad == EXIT_USAGE and out.getvalue() == ""


def test_entries_past_the_retention_are_trimmed_on_the_next_append(
    redis_client: redis.Redis,
) -> None:
    store = ReleaseStore(redis_client, audit_retention_days=10)
    ages = {"old": timedelta(days=11), "edge": timedelta(days=10), "recent": timedelta(days=9)}
    for action, age in ages.items():
        store.append_history(APP, HistoryEntry((T0 - age).isoformat(), "-", ANA, action, "x"))
    assert [e.action for e in store.history(APP)] == ["old", "edge", "recent"]  # T0 - 9 d: kept

    store.append_history(APP, HistoryEntry(T0.isoformat(), "-", ANA, "now", "x", app=APP))

    assert [e.action for e in store.history(APP)] == ["edge", "recent", "now"]
    later = T0 + timedelta(seconds=1)  # the edge is now past 10 days, recent is not
    store.append_history(APP, HistoryEntry(later.isoformat(), "-", ANA, "later", "x", app=APP))
    assert [e.action for e in store.history(APP)] == ["recent", "now", "later"]


def test_a_release_save_trims_too_and_the_default_keeps_400_days(
    redis_client: redis.Redis,
) -> None:
    key = f"rb:history:{APP}"
    for days in (401, 399):
        redis_client.rpush(key, HistoryEntry((T0 - timedelta(days=days)).isoformat(), "-",
                                              ANA, f"lock{days}", "x").to_json())  # fmt: skip
    clock = Clock()
    service, store = service_on(redis_client, clock)
    assert service.start(app_name=APP, version="v2", plan_name=None, user=ANA, channel=COMMANDS)
    assert [e.action for e in store.history(APP)] == ["lock399", "start"]


def test_entries_written_before_app_and_channel_existed_still_load(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    old = {"at": T0.isoformat(), "release_id": "r1", "actor": ANA, "action": "start",
           "outcome": "applied", "detail": "", "stage": 0, "phase": "starting"}  # fmt: skip
    redis_client.rpush(f"rb:history:{APP}", json.dumps(old), json.dumps({**old, "later": 1}))

    entries = ReleaseStore(redis_client).history(APP)

    assert [(e.app, e.channel, e.action) for e in entries] == [(APP, None, "start")] * 2
    assert export(redis_server) == [{**old, "app": APP, "channel": None}] * 2


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SLACK_"))}
    command = [sys.executable, "-m", "bot.entrypoints.cli", "audit", "export", *args]
    return subprocess.run(
        command,
        check=False,
        cwd=WORKTREE,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_console_script_prints_json_lines_with_no_slack_token(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    release_id = run_release(redis_client)

    done = cli("--app", APP, env={"REDIS_URL": redis_server.url})

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 9 and {e["release_id"] for e in lines} == {release_id}
    assert lines[0]["action"] == "start" and lines[-1]["action"] == "RollbackDone"


def test_the_console_script_says_what_is_missing(redis_server: RedisServer) -> None:
    unset = cli("--app", APP, env={})
    assert unset.returncode == EXIT_USAGE and unset.stdout == ""
    assert "no Redis configured: set REDIS_URL" in unset.stderr

    no_master = cli(env={"REDIS_SENTINELS": "127.0.0.1:26379"})
    assert no_master.returncode == EXIT_USAGE
    assert "REDIS_SENTINEL_MASTER is not" in no_master.stderr

    down = cli(env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert down.returncode == EXIT_UNAVAILABLE and down.stdout == ""
    assert "state store unavailable" in down.stderr
