"""The release state machine and record (bot.core.machine, bot.core.release): pure, so no service is
started.

Run by pytest. Every phase meets every event type; the default plan is walked end to end; the
safety rules (rollback first, gates, four-eyes, pauses, late timers) are each pinned down.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import get_args

import pytest
from pydantic import ValidationError

from bot.core.argo import RolloutAbort
from bot.core.machine import (
    Accepted,
    Advance,
    Approve,
    BlueRetentionElapsed,
    CanaryReady,
    ChecksFailed,
    ChecksInconclusive,
    ChecksPassed,
    Event,
    Fail,
    NoticeKind,
    Notify,
    Pause,
    PauseTimerElapsed,
    PodsObserved,
    Promote,
    PromotionDone,
    ReconcileCluster,
    Refused,
    Resume,
    Rollback,
    RollbackDone,
    RolloutAborted,
    RolloutMovedOn,
    RolloutObserved,
    StageTimerElapsed,
    Switched,
    UpdateCard,
    VerificationFailed,
    VerificationPassed,
    start_release,
    transition,
)
from bot.core.plan import DEFAULT_PLAN, HOUR, Plan, Stage
from bot.core.release import (
    Approval,
    BlueGreenPods,
    DesiredTraffic,
    Phase,
    Release,
    RolloutView,
    desired_traffic,
)
from tests.releases import (
    ANA,
    BOB,
    MINUTE,
    SMOKE,
    T0,
    VERIFIED_JOB,
    VERIFIED_PLAN,
    run_in,
    start,
)

ONE_OF_EACH: list[Event] = [
    CanaryReady(),
    StageTimerElapsed(),
    PauseTimerElapsed(),
    Advance(by=BOB),
    Approve(by=BOB),
    Pause(by=BOB, reason="checking dashboards"),
    Resume(by=BOB),
    Rollback(by=BOB, reason="bad"),
    Promote(by=BOB),
    PromotionDone(),
    RollbackDone(),
    ChecksPassed(summary="error rate 0.2 % (stable 0.1 %)"),
    ChecksFailed(metric="error_rate", value=7.2, threshold=5, unit="%"),
    ChecksInconclusive(reason="no samples"),
    VerificationPassed(job_name=VERIFIED_JOB),
    VerificationFailed(job_name=VERIFIED_JOB, reason="BackoffLimitExceeded", log_tail=("FAIL",)),
    Fail(reason="deployment deleted"),
    Switched(selector_s=0.2, endpoints_s=0.3),
    BlueRetentionElapsed(),
    PodsObserved(pods=BlueGreenPods(blue_ready=3, blue_desired=3, green_ready=1, green_desired=3)),
    RolloutAborted(abort=RolloutAbort(message="RolloutAborted: aborted from outside")),
    RolloutObserved(view=RolloutView(phase="Paused", step=3, steps=8)),
    RolloutMovedOn(stage_index=3),
]
CANARY_PHASES = [phase for phase in Phase if phase not in (Phase.SWITCHING, Phase.KEEPING_BLUE)]

# The phase each accepted pair leads to, one day after reaching the phase (so every timer is
# due); the running release is in stage 3/4 (50 %, needs approval). Every pair not listed
# must be refused.
EXPECTED_NEXT: dict[tuple[Phase, type[Event]], Phase] = {
    (Phase.STARTING, CanaryReady): Phase.RUNNING,
    (Phase.STARTING, Rollback): Phase.ROLLING_BACK,
    (Phase.STARTING, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.STARTING, Fail): Phase.FAILED,
    (Phase.VERIFYING, VerificationPassed): Phase.RUNNING,
    (Phase.VERIFYING, VerificationFailed): Phase.ROLLING_BACK,
    (Phase.VERIFYING, Rollback): Phase.ROLLING_BACK,
    (Phase.VERIFYING, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.VERIFYING, ChecksPassed): Phase.VERIFYING,
    (Phase.VERIFYING, ChecksInconclusive): Phase.VERIFYING,
    (Phase.VERIFYING, Fail): Phase.FAILED,
    (Phase.RUNNING, StageTimerElapsed): Phase.AWAITING_APPROVAL,
    (Phase.RUNNING, Advance): Phase.AWAITING_APPROVAL,
    (Phase.RUNNING, Approve): Phase.RUNNING,
    (Phase.RUNNING, Pause): Phase.PAUSED,
    (Phase.RUNNING, Promote): Phase.RUNNING,
    (Phase.RUNNING, Rollback): Phase.ROLLING_BACK,
    (Phase.RUNNING, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.RUNNING, ChecksInconclusive): Phase.PAUSED,
    (Phase.RUNNING, ChecksPassed): Phase.RUNNING,
    (Phase.RUNNING, Fail): Phase.FAILED,
    (Phase.AWAITING_APPROVAL, Approve): Phase.RUNNING,
    (Phase.AWAITING_APPROVAL, Pause): Phase.PAUSED,
    (Phase.AWAITING_APPROVAL, Promote): Phase.RUNNING,
    (Phase.AWAITING_APPROVAL, Rollback): Phase.ROLLING_BACK,
    (Phase.AWAITING_APPROVAL, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.AWAITING_APPROVAL, ChecksInconclusive): Phase.PAUSED,
    (Phase.AWAITING_APPROVAL, ChecksPassed): Phase.AWAITING_APPROVAL,
    (Phase.AWAITING_APPROVAL, Fail): Phase.FAILED,
    (Phase.PAUSED, Resume): Phase.RUNNING,
    (Phase.PAUSED, PauseTimerElapsed): Phase.RUNNING,
    (Phase.PAUSED, Rollback): Phase.ROLLING_BACK,
    (Phase.PAUSED, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.PAUSED, ChecksPassed): Phase.PAUSED,  # paused by a person: recorded, still paused
    (Phase.PAUSED, Fail): Phase.FAILED,
    (Phase.PROMOTING, PromotionDone): Phase.SUCCEEDED,
    (Phase.PROMOTING, Rollback): Phase.ROLLING_BACK,
    (Phase.PROMOTING, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.PROMOTING, Fail): Phase.FAILED,
    (Phase.ROLLING_BACK, RollbackDone): Phase.ROLLED_BACK,
    (Phase.ROLLING_BACK, Rollback): Phase.ROLLING_BACK,
    (Phase.ROLLING_BACK, Fail): Phase.FAILED,
}

UNFINISHED = [phase for phase in CANARY_PHASES if not phase.is_terminal]


def test_the_samples_cover_every_event_type() -> None:
    assert {type(event) for event in ONE_OF_EACH} == set(get_args(Event))


def assert_effects_in_order(accepted: Accepted) -> None:
    """Cluster first, then at most one timer, then the card, then notices."""
    effects = list(accepted.effects)
    if ReconcileCluster() in effects:
        assert effects.index(ReconcileCluster()) == 0
    assert effects.count(UpdateCard()) == 1
    card = effects.index(UpdateCard())
    assert all(isinstance(effect, Notify) for effect in effects[card + 1 :])
    assert not any(isinstance(effect, Notify) for effect in effects[:card])


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda event: type(event).__name__)
@pytest.mark.parametrize("phase", CANARY_PHASES, ids=str)
def test_every_phase_meets_every_event(phase: Phase, event: Event) -> None:
    run = run_in(phase)
    result = transition(run.release, event, now=run.now + timedelta(days=1))
    expected = EXPECTED_NEXT.get((phase, type(event)))
    if expected is None:
        assert isinstance(result, Refused), f"{phase} accepted {event}"
        assert "shop-api" in result.reason
        return
    assert isinstance(result, Accepted), f"{phase} refused {event}: {result}"
    assert result.release.phase is expected
    assert_effects_in_order(result)
    assert Release.model_validate_json(result.release.model_dump_json()) == result.release


def traffic(weight: int, *, header: bool = False) -> DesiredTraffic:
    return DesiredTraffic(canary_weight=weight, header_routing=header)


# (event, time since the previous step, phase, stage index, desired traffic, new timer due after)
DEFAULT_PLAN_WALK: list[tuple[Event, timedelta, Phase, int, DesiredTraffic, timedelta | None]] = [
    (CanaryReady(), 2 * MINUTE, Phase.RUNNING, 0, traffic(0, header=True), timedelta(hours=1)),
    (StageTimerElapsed(), timedelta(hours=1), Phase.RUNNING, 1, traffic(5), timedelta(hours=2)),
    (StageTimerElapsed(), timedelta(hours=2), Phase.RUNNING, 2, traffic(50), timedelta(hours=4)),
    (StageTimerElapsed(), timedelta(hours=4), Phase.AWAITING_APPROVAL, 2, traffic(50), None),
    (Approve(by=BOB), 10 * MINUTE, Phase.RUNNING, 3, traffic(100), timedelta(0)),
    (StageTimerElapsed(), timedelta(0), Phase.PROMOTING, 3, traffic(100), None),
    (PromotionDone(), 3 * MINUTE, Phase.SUCCEEDED, 3, traffic(0), None),
]


def test_the_default_plan_walks_from_0_to_100_percent_and_succeeds() -> None:
    run = start()
    assert run.release.phase is Phase.STARTING
    assert desired_traffic(run.release) == traffic(0)
    for event, after, phase, stage_index, expected_traffic, timer_after in DEFAULT_PLAN_WALK:
        run.accept(event, after=after)
        assert (run.release.phase, run.release.stage_index) == (phase, stage_index), event
        assert desired_traffic(run.release) == expected_traffic, event
        if timer_after is not None:
            assert run.release.stage_due_at == run.now + timer_after
    assert run.release.approvals == (Approval(by=BOB, at=run.now - 3 * MINUTE, stage_index=2),)
    assert run.release.outcome_reason == "all 4 stages passed"
    assert run.release.finished_at == run.now


def test_starting_creates_the_canary_and_posts_the_card() -> None:
    started = start_release(
        release_id="rel-1",
        app="shop-api",
        version="registry.example.com/shop/api:v2.4.1",
        previous_version=None,
        plan=DEFAULT_PLAN,
        requested_by=ANA,
        channel="C0DEPLOYS",
        four_eyes=False,
        now=T0,
    )
    assert started.effects[:2] == (ReconcileCluster(), UpdateCard())
    notice = started.effects[2]
    assert isinstance(notice, Notify)
    assert notice.text == (
        "<@U0ANA> started a canary of shop-api registry.example.com/shop/api:v2.4.1, plan default: "
        "0 % by header for 1h → 5 % for 2h → 50 % for 4h + approval → 100 %"
    )
    assert started.release.stage_due_at is None


def test_a_stage_timer_that_is_not_due_yet_is_refused() -> None:
    run = run_in(Phase.RUNNING)  # stage 3/4 began at 13:01, due 17:01
    assert run.refuse(StageTimerElapsed(), after=timedelta(hours=4) - MINUTE) == (
        "shop-api's stage timer is not due until 17:01 UTC"
    )
    run.accept(StageTimerElapsed(), after=MINUTE)
    assert run.release.phase is Phase.AWAITING_APPROVAL


def test_a_late_stage_timer_moves_one_stage_and_gives_it_its_full_time() -> None:
    run = start()
    run.accept(CanaryReady())
    late = timedelta(hours=5)  # stage 1 was due after 1 h; stage 2 would have been over too
    run.accept(StageTimerElapsed(), after=late)
    assert run.release.stage_index == 1
    assert run.release.stage_started_at == T0 + late
    assert run.release.stage_due_at == T0 + late + timedelta(hours=2)
    assert "not due until" in run.refuse(StageTimerElapsed())


@pytest.mark.parametrize("phase", UNFINISHED, ids=str)
def test_rollback_from_every_unfinished_phase_shifts_traffic_first(phase: Phase) -> None:
    run = run_in(phase)
    accepted = run.accept(Rollback(by=BOB, reason="customers complain"), after=MINUTE)
    assert accepted.effects[0] == ReconcileCluster()
    assert run.release.phase is Phase.ROLLING_BACK
    assert desired_traffic(run.release) == traffic(0)
    assert run.release.pause is None
    assert run.release.stage_due_at is None
    if phase is not Phase.ROLLING_BACK:
        assert (run.release.outcome_by, run.release.outcome_reason) == (BOB, "customers complain")
    run.accept(RollbackDone(), after=MINUTE)
    assert run.release.phase is Phase.ROLLED_BACK


def test_rolling_back_again_reapplies_the_traffic_shift_and_keeps_the_first_decision() -> None:
    run = run_in(Phase.ROLLING_BACK)
    accepted = run.accept(Rollback(by=BOB), after=MINUTE)
    assert accepted.effects[0] == ReconcileCluster()
    assert (run.release.outcome_by, run.release.outcome_reason) == (ANA, "error spike")


@pytest.mark.parametrize(
    "phase", [phase for phase in UNFINISHED if phase is not Phase.ROLLING_BACK], ids=str
)
def test_failed_checks_roll_back_first_and_alert_the_channel(phase: Phase) -> None:
    run = run_in(phase)
    failed = ChecksFailed(metric="error_rate", value=7.2, threshold=5, unit="%")
    accepted = run.accept(failed, after=MINUTE)
    assert accepted.effects[0] == ReconcileCluster()
    assert run.release.phase is Phase.ROLLING_BACK
    assert run.release.outcome_by is None
    alerts = [e for e in accepted.effects if isinstance(e, Notify) and e.in_channel]
    assert [alert.kind for alert in alerts] == [NoticeKind.AUTO_ROLLBACK]
    assert "error_rate is 7.2 % against a threshold of 5 %" in alerts[0].text


def test_the_auto_rollback_alert_names_metric_value_threshold_and_stage() -> None:
    run = run_in(Phase.RUNNING)
    failed = ChecksFailed(metric="p99_latency", value=812.5, threshold=500, unit="ms")
    alert = run.accept(failed).effects[-1]
    assert alert == Notify(
        kind=NoticeKind.AUTO_ROLLBACK,
        text="shop-api v2.4.1 is rolling back automatically at stage 3/4 (50 %): "
        "p99_latency is 812.5 ms against a threshold of 500 ms",
        in_channel=True,
    )


def test_pause_keeps_the_remaining_stage_time_and_resume_restores_it() -> None:
    run = run_in(Phase.RUNNING)  # stage 3/4, 4 h
    run.accept(Pause(by=BOB, reason="checking dashboards"), after=timedelta(hours=1))
    assert run.release.pause is not None
    assert run.release.pause.remaining_s == 3 * HOUR
    assert run.release.stage_due_at is None
    assert desired_traffic(run.release) == traffic(50)  # a pause holds the traffic where it is
    assert run.refuse(StageTimerElapsed(), after=timedelta(hours=3)) == (
        "shop-api: StageTimerElapsed does not apply while it is paused by <@U0BOB>: "
        "checking dashboards"
    )

    run.accept(Resume(by=BOB), after=timedelta(days=2))
    due = run.now + timedelta(hours=3)
    assert (run.release.phase, run.release.stage_due_at, run.release.pause) == (
        Phase.RUNNING,
        due,
        None,
    )
    assert "not due" in run.refuse(StageTimerElapsed(), after=timedelta(hours=3) - MINUTE)
    run.accept(StageTimerElapsed(), after=MINUTE)
    assert run.release.phase is Phase.AWAITING_APPROVAL


def test_a_pause_with_a_duration_resumes_by_itself() -> None:
    run = run_in(Phase.RUNNING)
    paused = run.accept(Pause(by=BOB, reason="lunch", duration_s=1800), after=timedelta(hours=1))
    resume_at = run.now + timedelta(minutes=30)
    assert run.release.pause is not None
    assert run.release.pause.resume_due_at == resume_at
    assert paused.effects[-1] == Notify(
        kind=NoticeKind.PAUSED,
        text="<@U0BOB> paused shop-api at stage 3/4 (50 %): lunch; "
        "it resumes by itself at 14:31 UTC",
    )
    assert run.refuse(PauseTimerElapsed(), after=29 * MINUTE) == (
        "shop-api's pause does not end until 14:31 UTC"
    )
    resumed = run.accept(PauseTimerElapsed(), after=MINUTE)
    assert run.release.stage_due_at == resume_at + timedelta(hours=3)
    assert resumed.effects[-1] == Notify(
        kind=NoticeKind.RESUMED,
        text="shop-api's timed pause is over; stage 3/4 (50 %) goes on with 3h left",
    )


def test_a_pause_without_a_duration_ignores_pause_timers() -> None:
    run = run_in(Phase.RUNNING)
    run.accept(Pause(by=BOB))
    assert run.refuse(PauseTimerElapsed(), after=timedelta(days=1)) == (
        "shop-api's pause has no end time; resume it with /release resume shop-api"
    )


@pytest.mark.parametrize("duration_s", [0, -60])
def test_a_pause_duration_must_be_positive(duration_s: int) -> None:
    run = run_in(Phase.RUNNING)
    assert run.refuse(Pause(by=BOB, duration_s=duration_s)) == (
        f"a pause duration must be positive, got {duration_s} s"
    )


def test_a_pause_while_awaiting_approval_resumes_to_awaiting_approval() -> None:
    run = run_in(Phase.AWAITING_APPROVAL)
    run.accept(Pause(by=BOB, duration_s=600))
    assert run.release.pause is not None
    assert run.release.pause.remaining_s == 0
    run.accept(Resume(by=BOB), after=MINUTE)
    assert run.release.phase is Phase.AWAITING_APPROVAL
    assert run.release.pause is None  # the pause's due time is gone: it must not fire later
    assert "does not apply" in run.refuse(PauseTimerElapsed())
    run.accept(Approve(by=BOB))
    assert run.release.stage_index == 3


def test_inconclusive_checks_pause_and_never_promote() -> None:
    run = run_in(Phase.AWAITING_APPROVAL)
    accepted = run.accept(ChecksInconclusive(reason="no samples from the canary for 10m"))
    assert run.release.phase is Phase.PAUSED
    assert run.release.pause is not None
    assert run.release.pause.by is None
    assert run.release.pause.reason == "metrics inconclusive: no samples from the canary for 10m"
    assert accepted.effects[-1] == Notify(
        kind=NoticeKind.PAUSED,
        text="shop-api v2.4.1 paused itself at stage 3/4 (50 %): metrics are inconclusive "
        "(no samples from the canary for 10m); it never moves on without a passing check. "
        "It resumes by itself when a check passes again, or resume or roll it back",
        in_channel=True,
    )
    gated: list[Event] = [
        Approve(by=BOB),
        Promote(by=BOB),
        Promote(by=BOB, full=True),
        Advance(by=BOB),
    ]
    for event in gated:
        assert run.refuse(event) == (
            "shop-api is paused: metrics inconclusive: no samples from the canary for 10m; "
            "resume it first"
        )
    still = run.accept(ChecksInconclusive(reason="still nothing"), after=MINUTE)
    assert still.effects == (UpdateCard(),)  # rechecked quietly while paused by metrics
    assert run.release.last_check_at == run.now
    resumed = run.accept(ChecksPassed(summary="error rate 0.3 %"), after=MINUTE)
    assert run.release.phase is Phase.AWAITING_APPROVAL
    assert resumed.effects[-1].text.startswith(  # type: ignore[union-attr]
        "metrics of shop-api are conclusive again (error rate 0.3 %); stage 3/4 (50 %) still"
    )


def test_a_person_pause_is_not_lifted_by_checks() -> None:
    run = run_in(Phase.PAUSED)
    run.accept(ChecksPassed(summary="error rate 0.1 %"))
    assert run.release.phase is Phase.PAUSED
    assert run.release.latest_metrics == "error rate 0.1 %"
    assert "already paused" in run.refuse(ChecksInconclusive(reason="Prometheus down"))


def test_failed_checks_are_tolerated_up_to_the_failure_limit_then_roll_back() -> None:
    run = run_in(Phase.RUNNING)
    failed = ChecksFailed(
        metric="error rate", value=7.2, threshold=5, unit="%", failure_limit=1, summary="7.2 %"
    )
    tolerated = run.accept(failed)
    assert run.release.phase is Phase.RUNNING
    assert (run.release.checks_failed, run.release.latest_metrics) == (1, "7.2 %")
    assert tolerated.effects[-1] == Notify(
        kind=NoticeKind.CHECK_FAILED,
        text="a metric check of shop-api v2.4.1 failed at stage 3/4 (50 %): error rate is 7.2 % "
        "against a threshold of 5 %; 1 of 1 failed checks tolerated in this stage, one more "
        "rolls it back",
    )
    rolled = run.accept(failed, after=MINUTE)
    assert run.release.phase is Phase.ROLLING_BACK
    assert rolled.effects[0] == ReconcileCluster()
    assert isinstance(rolled.effects[-1], Notify) and rolled.effects[-1].in_channel


def test_a_gated_stage_ends_on_its_timer_only_after_a_passing_check() -> None:
    run = start()
    run.release = run.release.evolve(analysis_enabled=True)
    run.accept(CanaryReady())
    due = run.release.stage.duration_s
    reason = run.refuse(StageTimerElapsed(), after=timedelta(seconds=due))
    assert reason == (
        "stage 1/4 (0 %) of shop-api has no passing metric check yet; it moves on once one passes"
    )
    snapshot = run.accept(ChecksPassed(summary="no public traffic", snapshot="*metrics* ..."))
    assert snapshot.effects[-1] == Notify(kind=NoticeKind.SNAPSHOT, text="*metrics* ...")
    assert run.release.last_snapshot_at == run.now
    run.accept(StageTimerElapsed())
    assert (run.release.stage_index, run.release.checks_passed) == (1, 0)  # counts reset


def test_advance_never_skips_an_approval_gate() -> None:
    run = run_in(Phase.RUNNING)
    accepted = run.accept(Advance(by=BOB))
    assert run.release.phase is Phase.AWAITING_APPROVAL
    assert [e.kind for e in accepted.effects if isinstance(e, Notify)] == [
        NoticeKind.ADVANCED,
        NoticeKind.APPROVAL_REQUESTED,
    ]
    assert run.refuse(Advance(by=BOB)) == (
        "stage 3/4 (50 %) of shop-api waits for approval, "
        "and advance never skips an approval gate: /release approve shop-api"
    )


def test_advance_moves_an_ungated_stage_on_at_once() -> None:
    run = start()
    run.accept(CanaryReady())
    accepted = run.accept(Advance(by=BOB), after=MINUTE)
    assert run.release.stage_index == 1
    assert accepted.effects[0] == ReconcileCluster()
    assert desired_traffic(run.release) == traffic(5)


def test_an_approval_given_while_running_pre_approves_the_stage() -> None:
    run = run_in(Phase.RUNNING)
    accepted = run.accept(Approve(by=BOB), after=MINUTE)
    assert run.release.phase is Phase.RUNNING
    assert ReconcileCluster() not in accepted.effects
    assert run.release.approvals == (Approval(by=BOB, at=run.now, stage_index=2),)
    assert run.refuse(Approve(by=BOB), after=MINUTE) == (
        "stage 3/4 (50 %) of shop-api is already approved by <@U0BOB> at 13:02 UTC"
    )
    run.accept(StageTimerElapsed(), after=timedelta(hours=4))
    assert (run.release.phase, run.release.stage_index) == (Phase.RUNNING, 3)


def test_a_stage_without_a_gate_needs_no_approval() -> None:
    run = start()
    run.accept(CanaryReady())
    assert run.refuse(Approve(by=BOB)) == "stage 1/4 (0 %) of shop-api needs no approval"


def test_a_double_click_cannot_act_on_two_stages() -> None:
    run = start()
    run.accept(CanaryReady())
    run.accept(Advance(by=BOB, stage_index=0))
    assert run.refuse(Advance(by=BOB, stage_index=0)) == (
        "that was meant for stage 1/4, but shop-api is now in stage 2/4 (5 %); nothing was changed"
    )
    assert run.release.stage_index == 1


def test_four_eyes_keeps_the_requester_from_approving_their_own_release() -> None:
    run = run_in(Phase.AWAITING_APPROVAL, four_eyes=True)
    four_eyes = (
        "four-eyes rule: <@U0ANA> requested this release of shop-api, "
        "so someone else must approve stage 3/4 (50 %)"
    )
    assert run.refuse(Approve(by=ANA)) == four_eyes
    assert run.refuse(Promote(by=ANA)) == four_eyes
    run.accept(Approve(by=BOB))
    assert run.release.approvals == (Approval(by=BOB, at=run.now, stage_index=2),)


def test_four_eyes_also_stops_pre_approval_and_promote_full_past_a_gate() -> None:
    run = start(four_eyes=True)
    run.accept(CanaryReady())
    assert "four-eyes rule" in run.refuse(Promote(by=ANA, full=True))
    run.accept(Promote(by=ANA))  # stage 1/4 has no gate: the requester may move it on
    assert run.release.stage_index == 1
    run.accept(StageTimerElapsed(), after=timedelta(hours=2))
    assert "four-eyes rule" in run.refuse(Approve(by=ANA))


def test_without_four_eyes_the_requester_may_approve() -> None:
    run = run_in(Phase.AWAITING_APPROVAL)
    run.accept(Approve(by=ANA))
    assert run.release.approvals[-1].by == ANA


def test_promote_is_an_approved_advance() -> None:
    run = run_in(Phase.RUNNING)
    accepted = run.accept(Promote(by=BOB), after=MINUTE)
    assert (run.release.phase, run.release.stage_index) == (Phase.RUNNING, 3)
    assert accepted.effects[0] == ReconcileCluster()
    assert run.release.approvals == (Approval(by=BOB, at=run.now, stage_index=2),)
    run.accept(Promote(by=BOB), after=MINUTE)  # from the last stage
    assert run.release.phase is Phase.PROMOTING
    assert run.release.outcome_reason == "promoted by <@U0BOB> from the last stage"


def test_promote_full_skips_the_remaining_stages_and_records_the_gates_it_passes() -> None:
    run = start()
    run.accept(CanaryReady())
    accepted = run.accept(Promote(by=BOB, full=True), after=MINUTE)
    assert accepted.effects[:2] == (ReconcileCluster(), UpdateCard())
    assert run.release.phase is Phase.PROMOTING
    assert desired_traffic(run.release) == traffic(100)
    assert run.release.approvals == (Approval(by=BOB, at=run.now, stage_index=2),)
    assert (run.release.outcome_by, run.release.outcome_reason) == (
        BOB,
        "promoted by <@U0BOB>, skipping 3 of 4 stages",
    )
    assert run.refuse(Promote(by=BOB, full=True)) == "can't promote shop-api: it is being promoted"


def test_a_plan_whose_last_stage_needs_approval_promotes_only_after_it() -> None:
    plan = Plan(name="gated", stages=(Stage(weight=10, duration_s=60, needs_approval=True),))
    run = start(plan=plan)
    run.accept(CanaryReady())
    run.accept(StageTimerElapsed(), after=MINUTE)
    assert run.release.phase is Phase.AWAITING_APPROVAL
    run.accept(Approve(by=BOB))
    assert run.release.phase is Phase.PROMOTING


def test_fail_sends_traffic_to_stable_and_alerts_the_channel() -> None:
    run = run_in(Phase.PROMOTING)
    accepted = run.accept(Fail(reason="stable rollout stuck: 403 from the API server"))
    assert accepted.effects[0] == ReconcileCluster()
    assert run.release.phase is Phase.FAILED
    assert desired_traffic(run.release) == traffic(0)
    alert = accepted.effects[-1]
    assert isinstance(alert, Notify)
    assert alert.in_channel
    assert alert.text.startswith(
        "shop-api v2.4.1 failed during promotion: stable rollout stuck: 403 from the API server."
    )


def test_refusals_say_why_in_words() -> None:
    assert run_in(Phase.STARTING).refuse(Pause(by=BOB)) == (
        "can't pause shop-api: its canary is still starting"
    )
    assert run_in(Phase.RUNNING).refuse(Resume(by=BOB)) == (
        "shop-api is not paused: it is in stage 3/4 (50 %)"
    )
    paused = run_in(Phase.PAUSED)
    assert paused.refuse(Advance(by=BOB)) == (
        "shop-api is paused by <@U0BOB>: looking into it; resume it first"
    )
    assert paused.refuse(Pause(by=ANA)) == (
        "shop-api is already paused by <@U0BOB>: looking into it"
    )
    assert run_in(Phase.ROLLING_BACK).refuse(Approve(by=BOB)) == (
        "can't approve shop-api: it is rolling back"
    )


def test_a_finished_release_says_how_and_when_it_ended() -> None:
    rolled_back = run_in(Phase.ROLLED_BACK)  # rolled back at 13:03
    assert rolled_back.refuse(Rollback(by=BOB), after=timedelta(hours=1)) == (
        "shop-api's release v2.4.1 already finished: "
        "rolled back at 13:03 UTC by <@U0ANA> (error spike)"
    )
    assert rolled_back.refuse(Resume(by=BOB), after=timedelta(days=1)) == (
        "shop-api's release v2.4.1 already finished: "
        "rolled back at 2025-03-03 13:03 UTC by <@U0ANA> (error spike)"
    )
    assert run_in(Phase.SUCCEEDED).refuse(Promote(by=BOB)) == (
        "shop-api's release v2.4.1 already finished: succeeded at 13:03 UTC by <@U0BOB> "
        "(promoted by <@U0BOB>, skipping 1 of 4 stages)"
    )
    assert run_in(Phase.FAILED).refuse(Fail(reason="again")) == (
        "shop-api's release v2.4.1 already finished: failed at 13:02 UTC (deployment deleted)"
    )


def test_transition_needs_a_timezone_aware_clock() -> None:
    run = start()
    with pytest.raises(ValueError, match="timezone-aware"):
        transition(run.release, CanaryReady(), now=datetime(2025, 3, 3, 10, 0))


def test_a_release_round_trips_through_json() -> None:
    run = run_in(Phase.RUNNING)
    run.accept(Approve(by=BOB))
    run.accept(Pause(by=BOB, reason="checking", duration_s=900), after=timedelta(seconds=90.5))
    release = run.release.model_copy(
        update={"card_ts": "1741000000.000100", "thread_ts": "1741000000.000100"}
    )
    restored = Release.model_validate_json(release.model_dump_json())
    assert restored == release
    assert restored.plan == DEFAULT_PLAN
    assert restored.pause is not None
    assert restored.pause.remaining_s == 4 * HOUR - 90.5


def test_a_corrupt_release_record_is_refused_with_the_field_named() -> None:
    record = run_in(Phase.RUNNING).release.model_dump(mode="json")
    with pytest.raises(ValidationError, match="stage_index 7 is outside plan 'default'"):
        Release.model_validate(record | {"stage_index": 7})
    with pytest.raises(ValidationError, match="stage_due_at must be set exactly when running"):
        Release.model_validate(record | {"stage_due_at": None})
    with pytest.raises(ValidationError, match="started_at"):
        Release.model_validate(record | {"started_at": "2025-03-03T10:00:00"})  # no timezone
    with pytest.raises(ValidationError, match="stage weights must not decrease"):
        Release.model_validate(
            record
            | {
                "plan": {
                    "name": "bad",
                    "stages": [{"weight": 50, "duration_s": 1}, {"weight": 5, "duration_s": 1}],
                }
            }
        )


def test_start_release_refuses_blank_names() -> None:
    with pytest.raises(ValidationError, match="app"):
        start_release(
            release_id="rel-2",
            app=" ",
            version="v1",
            previous_version=None,
            plan=DEFAULT_PLAN,
            requested_by=ANA,
            channel="C0DEPLOYS",
            four_eyes=False,
            now=T0,
        )


# ---------------------------------------------------------------- verification Jobs at a gate


def test_a_stage_with_a_verification_job_holds_the_traffic_at_its_gate() -> None:
    run = run_in(Phase.VERIFYING)  # VERIFIED_PLAN: the Job gates stage 3 (50 %), from 5 %
    release = run.release

    assert (release.stage_index, release.stage_due_at) == (2, None)
    assert release.verification is not None
    assert release.verification.job_name == VERIFIED_JOB
    assert release.verification.started_at == run.now
    assert desired_traffic(release) == traffic(5)  # not the 50 % of the stage it gates


def test_entering_a_verified_stage_starts_its_job_first_and_says_so() -> None:
    run = start(plan=VERIFIED_PLAN)
    run.accept(CanaryReady(), after=MINUTE)
    run.accept(StageTimerElapsed(), after=timedelta(hours=1))
    entered = run.accept(StageTimerElapsed(), after=timedelta(hours=2))

    assert entered.effects[0] == ReconcileCluster()  # the Job is part of the desired state
    (notice,) = [e for e in entered.effects if isinstance(e, Notify)]
    assert notice.kind is NoticeKind.VERIFICATION
    assert notice.text == (
        f"stage 3/4 (50 %) waits for verification Job `{VERIFIED_JOB}` (Job template smoke, up "
        "to 5m): the canary keeps 5 % of traffic until it passes"
    )


def test_a_passed_job_starts_its_stage_with_its_full_time() -> None:
    run = run_in(Phase.VERIFYING)
    passed = run.accept(VerificationPassed(job_name=VERIFIED_JOB), after=MINUTE)

    release = passed.release
    assert (release.phase, release.stage_index, release.verification) == (Phase.RUNNING, 2, None)
    assert release.stage_due_at == run.now + timedelta(hours=4)
    assert desired_traffic(release) == traffic(50)
    texts = [e.text for e in passed.effects if isinstance(e, Notify)]
    assert texts[0] == f"verification Job `{VERIFIED_JOB}` passed; stage 3/4 (50 %) starts"


def test_a_failed_job_rolls_back_with_an_alert_naming_it_and_its_log_in_the_thread() -> None:
    run = run_in(Phase.VERIFYING)
    failed = run.accept(
        VerificationFailed(
            job_name=VERIFIED_JOB, reason="BackoffLimitExceeded", log_tail=("a", "b")
        )
    )

    assert failed.release.phase is Phase.ROLLING_BACK
    assert desired_traffic(failed.release) == traffic(0)
    assert failed.release.outcome_by is None
    assert (
        failed.release.outcome_reason
        == f"verification Job {VERIFIED_JOB} failed: BackoffLimitExceeded"
    )
    alert, log = [e for e in failed.effects if isinstance(e, Notify)]
    assert (alert.kind, alert.in_channel) == (NoticeKind.AUTO_ROLLBACK, True)
    assert alert.text == (
        f"shop-api v2.4.1 is rolling back automatically at the gate of stage 3/4 (50 %): "
        f"verification Job `{VERIFIED_JOB}` failed: BackoffLimitExceeded"
    )
    assert (log.kind, log.in_channel) == (NoticeKind.VERIFICATION_LOG, False)
    assert log.text == f"last 2 log lines of verification Job `{VERIFIED_JOB}`:\n```\na\nb\n```"


def test_another_jobs_outcome_decides_nothing_at_the_gate() -> None:
    run = run_in(Phase.VERIFYING)
    other = f"{VERIFIED_JOB[:-1]}1"

    assert "is not the verification running now" in run.refuse(VerificationPassed(job_name=other))
    assert "is not the verification running now" in run.refuse(
        VerificationFailed(job_name=other, reason="late")
    )


def test_people_cannot_skip_a_running_verification_but_may_roll_back() -> None:
    run = run_in(Phase.VERIFYING)
    for event in (Advance(by=BOB), Approve(by=BOB), Promote(by=BOB), Pause(by=BOB)):
        assert "its verification Job is running" in run.refuse(event)
    assert run.accept(Rollback(by=BOB)).release.phase is Phase.ROLLING_BACK


def test_a_first_stage_with_a_job_is_verified_before_the_canary_takes_traffic() -> None:
    gated = Stage(weight=10, duration_s=600, verification=SMOKE)
    run = start(plan=Plan(name="gated", stages=(gated, Stage(weight=100, duration_s=0))))
    ready = run.accept(CanaryReady(), after=MINUTE)

    assert (ready.release.phase, ready.release.stage_index) == (Phase.VERIFYING, 0)
    assert desired_traffic(ready.release) == traffic(0)
    assert run.accept(VerificationPassed(job_name="shop-api-verify-rel-1-0")).release.phase is (
        Phase.RUNNING
    )


def test_metric_checks_go_on_while_a_job_holds_the_gate() -> None:
    run = run_in(Phase.VERIFYING)
    checked = run.accept(ChecksPassed(summary="error rate 0.1 %"), after=MINUTE).release
    assert (checked.phase, checked.checks_passed, checked.latest_metrics) == (
        Phase.VERIFYING,
        1,
        "error rate 0.1 %",
    )
    unsure = run.accept(ChecksInconclusive(reason="no samples"), after=MINUTE)
    assert unsure.release.phase is Phase.VERIFYING  # no pause: the Job holds the gate
    assert not [e for e in unsure.effects if isinstance(e, Notify)]
    failed = run.accept(ChecksFailed(metric="error rate", value=9, threshold=5, unit="%"))
    assert failed.release.phase is Phase.ROLLING_BACK
    assert failed.release.verification is None
    entered = run_in(Phase.VERIFYING).accept(VerificationPassed(job_name=VERIFIED_JOB)).release
    assert entered.checks_passed == 0  # the stage's own checks judge it
