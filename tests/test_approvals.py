"""N-of-M approvals of a stage (bot.core.machine, its wording, the card, the apps file and the
service on the real Redis), run by pytest.

A gated stage may need several distinct approvers; the same person counts once, a promote counts
as one approval, and two replicas approving at the same moment are each counted once.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.application.apps_file import ConfigError, load_config
from bot.application.service import Outcome, ReleaseService
from bot.core.apps import AuthorizationConfig, BotConfig
from bot.core.machine import (
    Approve,
    CanaryReady,
    NoticeKind,
    Notify,
    Promote,
    StageTimerElapsed,
    offers,
    transition,
)
from bot.core.plan import Plan, Stage
from bot.core.ports import SlackRefs
from bot.core.release import Phase, Release
from bot.entrypoints.demo import DEMO_APP, SimulatedCluster, Transcript
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore, RevisionConflict
from bot.slack.cards import is_alarm, release_card, render_text, rollback_alert
from tests.releases import ANA, BOB, MINUTE, Run, run_in, start
from tests.test_machine import ONE_OF_EACH

CAROL = "U0CAROL"
HOUR = timedelta(hours=1)
TWO_KEYS = Plan(
    name="two-keys",
    stages=(
        Stage(weight=10, duration_s=3600, needs_approval=True, approvals_needed=2),
        Stage(weight=100, duration_s=0),
    ),
)
LEADS = ("U0LEADONE", "S0LEADS")


def two_keys(*, four_eyes: bool = True, approvers: tuple[str, ...] = LEADS) -> Run:
    run = start(four_eyes=four_eyes, plan=TWO_KEYS, approvers=approvers)
    run.accept(CanaryReady(), after=MINUTE)
    return run


def waiting(**options: Any) -> Run:
    run = two_keys(**options)
    run.accept(StageTimerElapsed(), after=HOUR)
    assert run.release.phase is Phase.AWAITING_APPROVAL
    return run


# The machine.


def test_two_distinct_approvals_move_the_stage_on_and_the_first_is_counted() -> None:
    run = waiting()
    first = run.accept(Approve(by=BOB, stage_index=0), after=MINUTE)
    assert run.release.phase is Phase.AWAITING_APPROVAL
    assert run.release.approvers_of(0) == (BOB,)
    notice = first.effects[-1]
    assert isinstance(notice, Notify) and notice.kind is NoticeKind.APPROVED
    assert (
        notice.text
        == f"<@{BOB}> approved stage 1/2 (10 %): 1 of 2 approvals: <@{BOB}>; 1 more needed"
    )
    assert offers(run.release, Approve)

    run.accept(Approve(by=CAROL, stage_index=0), after=MINUTE)
    assert (run.release.phase, run.release.stage_index) == (Phase.RUNNING, 1)
    assert run.release.approvers_of(0) == (BOB, CAROL)


def test_the_same_person_approving_twice_counts_once_and_is_told_politely() -> None:
    run = waiting()
    run.accept(Approve(by=BOB), after=MINUTE)
    reason = run.refuse(Approve(by=BOB), after=MINUTE)
    assert "already approved by you; 1 more needed" in reason
    assert run.release.approvers_of(0) == (BOB,)
    assert run.release.phase is Phase.AWAITING_APPROVAL


def test_four_eyes_keeps_the_requester_out_of_the_count() -> None:
    run = waiting()
    assert "four-eyes rule" in run.refuse(Approve(by=ANA))
    assert run.release.approvers_of(0) == ()


def test_approvals_given_while_running_open_the_gate_for_the_timer() -> None:
    run = two_keys()
    run.accept(Approve(by=BOB), after=MINUTE)
    assert offers(run.release, Approve)  # 1 of 2: still asking
    run.accept(Approve(by=CAROL), after=MINUTE)
    assert run.release.phase is Phase.RUNNING and not offers(run.release, Approve)
    run.accept(StageTimerElapsed(), after=HOUR)
    assert run.release.stage_index == 1  # no wait for approval


def test_one_promote_alone_never_passes_a_two_approval_gate() -> None:
    run = waiting()
    reason = run.refuse(Promote(by=BOB), after=MINUTE)
    assert "needs 2 approvals" in reason and "a promote counts as one, so 1 more needed" in reason
    run.accept(Approve(by=BOB), after=MINUTE)
    assert "1 more needed" in run.refuse(Promote(by=BOB), after=MINUTE)  # BOB already counted
    run.accept(Promote(by=CAROL), after=MINUTE)  # CAROL's promote is the second approval
    assert run.release.stage_index == 1
    assert run.release.approvers_of(0) == (BOB, CAROL)


def test_a_full_promote_cannot_skip_a_later_two_approval_gate() -> None:
    plan = Plan(name="later", stages=(Stage(weight=5, duration_s=60), *TWO_KEYS.stages))
    run = start(plan=plan)
    run.accept(CanaryReady(), after=MINUTE)
    reason = run.refuse(Promote(by=BOB, full=True), after=MINUTE)
    assert "stage 2/3 (10 %)" in reason and "1 more needed" in reason
    assert run.release.phase is Phase.RUNNING and run.release.approvals == ()


def test_no_transition_enters_a_stage_twice_so_approvals_expire_with_their_stage() -> None:
    """Approvals are per stage_index: that is per visit only while no stage is re-entered."""
    for phase in Phase:
        run = run_in(phase)
        for event in ONE_OF_EACH:
            result = transition(run.release, event, now=run.now + timedelta(days=1))
            after = getattr(result, "release", None)
            if after is None:
                continue
            assert after.stage_index >= run.release.stage_index, (phase, event)
            if after.stage_index == run.release.stage_index and run.release.stage_started_at:
                assert after.stage_started_at == run.release.stage_started_at, (phase, event)


# Who may approve, in the request and on the card.


@pytest.mark.parametrize(
    ("four_eyes", "approvers", "says"),
    [
        (True, LEADS, f"May approve: <@U0LEADONE>, <!subteam^S0LEADS>, not <@{ANA}>"),
        (False, LEADS, "May approve: <@U0LEADONE>, <!subteam^S0LEADS>"),
        (True, (), f"May approve: anyone but <@{ANA}>"),
        (False, (), "May approve: anyone in the channel"),
    ],
)
def test_the_approval_request_names_who_may_approve_and_goes_to_the_channel(
    four_eyes: bool, approvers: tuple[str, ...], says: str
) -> None:
    run = two_keys(four_eyes=four_eyes, approvers=approvers)
    accepted = run.accept(StageTimerElapsed(), after=HOUR)
    (request,) = [e for e in accepted.effects if isinstance(e, Notify)]
    assert request.kind is NoticeKind.APPROVAL_REQUESTED and request.in_channel
    assert request.text.endswith(says)
    assert "needs 2 approvals from different people" in request.text
    assert not is_alarm(request)
    post = rollback_alert(run.release, request, mention="<!here>")
    assert "<!here>" not in post.text and "<!here>" not in str(post.payload()["blocks"])
    assert "approval needed" in str(post.payload()["blocks"])


def test_the_card_shows_who_approved_and_how_many_are_still_needed() -> None:
    run = waiting()
    run.accept(Approve(by=BOB), after=MINUTE)
    card = release_card(run.release, now=run.now)
    assert f"1 of 2 approvals: <@{BOB}>; 1 more needed" in str(card.payload()["blocks"])
    assert "[10 %] ⏸ approval" in render_text(card.blocks)
    plan = Plan(name="later", stages=(Stage(weight=5, duration_s=60), *TWO_KEYS.stages))
    earlier = start(plan=plan)
    earlier.accept(CanaryReady(), after=MINUTE)
    assert "[5 %] ▶ → 10 % ✋ 2 → 100 %" in render_text(
        release_card(earlier.release, now=earlier.now).blocks
    )
    running = two_keys()
    running.accept(Approve(by=BOB), after=MINUTE)
    text = str(release_card(running.release, now=running.now).payload()["blocks"])
    assert f"1 of 2 approvals: <@{BOB}>; 1 more needed" in text


# The apps file.

APP = """\
apps:
  shop-api:
    namespace: shop
    workload: shop-api
    slack_channel: "#releases"
    plan: two-keys
    router: {provider: istio, virtual_service: shop-api, destination_rule: shop-api, host: h}
