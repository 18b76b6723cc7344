"""The bot's own metrics and log context (bot.application.telemetry and the adapters' telemetry).

Run by pytest. The unit tests drive the real release service on the real Redis (fixture
`redis_client`) with the demo's simulated cluster and a recording announcer standing in for
Kubernetes and Slack, and read prometheus_client's default registry around each run (deltas:
the registry is the process's). The last test scrapes a real `release-bot serve` process's
/metrics after a release a person rolled back from Slack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import structlog
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import LogCapture

from bot.application.scheduler import Scheduler
from bot.application.service import ReleaseService
from bot.application.telemetry import RollbackReason, rollback_reason
from bot.core.apps import BotConfig
from bot.core.errors import TemporaryError
from bot.core.machine import Approve, ChecksFailed, Fail, Notify, Rollback, VerificationFailed
from bot.core.ports import Observation, SlackRefs
from bot.core.release import Phase, Release
from bot.entrypoints.demo import DEMO_APP, DEMO_PLAN, SimulatedCluster, Transcript
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore
from tests.infra.processes import wait_until
from tests.infra.release_world import APP, World
from tests.infra.slack_requests import ALICE
from tests.releases import VERIFIED_JOB, run_in

ANA, BOB = "U0ANA", "U0BOB"
adapter_log = structlog.get_logger("tests.adapter_standin")


class LoggingCluster(SimulatedCluster):
    """The demo's simulated cluster, logging as an adapter does (no release named in its call)."""

    def reconcile(self, release: Release, app: Any) -> Observation:
        adapter_log.info("cluster_reconciled")
        return super().reconcile(release, app)


class RecordingAnnouncer:
    """AnnouncerPort: records what would be posted; while `refusing`, fails as Slack can."""

    def __init__(self) -> None:
        self.refusing = False
        self.posted: list[str] = []

    def show_card(self, release: Release) -> SlackRefs:
        if self.refusing:
            adapter_log.warning("slack_refused")
            raise TemporaryError("Slack chat.postMessage failed: ratelimited")
        self.posted.append(f"card {release.phase}")
        return SlackRefs(card_ts=release.card_ts or "1.0", thread_ts=release.thread_ts or "1.0")

    def notify(self, release: Release, notice: Notify) -> None:
        self.posted.append(str(notice.kind))


class Bot:
    """The release service on the test's Redis, with its stand-ins."""

    def __init__(self, client: redis.Redis) -> None:
        self.store = ReleaseStore(client)
        self.announcer = RecordingAnnouncer()
        config = BotConfig(source="tests", apps={APP: DEMO_APP}, plans={DEMO_PLAN.name: DEMO_PLAN})
        self.service = ReleaseService(
            config=config,
            store=self.store,
            leases=Leases(store=self.store),
            cluster=LoggingCluster(transcript=Transcript()),
            announcer=self.announcer,
        )

    def start(self) -> str:
        outcome = self.service.start(
            app_name=APP,
            version="v2",
            plan_name=None,
            user=ANA,
            channel=DEMO_APP.slack_channel.value,
        )
        assert outcome.applied and outcome.release is not None, outcome.message
        return outcome.release.id

    def act(self, release_id: str, event: Any, *, applied: bool = True) -> None:
        outcome = self.service.act_on_release(release_id=release_id, event=event, actor=BOB)
        assert outcome.applied is applied, outcome.message

    def phase(self, release_id: str) -> Phase:
        stored = self.store.get(release_id)
        assert stored is not None
        return stored.release.phase

    def tick_until(self, release_id: str, phase: Phase) -> None:
        for _ in range(5):
            if self.phase(release_id) is phase:
                return
            self.service.tick()
        assert self.phase(release_id) is phase


@pytest.fixture
def bot(redis_client: redis.Redis) -> Bot:
    return Bot(redis_client)


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def transitions(event: str, outcome: str = "applied") -> float:
    return value("release_bot_transitions_total", event=event, outcome=outcome)


def rollbacks(reason: str) -> float:
    return value("release_bot_rollbacks_total", reason=reason)


class Deltas:
    """How much each named sample grew since the snapshot."""

    def __init__(self, **samples: Any) -> None:
        self._read = samples
        self._before = {name: read() for name, read in samples.items()}

    def now(self) -> dict[str, float]:
        return {name: read() - self._before[name] for name, read in self._read.items()}


# ---------------------------------------------------------------- transitions and rollbacks


