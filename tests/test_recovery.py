"""Crash safety and store faults end to end (issue 5): a real `release-bot serve` process is
SIGKILLed mid-stage, made to die at each CrashPoint of a transition a person caused, and run
through a Redis restart, a Redis outage and Redis vanishing in the middle of a transition. A new
process (or the same one, for Redis) must finish every transition exactly once and on time, by
reconciling, with no operator action; Slack must see each message once (but for the last case:
see its test) and people must be told the truth about what changed. Stages last seconds, the
scheduler ticks every 0.25 s and leases last 2 s, so a dead bot's claim on a release is soon
gone."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.core.release import Phase, Release
from bot.kube.routers import TrafficSplit
from bot.slack.cards import ACTION_APPROVE
from tests.infra.processes import wait_until
from tests.infra.redis_server import RedisServer
from tests.infra.release_world import APP, World, is_approval_request, is_card
from tests.infra.slack_requests import ALICE, BOB, RELEASES

SHORT_LEASE = {"RELEASE_BOT_LEASE_SECONDS": "2"}
ON_TIME_S = 1.0
"""How late a stage may end after its saved due time, though its bot was killed meanwhile."""
STORE_DOWN = "state store unavailable, nothing changed"
SLACK_HOLDS_S = 3
"""Retry-After of a rate-limited card update: how long a bot waits, mid-transition, for Slack."""

TIMED_PLAN = "    - {weight: 25, duration: 6s}\n    - {weight: 50, duration: 1s, approval: true}\n"
GATED_PLAN = (
    "    - {weight: 25, duration: 1s, approval: true}\n"
    "    - {weight: 60, duration: 1s, approval: true}\n"
)
GATE_THEN_TIMER = (
    "    - {weight: 25, duration: 1s, approval: true}\n    - {weight: 50, duration: 1s}\n"
)

# Every transition of a release through TIMED_PLAN once approved: (action, stage, phase).
TIMED_RELEASE = [
    ("start", 0, "starting"),
    ("CanaryReady", 0, "running"),
    ("StageTimerElapsed", 1, "running"),
    ("StageTimerElapsed", 1, "awaiting_approval"),
    ("Approve", 2, "running"),  # the 100 % stage every plan ends with, 0 s long
    ("StageTimerElapsed", 2, "promoting"),
    ("PromotionDone", 2, "succeeded"),
]


# ---------------------------------------------------------------- SIGKILL mid-stage


def test_a_bot_killed_mid_stage_is_replaced_and_the_stage_ends_on_time(world_for: Any) -> None:
    world: World = world_for("istio", TIMED_PLAN, bot_env=SHORT_LEASE)
    world.command(f"canary {APP} v2", user=ALICE)
    release_id = world.wait_for(Phase.RUNNING, 0).id
    stage = _delivered(world, release_id)
    assert stage.stage_due_at is not None
    world.wait_split(TrafficSplit(75, 25, header_routed=False))
    _sleep_until(stage.stage_due_at.timestamp() - 4.0)  # 2 s into the 6 s stage

    killed_at = time.time()
    killed = world.bot
    # Mid-stage the release is not due (bot.core.schedule), so the bot holds no lease on it:
    # its successor is never kept waiting by one (a kill inside a transition: see below).
    lease_left_ms = max(int(world.redis.pttl(f"rb:lease:{release_id}")), 0)
    world.kill_bot()
    assert killed.process.popen is not None and killed.process.popen.returncode == -9
    world.relaunch(extra_env=SHORT_LEASE)
    ready_s = time.time() - killed_at

    waiting = world.wait_for(Phase.AWAITING_APPROVAL, 1)
    assert waiting.stage_started_at is not None
    late_s = (waiting.stage_started_at - stage.stage_due_at).total_seconds()
    assert 0 <= late_s < ON_TIME_S, f"stage 1 ended {late_s:.2f} s after its due time"
    world.wait_split(TrafficSplit(50, 50, header_routed=False))
    world.post(world.click(ACTION_APPROVE, user=BOB))
    world.wait_for(Phase.SUCCEEDED)

    done = _delivered(world, release_id)
    assert _transitions(world) == TIMED_RELEASE
    thread = _each_message_once(world, done)
    assert "shop-api v2 is released" in thread[-1]
    print(
        f"killed {stage.stage_due_at.timestamp() - killed_at:.2f} s before the stage's end, "
        f"holding its lease for {lease_left_ms} ms more; new bot ready {ready_s:.2f} s after "
        f"the kill; the stage ended {late_s:.3f} s after its due time; {len(thread)} thread "
        "messages, each once"
    )


# ---------------------------------------------------------------- a crash inside a transition


@pytest.mark.parametrize(
    ("crash_at", "trigger"),
    [("saved", "click"), ("saved", "command"), ("reconciled", "click"), ("reconciled", "command")],
)
def test_a_bot_dying_inside_an_approval_is_recovered_by_the_next_one(
    world_for: Any, crash_at: str, trigger: str
) -> None:
    world: World = world_for("istio", GATED_PLAN, bot_env=SHORT_LEASE)
    world.command(f"canary {APP} v2", user=ALICE)
    release_id = world.wait_for(Phase.AWAITING_APPROVAL, 0).id
    _delivered(world, release_id)
    world.wait_split(TrafficSplit(75, 25, header_routed=False))
    world.bot.stop()
    doomed = world.relaunch(extra_env={**SHORT_LEASE, "RELEASE_BOT_CRASH_AT": crash_at})

    if trigger == "click":
        world.post(world.click(ACTION_APPROVE, user=BOB))
    else:
        world.post(world.requests.slash_command(f"approve {APP}", user=BOB))
    wait_until(lambda: not doomed.process.alive(), timeout_s=10, what="the bot to crash")
    assert doomed.process.popen is not None and doomed.process.popen.returncode == 137
    assert f'"point": "{crash_at}"' in doomed.log_text()
    saved = _stored(world, release_id)
    assert (saved.phase, saved.stage_index) == (Phase.RUNNING, 1)
    approved = f"<@{BOB.id}> approved stage 1/3"
    assert not any(approved in text for text in world.thread_texts())  # Slack was never told
    expected_split = TrafficSplit(40, 60, header_routed=False)
    if crash_at == "saved":
        assert world.split() == TrafficSplit(75, 25, header_routed=False)
    else:
        assert world.split() == expected_split

    relaunched_at = time.monotonic()
    world.relaunch(extra_env=SHORT_LEASE)  # nobody types anything from here on
    ready_s = time.monotonic() - relaunched_at
    world.wait_split(expected_split)
    split_s = time.monotonic() - relaunched_at
    world.wait_for(Phase.AWAITING_APPROVAL, 1)
    recovered = _delivered(world, release_id)
    posts = [c for c in _thread_posts(world) if approved in c.params["text"]]
    assert len(posts) == 1 and posts[0].at > relaunched_at
    assert _transitions(world) == [
        ("start", 0, "starting"),
        ("CanaryReady", 0, "running"),
        ("StageTimerElapsed", 0, "awaiting_approval"),
        ("Approve", 1, "running"),
        ("StageTimerElapsed", 1, "awaiting_approval"),
    ]
    _each_message_once(world, recovered)
    print(
        f"crash at {crash_at} on a {trigger}: new bot ready in {ready_s:.2f} s; 60 % on the "
        f"canary {split_s:.2f} s and the approval in the thread "
        f"{posts[0].at - relaunched_at:.2f} s after the relaunch"
    )


@pytest.mark.parametrize("crash_at", ["saved", "reconciled"])
def test_a_bot_dying_as_it_starts_a_release_leaves_it_to_the_next_one(
    world_for: Any, crash_at: str
) -> None:
    world: World = world_for(
        "gateway-api", GATED_PLAN, bot_env={**SHORT_LEASE, "RELEASE_BOT_CRASH_AT": crash_at}
    )
    doomed = world.bot
    world.post(world.requests.slash_command(f"canary {APP} v2", user=ALICE))
    wait_until(lambda: not doomed.process.alive(), timeout_s=20, what="the bot to crash")
    assert doomed.process.popen is not None and doomed.process.popen.returncode == 137
    assert world.release().phase is Phase.STARTING
    assert world.slack.messages(RELEASES.id) == []  # no card, so no thread yet
    assert (world.image("shop-api-canary") is not None) == (crash_at == "reconciled")

    relaunched_at = time.monotonic()
    world.relaunch(extra_env=SHORT_LEASE)  # nobody types anything from here on
    release_id = world.wait_for(Phase.AWAITING_APPROVAL, 0).id
    world.wait_split(TrafficSplit(75, 25, header_routed=False))
    recovered = _delivered(world, release_id)
    recovery_s = time.monotonic() - relaunched_at
    assert world.image("shop-api-canary") == "registry.example/shop/api:v2"
    assert _transitions(world) == [
        ("start", 0, "starting"),
        ("CanaryReady", 0, "running"),
        ("StageTimerElapsed", 0, "awaiting_approval"),
    ]
    thread = _each_message_once(world, recovered)
    assert thread[0].startswith(f"🐤 <@{ALICE.id}> started a canary of shop-api v2")
    print(
        f"crash at {crash_at} on a start: card, {len(thread)} thread messages and stage 1 at "
        f"25 % {recovery_s:.2f} s after the relaunch"
    )


# ---------------------------------------------------------------- Redis restarted


def test_a_redis_restart_mid_release_loses_nothing(
    world_for: Any, redis_server: RedisServer
) -> None:
    world: World = world_for("gateway-api", TIMED_PLAN)
    world.command(f"canary {APP} v2", user=ALICE)
    release_id = world.wait_for(Phase.RUNNING, 0).id
    stage = _delivered(world, release_id)
    assert stage.stage_due_at is not None
    _sleep_until(stage.stage_due_at.timestamp() - 3.0)  # mid-stage
    before = world.state_snapshot()[0], _history(world)

    stopped_at = time.monotonic()
    stage_left_s = stage.stage_due_at.timestamp() - time.time()
    redis_server.restart()
    down_s = time.monotonic() - stopped_at
    assert (world.state_snapshot()[0], _history(world)) == before
    assert world.bot.process.alive()

    waiting = world.wait_for(Phase.AWAITING_APPROVAL, 1)
    assert waiting.stage_started_at is not None
    late_s = (waiting.stage_started_at - stage.stage_due_at).total_seconds()
    world.post(world.click(ACTION_APPROVE, user=BOB))
    world.wait_for(Phase.SUCCEEDED)
    done = _delivered(world, release_id)
    assert done.card_ts == stage.card_ts
    assert _transitions(world) == TIMED_RELEASE
    _each_message_once(world, done)
    print(
        f"Redis restarted in {down_s:.2f} s, {stage_left_s:.1f} s before the stage's end; the "
        f"stage ended {late_s:.3f} s after its due time"
    )


# ---------------------------------------------------------------- Redis down


def test_with_redis_down_people_are_told_nothing_changed_and_the_release_carries_on_after(
    world_for: Any, redis_server: RedisServer
) -> None:
    world: World = world_for("istio", GATE_THEN_TIMER)
    world.command(f"canary {APP} v2", user=ALICE)
    release_id = world.wait_for(Phase.AWAITING_APPROVAL, 0).id
    _delivered(world, release_id)
    before = world.state_snapshot(), _history(world)

    redis_server.stop()
    try:
        answers = {
            "approve": world.command(f"approve {APP}", user=BOB),
            "click": world.send(world.click(ACTION_APPROVE, user=BOB)),
            "status": world.command(f"status {APP}"),
            "start": world.command(f"canary {APP} v3"),
        }
        time.sleep(4.0)  # some failed scheduler passes, backing off
        health = world.bot.client.get("/healthz").status_code
        readiness = world.bot.client.get("/readyz").json()
        assert world.bot.process.alive()
    finally:
        redis_server.start()
    back_at = datetime.now(UTC)

    for name, answer in answers.items():
        assert answer.startswith(f":warning: {STORE_DOWN}"), (name, answer)
    assert health == 200
    # Not ready while Redis is down (tests/test_readiness.py), yet it answers what reaches it.
    assert readiness["ready"] is False and readiness["checks"]["redis"] is False, readiness
    assert (world.state_snapshot(), _history(world)) == before
    backoff = _scheduler_backoff(world)
    assert backoff[:3] == [0.5, 1.0, 2.0], backoff

    answer = world.command(f"approve {APP}", user=BOB)
    assert answer == ":white_check_mark: Approve applied to shop-api."
    world.wait_for(Phase.SUCCEEDED)
    done = _delivered(world, release_id)
    assert _transitions(world) == [
        ("start", 0, "starting"),
        ("CanaryReady", 0, "running"),
        ("StageTimerElapsed", 0, "awaiting_approval"),
        ("Approve", 1, "running"),
        ("StageTimerElapsed", 2, "running"),
        ("StageTimerElapsed", 2, "promoting"),
        ("PromotionDone", 2, "succeeded"),
    ]
    _each_message_once(world, done)
    print(
        f"Redis down: {len(answers)} requests answered '{STORE_DOWN}' within "
        f"{max(world.ack_seconds):.3f} s each; scheduler backoff {backoff} s; first good pass "
        f"{_first_pass_after(world, back_at):.2f} s after Redis was back; /readyz {readiness}"
    )


def test_redis_going_down_after_a_transition_is_saved_does_not_tell_the_person_nothing_changed(
    world_for: Any, redis_server: RedisServer
) -> None:
    # The approver's thread holds the release's lease when Redis goes: it cannot drop it, so the
    # scheduler waits out its TTL before it carries on.
    world: World = world_for("istio", GATED_PLAN, bot_env=SHORT_LEASE)
    world.command(f"canary {APP} v2", user=ALICE)
    release_id = world.wait_for(Phase.AWAITING_APPROVAL, 0).id
    _delivered(world, release_id)
    world.slack.rate_limit_next("chat.update", retry_after_s=SLACK_HOLDS_S)

    approve = world.requests.slash_command(f"approve {APP}", user=BOB)
    assert world.post(approve) == ""
    wait_until(
        lambda: any(c.http_status == 429 for c in world.slack.calls("chat.update")),
        timeout_s=10,
        what="the card update after the approval to be rate-limited",
    )
    redis_server.stop()  # the approval is saved; the bot is waiting out Slack's Retry-After
    try:
        answer = world.response_to(approve, timeout_s=SLACK_HOLDS_S + 10)
    finally:
        redis_server.start()

    assert answer == ":white_check_mark: Approve applied to shop-api."
    world.wait_for(Phase.AWAITING_APPROVAL, 1)
    world.wait_split(TrafficSplit(40, 60, header_routed=False))
    recovered = _delivered(world, release_id)
    assert _transitions(world) == [
        ("start", 0, "starting"),
        ("CanaryReady", 0, "running"),
        ("StageTimerElapsed", 0, "awaiting_approval"),
        ("Approve", 1, "running"),
        ("StageTimerElapsed", 1, "awaiting_approval"),
    ]
    thread = world.thread_texts()
    approvals = [text for text in thread if f"<@{BOB.id}> approved stage 1/3" in text]
    assert approvals, thread
    channel = world.slack.messages(RELEASES.id)
    assert [card["ts"] for card in channel if is_card(card)] == [recovered.card_ts]
    print(
        f"Redis down while Slack was told of a saved approval: the approver read {answer!r}; "
        f"the approval was posted {len(approvals)} time(s) (Slack had it before Redis could "
        "record that it had)"
    )


# ---------------------------------------------------------------- helpers


def _stored(world: World, release_id: str) -> Release:
    stored = world.store.get(release_id)
    assert stored is not None, f"release {release_id} is gone"
    return stored.release


def _delivered(world: World, release_id: str) -> Release:
    """The release once Slack has every message it decided and its card is current."""

    def delivered() -> bool:
        release = _stored(world, release_id)
        return not release.outbox and not release.card_stale

    wait_until(delivered, timeout_s=20, what="every Slack message of the release posted")
    return _stored(world, release_id)


def _transitions(world: World) -> list[tuple[str, int | None, str | None]]:
    return [
        (entry.action, entry.stage, entry.phase)
        for entry in world.store.history(APP, limit=1000)
        if entry.outcome == "applied"
    ]


def _history(world: World) -> list[str]:
    return [entry.to_json() for entry in world.store.history(APP, limit=1000)]


def _thread_posts(world: World) -> list[Any]:
    return [c for c in world.slack.calls("chat.postMessage") if c.params.get("thread_ts")]


def _each_message_once(world: World, release: Release) -> list[str]:
    """The thread holds each notice the release ever decided exactly once, under one card."""
    thread = world.thread_texts()
    assert not {text for text in thread if thread.count(text) > 1}, thread
    assert len(thread) == release.notices_decided, thread
    channel = world.slack.messages(RELEASES.id)
    assert [card["ts"] for card in channel if is_card(card)] == [release.card_ts]
    others = [message for message in channel if not is_card(message)]
    assert all(map(is_approval_request, others)), others  # each approval request once
    assert len({message["text"] for message in others}) == len(others)
    card_posts = [
        c
        for c in world.slack.calls("chat.postMessage")
        if not c.params.get("thread_ts") and is_card(c.params)
    ]
    assert len(card_posts) == 1
    return thread


def _sleep_until(epoch_s: float) -> None:
    time.sleep(max(0.0, epoch_s - time.time()))


def _log_events(world: World, event: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in world.bot.log_text().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


def _scheduler_backoff(world: World) -> list[float]:
    return [float(line["retry_in_s"]) for line in _log_events(world, "scheduler_pass_failed")]


def _first_pass_after(world: World, moment: datetime) -> float:
    """Seconds from `moment` to the bot's first successful scheduler pass after it."""
    passes = (
        datetime.fromisoformat(line["timestamp"]) for line in _log_events(world, "scheduler_pass")
    )
    first = min(at for at in passes if at >= moment)
    return (first - moment).total_seconds()
