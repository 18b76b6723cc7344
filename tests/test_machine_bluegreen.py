"""The blue-green transition table (bot.core.machine.BLUE_GREEN_TRANSITIONS): pure, no service.

Run by pytest. Every phase meets every event type; a release is walked from the preview through
the switch, the watch window and blue's retention to blue retired; the switch's gates, a refused
switch, and the switch back are each pinned down.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bot.core.apps import BlueGreenConfig
from bot.core.machine import (
    BLUE_GREEN_TRANSITIONS,
    TRANSITIONS_BY_KIND,
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
    StageTimerElapsed,
    Switched,
    VerificationFailed,
    VerificationPassed,
    transition,
)
from bot.core.plan import DEFAULT_PLAN, blue_green_plan
from bot.core.release import (
    BlueGreenPods,
    NoticeKind,
    Phase,
    Release,
    ReleaseKind,
    desired_traffic,
)
from tests.releases import (
    ANA,
    BLUE_GREEN_PLAN,
    BLUE_GREEN_VERIFIED_PLAN,
    BOB,
    MINUTE,
    PREVIEW_JOB,
    run_in,
    start,
)
from tests.test_machine import ONE_OF_EACH, assert_effects_in_order

PODS = BlueGreenPods(blue_ready=3, blue_desired=3, green_ready=1, green_desired=3)
BG = ReleaseKind.BLUE_GREEN
BLUE_GREEN_CONFIG = BlueGreenConfig()

# Where each accepted pair leads, one day after reaching the phase (every timer due). RUNNING
# and PAUSED are in the watch window, AWAITING_APPROVAL on the preview. Every other pair is refused.
EXPECTED_NEXT: dict[tuple[Phase, type[Event]], Phase] = {
    (Phase.STARTING, CanaryReady): Phase.RUNNING,
    (Phase.STARTING, Rollback): Phase.ROLLING_BACK,
    (Phase.STARTING, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.STARTING, Fail): Phase.FAILED,
    (Phase.STARTING, PodsObserved): Phase.STARTING,
    (Phase.VERIFYING, Rollback): Phase.ROLLING_BACK,
    (Phase.VERIFYING, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.VERIFYING, ChecksPassed): Phase.VERIFYING,
    (Phase.VERIFYING, ChecksInconclusive): Phase.VERIFYING,
    (Phase.VERIFYING, Fail): Phase.FAILED,
    (Phase.VERIFYING, PodsObserved): Phase.VERIFYING,
    (Phase.RUNNING, StageTimerElapsed): Phase.KEEPING_BLUE,
    (Phase.RUNNING, Advance): Phase.KEEPING_BLUE,
    (Phase.RUNNING, Promote): Phase.KEEPING_BLUE,
    (Phase.RUNNING, Pause): Phase.PAUSED,
    (Phase.RUNNING, Rollback): Phase.ROLLING_BACK,
    (Phase.RUNNING, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.RUNNING, ChecksInconclusive): Phase.PAUSED,
    (Phase.RUNNING, ChecksPassed): Phase.RUNNING,
    (Phase.RUNNING, Fail): Phase.FAILED,
    (Phase.RUNNING, PodsObserved): Phase.RUNNING,
    (Phase.AWAITING_APPROVAL, Approve): Phase.SWITCHING,
    (Phase.AWAITING_APPROVAL, Promote): Phase.SWITCHING,
    (Phase.AWAITING_APPROVAL, Pause): Phase.PAUSED,
    (Phase.AWAITING_APPROVAL, Rollback): Phase.ROLLING_BACK,
    (Phase.AWAITING_APPROVAL, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.AWAITING_APPROVAL, ChecksInconclusive): Phase.PAUSED,
    (Phase.AWAITING_APPROVAL, ChecksPassed): Phase.AWAITING_APPROVAL,
    (Phase.AWAITING_APPROVAL, Fail): Phase.FAILED,
    (Phase.AWAITING_APPROVAL, PodsObserved): Phase.AWAITING_APPROVAL,
    (Phase.PAUSED, Resume): Phase.RUNNING,
    (Phase.PAUSED, Rollback): Phase.ROLLING_BACK,
    (Phase.PAUSED, ChecksFailed): Phase.ROLLING_BACK,
    (Phase.PAUSED, ChecksPassed): Phase.PAUSED,
    (Phase.PAUSED, Fail): Phase.FAILED,
    (Phase.PAUSED, PodsObserved): Phase.PAUSED,
    (Phase.SWITCHING, Switched): Phase.RUNNING,
    (Phase.SWITCHING, Fail): Phase.AWAITING_APPROVAL,  # refused: blue still serves
    (Phase.SWITCHING, Rollback): Phase.ROLLING_BACK,
    (Phase.SWITCHING, PodsObserved): Phase.SWITCHING,
    (Phase.KEEPING_BLUE, BlueRetentionElapsed): Phase.PROMOTING,
    (Phase.KEEPING_BLUE, Rollback): Phase.ROLLING_BACK,
    (Phase.KEEPING_BLUE, Fail): Phase.FAILED,
    (Phase.KEEPING_BLUE, PodsObserved): Phase.KEEPING_BLUE,
    (Phase.PROMOTING, PromotionDone): Phase.SUCCEEDED,
    (Phase.PROMOTING, Fail): Phase.FAILED,
    (Phase.PROMOTING, PodsObserved): Phase.PROMOTING,
    (Phase.ROLLING_BACK, RollbackDone): Phase.ROLLED_BACK,
    (Phase.ROLLING_BACK, Rollback): Phase.ROLLING_BACK,
    (Phase.ROLLING_BACK, Fail): Phase.FAILED,
    (Phase.ROLLING_BACK, PodsObserved): Phase.ROLLING_BACK,
}


def test_the_table_lists_the_expected_pairs_and_those_a_guard_refuses_here() -> None:
    """The watch window needs no approval, a person's pause has no timer or metrics to wait
    on, an outcome of another Job than the preview's decides nothing: the table takes these
    pairs, their steps refuse them in the phases run_in builds."""
    guarded = {
        (Phase.VERIFYING, VerificationPassed),
        (Phase.VERIFYING, VerificationFailed),
        (Phase.RUNNING, Approve),
        (Phase.PAUSED, PauseTimerElapsed),
        (Phase.PAUSED, ChecksInconclusive),
    }
    assert set(BLUE_GREEN_TRANSITIONS) == set(EXPECTED_NEXT) | guarded


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda event: type(event).__name__)
@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_every_phase_meets_every_event(phase: Phase, event: Event) -> None:
    run = run_in(phase, kind=BG)
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


def test_a_release_walks_preview_switch_watch_retention_and_retirement() -> None:
    run = start(kind=BG, plan=BLUE_GREEN_PLAN)
    assert desired_traffic(run.release).canary_weight == 0
    run.accept(CanaryReady(), after=MINUTE)
    run.accept(StageTimerElapsed(), after=MINUTE)  # the preview's gate: an approval
    assert run.release.phase is Phase.AWAITING_APPROVAL
    approved_at = run.now + MINUTE
    switch = run.accept(Approve(by=BOB), after=MINUTE)
    assert run.release.phase is Phase.SWITCHING and run.release.switch_requested_at == approved_at
    assert switch.effects[0] == ReconcileCluster()
    assert desired_traffic(run.release).canary_weight == 100
    switched = run.accept(Switched(selector_s=0.21, endpoints_s=0.35), after=timedelta(seconds=1))
    texts = [getattr(effect, "text", "") for effect in switched.effects]
    assert "Switched production to green in 0.21 s (EndpointSlices listed only green pods " in (
        " ".join(texts)
    )
    assert run.release.stage_index == 1 and run.release.phase is Phase.RUNNING
    assert "does not apply" in run.refuse(BlueRetentionElapsed())  # blue's timer not running
    run.accept(StageTimerElapsed(), after=timedelta(minutes=30))
    assert run.release.phase is Phase.KEEPING_BLUE
    assert run.release.blue_due_at == run.now + timedelta(hours=24)
    assert "kept until" in run.refuse(BlueRetentionElapsed(), after=timedelta(hours=1))
    run.accept(BlueRetentionElapsed(), after=timedelta(hours=23))
    assert run.release.phase is Phase.PROMOTING
    assert run.release.blue_due_at == run.now + timedelta(hours=1)  # the scale-down grace
    assert "retired" in run.refuse(Rollback(by=ANA))  # blue is going: no way back any more
    run.accept(PromotionDone(), after=timedelta(hours=1))
    assert run.release.phase is Phase.SUCCEEDED


def test_preview_checks_gate_the_switch_before_the_approval() -> None:
    plan = blue_green_plan(approvals=1, preview_checked=True, watch_s=60, check_interval_s=None)
    run = start(kind=BG, plan=plan)
    run.release = run.release.evolve(analysis_enabled=True)
    run.accept(CanaryReady(), after=MINUTE)
    assert "no passing metric check yet" in run.refuse(StageTimerElapsed(), after=MINUTE)
    run.accept(ChecksPassed(summary="error rate 0.1 %"))
    run.accept(StageTimerElapsed())
    assert run.release.phase is Phase.AWAITING_APPROVAL


def test_a_preview_job_runs_once_green_is_ready_and_blue_serves_meanwhile() -> None:
    run = start(kind=BG, plan=BLUE_GREEN_VERIFIED_PLAN)
    ready = run.accept(CanaryReady(), after=MINUTE)
    assert (run.release.phase, run.release.stage_index) == (Phase.VERIFYING, 0)
    assert run.release.verification is not None
    assert run.release.verification.job_name == PREVIEW_JOB
    assert ready.effects[0] == ReconcileCluster()  # the Job is created with the desired state
    assert desired_traffic(run.release).canary_weight == 0  # production stays on blue
    (notice,) = [e for e in ready.effects if getattr(e, "kind", None) is NoticeKind.VERIFICATION]
    assert notice.text == (
        f"the preview waits for verification Job `{PREVIEW_JOB}` (Job template smoke, up to "
        "5m): it tests green v2.4.1 through its preview Service, blue v2.4.0 serves "
        "production until it passes"
    )
    for event in (Approve(by=BOB), Promote(by=BOB), Advance(by=BOB)):
        assert "its verification Job is running" in run.refuse(event)


def test_a_passed_preview_job_opens_the_approval_gate_which_switches() -> None:
    run = run_in(Phase.VERIFYING, kind=BG)
    run.accept(VerificationPassed(job_name=PREVIEW_JOB), after=MINUTE)
    assert (run.release.phase, run.release.verification) == (Phase.RUNNING, None)
    assert desired_traffic(run.release).canary_weight == 0
    run.accept(StageTimerElapsed())
    assert run.release.phase is Phase.AWAITING_APPROVAL
    run.accept(Approve(by=BOB), after=MINUTE)
    assert run.release.phase is Phase.SWITCHING


def test_a_failed_preview_job_rolls_back_before_the_switch_naming_it_and_its_log() -> None:
    run = run_in(Phase.VERIFYING, kind=BG)
    failed = VerificationFailed(
        job_name=PREVIEW_JOB, reason="BackoffLimitExceeded", log_tail=("GET / 503", "FAIL")
    )
    result = run.accept(failed, after=MINUTE)
    assert (run.release.phase, run.release.switch_requested_at) == (Phase.ROLLING_BACK, None)
    assert desired_traffic(run.release).canary_weight == 0  # blue serves, green goes
    alerts = [e for e in result.effects if getattr(e, "in_channel", False)]
    assert [alert.text for alert in alerts] == [
        "shop-api v2.4.1 is rolling back automatically before production reached green: "
        f"verification Job `{PREVIEW_JOB}` failed: BackoffLimitExceeded; green is removed, blue "
        "v2.4.0 goes on serving production"
    ]
    log = [e for e in result.effects if getattr(e, "kind", None) is NoticeKind.VERIFICATION_LOG]
    assert log and "GET / 503\nFAIL" in log[0].text and not log[0].in_channel
    assert "verification Job" in (run.release.outcome_reason or "")


def test_a_hybrid_preview_job_runs_before_the_widening_stages() -> None:
    plan = BlueGreenConfig().hybrid_plan(DEFAULT_PLAN)
    verified = BLUE_GREEN_VERIFIED_PLAN.stages[0].verification
    gated = replace(plan, stages=(replace(plan.stages[0], verification=verified), *plan.stages[1:]))
    run = start(kind=ReleaseKind.HYBRID, plan=gated)
    run.accept(CanaryReady(), after=MINUTE)
    assert (run.release.phase, run.release.stage_index) == (Phase.VERIFYING, 0)
    assert desired_traffic(run.release).canary_weight == 0
    run.accept(VerificationPassed(job_name=PREVIEW_JOB), after=MINUTE)
    run.accept(StageTimerElapsed())
    run.accept(Approve(by=BOB), after=MINUTE)
    assert (run.release.phase, desired_traffic(run.release).canary_weight) == (Phase.RUNNING, 5)


def test_a_refused_switch_waits_for_a_fresh_approval_with_blue_serving() -> None:
    run = run_in(Phase.SWITCHING, kind=BG)
    refused = run.accept(Fail(reason="admission webhook denied the request"), after=MINUTE)
    assert run.release.phase is Phase.AWAITING_APPROVAL and run.release.approvals == ()
    assert desired_traffic(run.release).canary_weight == 0
    alert = [e for e in refused.effects if getattr(e, "kind", None) is NoticeKind.SWITCH_REFUSED]
    assert alert and alert[0].in_channel and "admission webhook denied" in alert[0].text


def test_a_failing_check_in_the_watch_window_switches_back_to_blue_with_the_numbers() -> None:
    run = run_in(Phase.RUNNING, kind=BG)
    failed = ChecksFailed(metric="error rate", value=0.4, threshold=0.05, unit="%")
    result = run.accept(failed, after=MINUTE)
    assert run.release.phase is Phase.ROLLING_BACK
    assert desired_traffic(run.release).canary_weight == 0
    alert = [e for e in result.effects if getattr(e, "kind", None) is NoticeKind.AUTO_ROLLBACK]
    assert alert and alert[0].in_channel
    assert "switching back to blue v2.4.0 automatically" in alert[0].text


def test_rollback_while_blue_is_kept_switches_back_at_once() -> None:
    run = run_in(Phase.KEEPING_BLUE, kind=BG)
    result = run.accept(Rollback(by=ANA, reason="late bug report"), after=MINUTE)
    assert run.release.phase is Phase.ROLLING_BACK and result.effects[0] == ReconcileCluster()
    assert desired_traffic(run.release).canary_weight == 0


def test_pods_observed_only_records_them_for_the_card() -> None:
    run = run_in(Phase.AWAITING_APPROVAL, kind=BG)
    result = run.accept(PodsObserved(pods=PODS))
    assert run.release.pods == PODS and ReconcileCluster() not in result.effects
    assert [type(effect).__name__ for effect in result.effects] == ["UpdateCard"]


def test_pause_timer_in_the_watch_window_resumes_it() -> None:
    run = run_in(Phase.RUNNING, kind=BG)
    run.accept(Pause(by=BOB, duration_s=60))
    run.accept(PauseTimerElapsed(), after=timedelta(minutes=2))
    assert run.release.phase is Phase.RUNNING and run.release.stage_index == 1


def test_a_hybrid_release_walks_the_preview_then_the_canary_stages() -> None:
    plan = BLUE_GREEN_CONFIG.hybrid_plan(DEFAULT_PLAN)
    assert [stage.weight for stage in plan.stages] == [0, 5, 50, 100]  # 0 % by header replaced
    assert plan.stages[0].needs_approval and not plan.stages[0].header_routed
    run = start(kind=ReleaseKind.HYBRID, plan=plan)
    run.accept(CanaryReady(), after=MINUTE)
    run.accept(StageTimerElapsed(), after=MINUTE)
    assert run.release.phase is Phase.AWAITING_APPROVAL and run.release.stage_index == 0
    assert "the preview" in run.refuse(Advance(by=BOB))
    run.accept(Approve(by=BOB), after=MINUTE)
    assert run.release.phase is Phase.RUNNING and desired_traffic(run.release).canary_weight == 5
    run.accept(Promote(by=BOB, full=True), after=MINUTE)
    assert run.release.phase is Phase.PROMOTING  # a canary's promotion, not a switch
    assert BLUE_GREEN_TRANSITIONS is not TRANSITIONS_BY_KIND[ReleaseKind.HYBRID]