def test_a_manual_rollback_counts_every_transition_the_refusal_and_one_rollback(bot: Bot) -> None:
    deltas = Deltas(
        start=lambda: transitions("start"),
        ready=lambda: transitions("CanaryReady"),
        rollback=lambda: transitions("Rollback"),
        approve_refused=lambda: transitions("Approve", "refused"),
        done=lambda: transitions("RollbackDone"),
        manual=lambda: rollbacks("manual"),
        metric=lambda: rollbacks("metric"),
        failure=lambda: rollbacks("failure"),
    )
    release_id = bot.start()
    bot.tick_until(release_id, Phase.RUNNING)
    bot.act(release_id, Rollback(by=BOB, reason="error budget"))
    bot.act(release_id, Rollback(by=BOB, reason="again"))  # applied, but no second rollback
    bot.act(release_id, Approve(by=BOB, stage_index=0), applied=False)
    bot.tick_until(release_id, Phase.ROLLED_BACK)

    assert deltas.now() == {
        "start": 1,
        "ready": 1,
        "rollback": 2,
        "approve_refused": 1,
        "done": 1,
        "manual": 1,
        "metric": 0,
        "failure": 0,
    }


def test_failed_checks_past_the_limit_roll_back_on_metrics_and_fail_is_a_failure(bot: Bot) -> None:
    deltas = Deltas(
        metric=lambda: rollbacks("metric"),
        failure=lambda: rollbacks("failure"),
        manual=lambda: rollbacks("manual"),
        checks=lambda: transitions("ChecksFailed"),
    )
    spike = ChecksFailed(metric="error rate", value=7.0, threshold=5.0, unit="%", failure_limit=1)
    first = bot.start()
    bot.tick_until(first, Phase.RUNNING)
    bot.act(first, spike)  # one failed check is tolerated
    assert bot.phase(first) is Phase.RUNNING
    assert deltas.now()["metric"] == 0
    bot.act(first, spike)
    assert bot.phase(first) is Phase.ROLLING_BACK
    bot.act(first, Fail(reason="the apiserver refused"))  # already rolling back: not counted
    assert bot.phase(first) is Phase.FAILED

    second = bot.start()
    bot.act(second, Fail(reason="forbidden: release-bot may not patch deployments.apps"))

    assert deltas.now() == {"metric": 1, "failure": 1, "manual": 0, "checks": 2}
    for later_strategy_reason in ("verification", "switch_back"):  # exposed before any happens
        assert REGISTRY.get_sample_value(
            "release_bot_rollbacks_total", {"reason": later_strategy_reason}
        ) == pytest.approx(0.0)


def test_a_failed_verification_job_counts_as_a_verification_rollback() -> None:
    gate = run_in(Phase.VERIFYING)
    before = gate.release
    failed = VerificationFailed(job_name=VERIFIED_JOB, reason="BackoffLimitExceeded")
    after = gate.accept(failed).release

    assert rollback_reason(before, after, failed) is RollbackReason.VERIFICATION


# ---------------------------------------------------------------- what a pass reads


def releases_in(phase: Phase) -> float | None:
    return REGISTRY.get_sample_value(
        "release_bot_releases", {"phase": phase.value, "strategy": "canary"}
    )


def test_a_pass_gauges_releases_by_phase_and_the_notices_slack_has_not_taken(bot: Bot) -> None:
    bot.announcer.refusing = True
    release_id = bot.start()  # its card and first notices wait in the outbox
    left = bot.store.get(release_id)
    assert left is not None and len(left.release.outbox) == 2  # started, preflight

    bot.service.tick()  # reads it starting, applies CanaryReady; Slack still refuses
    assert releases_in(Phase.STARTING) == 1
    assert releases_in(Phase.RUNNING) == 0
    assert value("release_bot_outbox_depth") == 2

    waiting = bot.store.get(release_id)
    assert waiting is not None and len(waiting.release.outbox) > 2
    bot.service.tick()
    assert releases_in(Phase.STARTING) == 0
    assert releases_in(Phase.RUNNING) == 1
    assert value("release_bot_outbox_depth") == len(waiting.release.outbox)

    bot.announcer.refusing = False
    bot.service.tick()  # posts them all
    bot.service.tick()
    assert value("release_bot_outbox_depth") == 0
    assert releases_in(Phase.RUNNING) == 1
    assert releases_in(Phase.SUCCEEDED) == 0  # every phase is there, at 0 when empty


