"""Redis high availability (issue "Ship it", item 5): the bot reaches Redis through Sentinel,
counts a transition as saved only once a replica has it too (WAIT), says so honestly when no
replica confirms, and follows a failover: a real primary is SIGKILLed in the middle of a stage of
a real release, Sentinel promotes the replica, and the release finishes with every transition
and every Slack message exactly once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from bot.core.machine import Accepted, CanaryReady, transition
from bot.core.ports import HistoryEntry, RevisionConflict, StoredRelease
from bot.core.release import Phase
from bot.entrypoints.settings import Settings, SettingsError, load_settings
from bot.kube.routers import TrafficSplit
from bot.redis.store import ReleaseStore, ReplicaUnconfirmed, StoreUnavailable
from bot.slack.cards import ACTION_APPROVE
from tests.infra.redis_sentinel import SentinelCluster
from tests.infra.release_world import APP, World, is_approval_request
from tests.infra.slack_requests import ALICE, BOB, RELEASES
from tests.test_recovery import TIMED_RELEASE, _delivered, _each_message_once, _transitions
from tests.test_store import NOW, new_release

WAIT_MS = 500
REDIS_VARIABLES = (
    "REDIS_URL",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_PASSWORD",
    "REDIS_SENTINEL_PASSWORD",
    "RELEASE_BOT_REDIS_REPLICAS_TO_WAIT",
    "RELEASE_BOT_REDIS_WAIT_MS",
)

# ---------------------------------------------------------------- settings


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A valid Slack configuration and no Redis variables: each test sets its own."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-abc")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cret")
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    for name in REDIS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _error(environment: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        environment.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    return str(raised.value)


def test_sentinel_settings_are_parsed_and_wait_for_one_replica(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("REDIS_SENTINELS", "sentinel-0:26379, sentinel-1:26380,10.0.0.7:26379")
    environment.setenv("REDIS_SENTINEL_MASTER", "release-bot")
    environment.setenv("REDIS_SENTINEL_PASSWORD", "sentinel-pw")
    environment.setenv("REDIS_PASSWORD", "redis-pw")
    settings = load_settings()
    assert settings.sentinel_addresses == [
        ("sentinel-0", 26379),
        ("sentinel-1", 26380),
        ("10.0.0.7", 26379),
    ]
    assert settings.redis_configured
    assert (settings.redis_replicas_to_wait, settings.release_bot_redis_wait_ms) == (1, 500)
    assert {"sentinel-pw", "redis-pw"} <= set(settings.secret_values())
    assert "redis-pw" not in repr(settings)


def test_a_plain_redis_url_waits_for_no_replica_unless_told(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("REDIS_URL", "redis://redis:6379/0")
    assert load_settings().redis_replicas_to_wait == 0
    assert load_settings().sentinel_addresses == []
    environment.setenv("RELEASE_BOT_REDIS_REPLICAS_TO_WAIT", "2")
    environment.setenv("RELEASE_BOT_REDIS_WAIT_MS", "250")
    settings = load_settings()
    assert (settings.redis_replicas_to_wait, settings.release_bot_redis_wait_ms) == (2, 250)


def test_redis_url_and_sentinels_together_are_refused_naming_both(
    environment: pytest.MonkeyPatch,
) -> None:
    message = _error(
        environment,
        REDIS_URL="redis://redis:6379/0",
        REDIS_SENTINELS="sentinel-0:26379",
        REDIS_SENTINEL_MASTER="release-bot",
    )
    assert "REDIS_URL and REDIS_SENTINELS are both set" in message


@pytest.mark.parametrize(
    "sentinels", ["sentinel-0", "sentinel-0:", ":26379", "sentinel-0:port", "a:1,,b:2", "a:70000"]
)
def test_a_bad_sentinel_list_is_refused_naming_the_bad_item(
    environment: pytest.MonkeyPatch, sentinels: str
) -> None:
    message = _error(environment, REDIS_SENTINELS=sentinels, REDIS_SENTINEL_MASTER="release-bot")
    assert "environment variable REDIS_SENTINELS: must be host:port pairs" in message


def test_sentinels_need_a_master_name_and_a_master_name_needs_sentinels(
    environment: pytest.MonkeyPatch,
) -> None:
    message = _error(environment, REDIS_SENTINELS="sentinel-0:26379")
    assert "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not" in message
    environment.delenv("REDIS_SENTINELS")
    message = _error(environment, REDIS_SENTINEL_MASTER="release-bot")
    assert "REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not" in message


@pytest.mark.parametrize("wait_ms", ["0", "1501"])
def test_the_wait_must_fit_inside_the_socket_timeout(
    environment: pytest.MonkeyPatch, wait_ms: str
) -> None:
    message = _error(environment, REDIS_URL="redis://r:6379/0", RELEASE_BOT_REDIS_WAIT_MS=wait_ms)
    assert "environment variable RELEASE_BOT_REDIS_WAIT_MS" in message


def test_settings_stay_valid_without_redis(environment: pytest.MonkeyPatch) -> None:
    settings: Settings = load_settings()
    assert not settings.redis_configured


# ---------------------------------------------------------------- the store through Sentinel


def _entry(action: str = "start") -> HistoryEntry:
    return HistoryEntry(
        at=NOW.isoformat(), release_id="r1", actor="U0ANA", action=action, outcome="applied"
    )


def _waits(client: redis.Redis) -> int:
    """How many WAIT commands this server has run."""
    stats = client.info("commandstats").get("cmdstat_wait")
    return int(stats["calls"]) if stats else 0


def _ready(stored: StoredRelease) -> Any:
    decided = transition(stored.release, CanaryReady(), now=NOW)
    assert isinstance(decided, Accepted)
    return decided.release


def test_through_sentinel_a_save_is_on_the_replica_when_it_returns(
    redis_sentinels: SentinelCluster,
) -> None:
    client = redis_sentinels.client()
    retry = client.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == 0  # a save whose reply was lost is never sent again
    store = ReleaseStore(client, replicas_to_wait=1, wait_ms=WAIT_MS)
    primary, replica = redis_sentinels.primary.client(), redis_sentinels.replica.client()
    waits = _waits(primary)

    stored = store.create(new_release(), entry=_entry())
    assert replica.hget("rb:release:r1", "revision") == "1"  # no sleep: WAIT saw to it
    saved = store.save(stored, _ready(stored), entry=_entry("CanaryReady"), finished=False)
    assert replica.hget("rb:release:r1", "revision") == "2"
    assert json.loads(replica.hget("rb:release:r1", "json"))["phase"] == "running"
    assert len(replica.lrange("rb:history:shop-api", 0, -1)) == 2
    store.lock("shop-api", by="U0ANA", reason="freeze", at=NOW)
    assert replica.hgetall("rb:lock:shop-api")["reason"] == "freeze"
    assert _waits(primary) - waits == 3  # create, save, lock

    # Without waiting (a plain REDIS_URL's default), no WAIT is sent: no extra round trip.
    ReleaseStore(client).save(saved, saved.release, entry=None, finished=False)
    assert _waits(primary) - waits == 3


def test_with_the_replica_down_a_save_says_it_is_on_the_primary_but_not_confirmed(
    redis_sentinels: SentinelCluster,
) -> None:
    store = ReleaseStore(redis_sentinels.client(), replicas_to_wait=1, wait_ms=WAIT_MS)
    stored = store.create(new_release(), entry=_entry())
    redis_sentinels.replica.stop()

    started = time.monotonic()
    with pytest.raises(ReplicaUnconfirmed) as raised:
        store.save(stored, _ready(stored), entry=_entry("CanaryReady"), finished=False)
    took_s = time.monotonic() - started
    message = str(raised.value)
    assert message.startswith(
        f"saved on the primary, but no replica confirmed it within {WAIT_MS} ms; "
        "the action is not confirmed"
    ), message
    assert "nothing changed" not in message
    assert WAIT_MS / 1000 <= took_s < WAIT_MS / 1000 + 1.0, took_s

    # The write stands on the primary, and repeating it is refused instead of applied twice.
    after = store.get("r1")
    assert after is not None and (after.revision, after.release.phase) == (2, Phase.RUNNING)
    with pytest.raises(RevisionConflict):
        store.save(stored, _ready(stored), entry=_entry("CanaryReady"), finished=False)
    actions = [entry.action for entry in store.history("shop-api")]
    assert actions == ["start", "CanaryReady"]
    print(f"with the replica down, the save answered ReplicaUnconfirmed after {took_s:.3f} s")


def test_the_store_follows_a_failover_on_the_next_command(
    redis_sentinels: SentinelCluster,
) -> None:
    store = ReleaseStore(redis_sentinels.client(), replicas_to_wait=1, wait_ms=WAIT_MS)
    stored = store.create(new_release(), entry=_entry())
    old = redis_sentinels.primary
    killed_at = time.monotonic()
    old.kill()

    with pytest.raises(StoreUnavailable):
        store.get("r1")  # the connection to the dead primary fails: nothing is retried
    promoted_s = redis_sentinels.wait_promoted(old.port)
    assert redis_sentinels.master() is redis_sentinels.replica
    # The first command after the promotion reaches the new master, with what the old one had.
    again = store.get("r1")
    first_read_s = time.monotonic() - killed_at
    assert again == stored
    # No replica left until the old primary comes back: saves stand, but are not confirmed.
    with pytest.raises(ReplicaUnconfirmed):
        store.save(stored, _ready(stored), entry=_entry("CanaryReady"), finished=False)
    rejoin_s = redis_sentinels.rejoin(old)
    assert old.role() == "slave"
    saved = store.get("r1")
    assert saved is not None and saved.revision == 2
    store.save(saved, saved.release, entry=None, finished=False)
    assert old.client().hget("rb:release:r1", "revision") == "3"
    print(
        f"failover: promoted {promoted_s:.2f} s after the kill, first read on the new master "
        f"{first_read_s:.2f} s after it; the old primary resynced as a replica in {rejoin_s:.2f} s"
    )


# ---------------------------------------------------------------- the failover drill

FAILOVER_PLAN = (
    "    - {weight: 25, duration: 20s}\n    - {weight: 50, duration: 1s, approval: true}\n"
)
KILL_BEFORE_DUE_S = 15.0
FAILOVER_BOUND_S = 40.0
"""Generous: two shared cores; the asserts that matter are the exactly-once ones."""


def _log_events(world: World, event: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in world.bot.log_text().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


def _first_after(world: World, event: str, moment: datetime) -> float:
    times = (datetime.fromisoformat(line["timestamp"]) for line in _log_events(world, event))
    return (min(at for at in times if at >= moment) - moment).total_seconds()


def test_a_primary_killed_mid_stage_is_replaced_and_the_release_finishes_exactly_once(
    world_for: Any, redis_sentinels: SentinelCluster
) -> None:
    world: World = world_for(
        "gateway-api", FAILOVER_PLAN, bot_env={"REDIS_URL": "", **redis_sentinels.environment}
    )
    world.environment.pop("REDIS_URL")  # any relaunch goes through Sentinel too
    world.environment.update(redis_sentinels.environment)
    world.redis = redis_sentinels.client()
    world.store = ReleaseStore(world.redis)

    world.command(f"canary {APP} v2", user=ALICE)
    release_id = world.wait_for(Phase.RUNNING, 0).id
    stage = _delivered(world, release_id)
    assert stage.stage_due_at is not None
    time.sleep(max(0.0, stage.stage_due_at.timestamp() - KILL_BEFORE_DUE_S - time.time()))
    before = [entry.to_json() for entry in world.store.history(APP, limit=1000)]

    old = redis_sentinels.primary
    killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
    old.kill()
    try:
        promoted_s = redis_sentinels.wait_promoted(old.port)
        rejoined_s = promoted_s + redis_sentinels.rejoin(old)  # its pod comes back as a replica
    except TimeoutError:
        print(redis_sentinels.log_tails())
        raise
    waiting = world.wait_for(Phase.AWAITING_APPROVAL, 1)
    failed = [
        at
        for line in _log_events(world, "scheduler_pass_failed")
        if (at := datetime.fromisoformat(line["timestamp"])) >= killed_wall
    ]
    # A pass under way at the kill can end well with only its lease drop lost (it expires by
    # itself): count from the first pass that failed.
    first_pass_s = _first_after(world, "scheduler_pass", failed[0] if failed else killed_wall)
    first_pass_s += ((failed[0] if failed else killed_wall) - killed_wall).total_seconds()
    next_stage = next(
        entry
        for entry in world.store.history(APP, limit=1000)
        if (entry.action, entry.stage) == ("StageTimerElapsed", 1)
    )
    next_stage_s = (datetime.fromisoformat(next_stage.at) - killed_wall).total_seconds()
    assert waiting.stage_started_at is not None
    late_s = (datetime.fromisoformat(next_stage.at) - stage.stage_due_at).total_seconds()
    assert late_s >= 0
    assert first_pass_s < FAILOVER_BOUND_S and next_stage_s < FAILOVER_BOUND_S + KILL_BEFORE_DUE_S

    world.wait_split(TrafficSplit(50, 50, header_routed=False))
    assert world.post(world.click(ACTION_APPROVE, user=BOB)) == ""  # saved and confirmed
    world.wait_for(Phase.SUCCEEDED)
    done = _delivered(world, release_id)

    history = [entry.to_json() for entry in world.store.history(APP, limit=1000)]
    assert history[: len(before)] == before  # nothing the old primary had is lost
    assert _transitions(world) == TIMED_RELEASE  # every transition once, in order
    thread = _each_message_once(world, done)  # every Slack message once, one card
    approval_posts = [m for m in world.slack.messages(RELEASES.id) if is_approval_request(m)]
    assert len(world.slack.calls("chat.postMessage")) == 1 + len(thread) + len(approval_posts)
    assert "shop-api v2 is released" in thread[-1]
    assert world.bot.process.alive()
    print(
        f"primary SIGKILLed {stage.stage_due_at.timestamp() - killed_wall.timestamp():.1f} s "
        f"before the stage's end: Sentinel promoted the replica {promoted_s:.2f} s after the "
        f"kill, the old primary was back as a replica at {rejoined_s:.2f} s; the bot's first "
        f"successful write (a scheduler pass, which takes the release's lease) "
        f"{first_pass_s:.2f} s after the kill, after {len(failed)} failed passes; the next "
        f"stage began {next_stage_s:.2f} s after the kill ({late_s:.3f} s after its due time); "
        f"{len(thread)} thread messages, each once; {time.monotonic() - killed_at:.1f} s from "
        "the kill to the release's end"
    )