plans:
  two-keys:
    - {weight: 10, duration: 1h, STAGE}
"""


def load_stage(tmp_path: Path, stage: str) -> Stage:
    path = tmp_path / "apps.yaml"
    path.write_text(APP.replace("STAGE", stage))
    return load_config(path).plan("two-keys").stages[0]


def test_approvals_n_asks_n_people_and_approval_true_still_asks_one(tmp_path: Path) -> None:
    assert load_stage(tmp_path, "approvals: 2").approvals_required == 2
    assert load_stage(tmp_path, "approval: true, approvals: 3").approvals_required == 3
    assert load_stage(tmp_path, "approval: true").approvals_required == 1
    assert load_stage(tmp_path, "approvals: 1").approvals_required == 1


@pytest.mark.parametrize(
    ("stage", "problem"),
    [
        ("approvals: 0", "greater than or equal to 1"),
        ("approvals: true", "valid integer"),
        ("approval: false, approvals: 2", "approval: false contradicts approvals: 2"),
    ],
)
def test_a_bad_approvals_count_is_named(tmp_path: Path, stage: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_stage(tmp_path, stage)
    assert problem in str(raised.value)
    assert "plans.two-keys[0]" in str(raised.value)


# Two replicas approving at the same moment, on the real Redis.


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.at += timedelta(milliseconds=1)
            return self.at


class Recorder:
    """An announcer that keeps every notice, from any thread."""

    def __init__(self) -> None:
        self.notices: list[Notify] = []
        self._lock = threading.Lock()

    def show_card(self, release: Release) -> SlackRefs:
        return SlackRefs(card_ts=release.card_ts or "1.0", thread_ts=release.thread_ts or "1.0")

    def notify(self, release: Release, notice: Notify) -> None:
        with self._lock:
            self.notices.append(notice)


class MeetingStore(ReleaseStore):
    """A replica's store whose first save waits for the other replica's: both decided on the
    same revision, so one of the two saves must meet the compare-and-set conflict."""

    def __init__(self, client: redis.Redis, meeting: threading.Barrier, conflicts: list[str]):
        super().__init__(client)
        self._meeting = meeting
        self._conflicts = conflicts
        self._met = False

    def save(self, *args: Any, **kwargs: Any) -> Any:
        if not self._met:
            self._met = True
            self._meeting.wait(timeout=10)
        try:
            return super().save(*args, **kwargs)
        except RevisionConflict as conflict:
            if kwargs.get("entry") is not None:  # a transition's save, not a delivery's
                self._conflicts.append(str(conflict))
            raise


TWO_KEYS_APP = DEMO_APP.model_copy(
    update={
        "plan": Plan(
            name="two-keys",
            stages=(
                Stage(weight=10, duration_s=1, needs_approval=True, approvals_needed=2),
                Stage(weight=100, duration_s=0),
            ),
        ),
        "authorization": AuthorizationConfig(approve=LEADS, four_eyes=True),
    }
)
CONFIG = BotConfig(source="tests", apps={DEMO_APP.name: TWO_KEYS_APP}, plans={})


class LeadsGroup:
    """A stand-in MembershipPort: S0LEADS holds Bob and Carol, the approvers these tests use."""

    def members(self, group_id: str) -> frozenset[str]:
        return frozenset({BOB, CAROL}) if group_id == "S0LEADS" else frozenset()

    def forget(self, group_id: str) -> None:
        """Nothing is cached here."""


def service(store: ReleaseStore, cluster: SimulatedCluster, clock: Clock, out: Recorder):
    return ReleaseService(
        config=CONFIG,
        store=store,
        leases=Leases(store=store),
        cluster=cluster,
        announcer=out,
        clock=clock,
        membership=LeadsGroup(),
    )


def approve_from_two_replicas(redis_client: redis.Redis, first: str, second: str):
    clock, out = Clock(), Recorder()
    cluster = SimulatedCluster(transcript=Transcript())
    main = service(ReleaseStore(redis_client), cluster, clock, out)
    started = main.start(
        app_name=DEMO_APP.name,
        version="v2",
        plan_name=None,
        user=ANA,
        channel=DEMO_APP.slack_channel.value,
    )
    assert started.release is not None
    release_id = started.release.id
    store = ReleaseStore(redis_client)
    for _ in range(20):
        stored = store.get(release_id)
        assert stored is not None
        if stored.release.phase is Phase.AWAITING_APPROVAL:
            break
        clock.at += timedelta(seconds=5)
        main.tick()
    assert stored.release.phase is Phase.AWAITING_APPROVAL
    assert "May approve: <@U0LEADONE>, <!subteam^S0LEADS>, not <@U0ANA>" in out.notices[-1].text

    meeting, conflicts = threading.Barrier(2), []
    replicas = [
        service(MeetingStore(redis_client, meeting, conflicts), cluster, clock, out)
        for _ in range(2)
    ]
    outcomes: dict[str, Outcome] = {}
    errors: list[BaseException] = []

    def approve(replica: ReleaseService, user: str, name: str) -> None:
        event = Approve(by=user, stage_index=0)
        try:
            outcomes[name] = replica.act(app_name=DEMO_APP.name, event=event, actor=user)
        except BaseException as error:  # a thread's exception would otherwise go unseen
            errors.append(error)
            raise

    threads = [
        threading.Thread(target=approve, args=(replicas[0], first, "first")),
        threading.Thread(target=approve, args=(replicas[1], second, "second")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len(outcomes) == 2, errors
    # they really met: one transition's save lost the race (and may lose once more to the
    # winner's delivery bookkeeping) and was decided again on the fresh release
    assert conflicts, "the two approvals did not meet"
    final = store.get(release_id)
    assert final is not None
    main.tick()  # a delivery the other replica's lease held back goes out on the next pass
    return final.release, outcomes, out


def test_two_people_approving_from_two_replicas_at_once_both_count(
    redis_client: redis.Redis,
) -> None:
    release, outcomes, out = approve_from_two_replicas(redis_client, BOB, CAROL)
    assert outcomes["first"].applied and outcomes["second"].applied
    assert set(release.approvers_of(0)) == {BOB, CAROL} and len(release.approvals) == 2
    assert release.stage_index == 1 and release.phase is not Phase.AWAITING_APPROVAL
    entered = [n for n in out.notices if n.kind is NoticeKind.STAGE_STARTED and "2/2" in n.text]
    assert len(entered) == 1  # the stage moved on once


def test_one_person_approving_from_two_replicas_at_once_counts_once(
    redis_client: redis.Redis,
) -> None:
    release, outcomes, _ = approve_from_two_replicas(redis_client, BOB, BOB)
    applied = sorted(outcome.applied for outcome in outcomes.values())
    assert applied == [False, True]
    refused = next(outcome for outcome in outcomes.values() if not outcome.applied)
    assert "already approved by you; 1 more needed" in refused.message
    assert release.approvers_of(0) == (BOB,) and len(release.approvals) == 1
    assert release.phase is Phase.AWAITING_APPROVAL