def test_every_scheduler_pass_is_timed_the_failed_ones_too() -> None:
    calls: list[int] = []
    done = threading.Event()

    def tick(wait_s: float) -> None:
        calls.append(1)
        time.sleep(0.02)
        if len(calls) == 1:
            raise TemporaryError("Redis is down")
        done.set()

    count_before = value("release_bot_scheduler_pass_seconds_count")
    sum_before = value("release_bot_scheduler_pass_seconds_sum")
    scheduler = Scheduler(tick=tick, interval_s=0.01)
    scheduler.start()
    try:
        assert done.wait(5.0)
    finally:
        scheduler.stop()
    assert value("release_bot_scheduler_pass_seconds_count") - count_before == len(calls) >= 2
    assert value("release_bot_scheduler_pass_seconds_sum") - sum_before >= 0.02 * len(calls)


# ---------------------------------------------------------------- log context


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """What structlog logs, with the context variables merged in as the server's logging does."""
    capture = LogCapture()
    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture.entries
    finally:
        structlog.configure(processors=processors)


def test_every_log_line_about_a_release_names_it_the_adapters_lines_too(
    bot: Bot, logged: list[dict[str, Any]]
) -> None:
    bot.announcer.refusing = True
    release_id = bot.start()
    bot.service.tick()
    bot.announcer.refusing = False
    bot.act(release_id, Rollback(by=BOB, reason="error budget"))
    bot.tick_until(release_id, Phase.ROLLED_BACK)

    events = {entry["event"] for entry in logged}
    assert {"cluster_reconciled", "slack_refused", "slack_deferred", "transition_applied"} <= events
    expected = {"release_id": release_id, "app": APP, "version": "v2", "strategy": "canary"}
    for entry in logged:
        assert {key: entry.get(key) for key in expected} == expected, entry
    assert structlog.contextvars.get_contextvars() == {}  # nothing left bound after the service


# ---------------------------------------------------------------- /metrics of the real bot


GATED_PLAN = (
    "    - {weight: 25, duration: 1s, approval: true}\n"
    "    - {weight: 100, duration: 1s, approval: true}\n"
)


def scrape(world: World) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = world.bot.client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    return sum(found for (sample, _), found in samples.items() if sample == name)


def test_metrics_of_the_real_bot_after_a_release_rolled_back_from_slack(world_for: Any) -> None:
    world: World = world_for("replicas", GATED_PLAN)
    world.command(f"canary {APP} v2", user=ALICE)
    world.wait_for(Phase.AWAITING_APPROVAL, 0)
    answer = world.command(f"rollback {APP} error budget burning")
    assert answer == ":white_check_mark: Rollback applied to shop-api."
    world.wait_for(Phase.ROLLED_BACK)
    world.wait_thread("shop-api is back on v1 for all traffic")

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

    def scraped_after_the_pass() -> bool:  # the pass after the last delivery finds nothing left
        samples.update(scrape(world))
        return total(samples, "release_bot_outbox_depth") == 0

    wait_until(scraped_after_the_pass, timeout_s=10, what="a pass with an empty outbox")
    applied = {
        dict(labels)["event"]: found
        for (name, labels), found in samples.items()
        if name == "release_bot_transitions_total" and dict(labels)["outcome"] == "applied"
    }
    assert applied == {
        "start": 1,
        "CanaryReady": 1,
        "StageTimerElapsed": 1,
        "Rollback": 1,
        "RollbackDone": 1,
    }
    rolled_back = {
        dict(labels)["reason"]: found
        for (name, labels), found in samples.items()
        if name == "release_bot_rollbacks_total"
    }
    assert rolled_back == {
        "manual": 1,
        "metric": 0,
        "failure": 0,
        "verification": 0,
        "switch_back": 0,
    }
    assert total(samples, "release_bot_kube_call_seconds_count") > 0
    deployment_gets = (
        "release_bot_kube_call_seconds_count",
        frozenset({("verb", "get"), ("resource", "deployments.apps")}),
    )
    assert samples.get(deployment_gets, 0) > 0
    for method in ("chat.postMessage", "chat.update"):
        key = ("release_bot_slack_call_seconds_count", frozenset({("method", method)}))
        assert samples.get(key, 0) > 0, method
    assert total(samples, "release_bot_slack_call_errors_total") == 0
    assert total(samples, "release_bot_scheduler_pass_seconds_count") > 0
    assert (
        "release_bot_releases",
        frozenset({("phase", "rolled_back"), ("strategy", "canary")}),
    ) in samples
