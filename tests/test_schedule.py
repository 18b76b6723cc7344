"""When a release next needs a scheduler pass (bot.core.schedule.next_due), for every phase and
every reason: releases driven through the real state machine (tests/releases.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot.core.machine import ChecksInconclusive, ChecksPassed
from bot.core.release import NoticeKind, OutboxNotice, Phase, Release, ReleaseKind
from bot.core.schedule import ROLLOUT_WATCH_S, next_due
from tests.releases import MINUTE, run_in

CHECK_S = 30.0
RESYNC_S = 600.0
RESYNC = timedelta(seconds=RESYNC_S)


def due(
    release: Release, now: datetime, *, hold_ends_at: datetime | None = None
) -> datetime | None:
    return next_due(
        release, now=now, check_interval_s=CHECK_S, resync_s=RESYNC_S, hold_ends_at=hold_ends_at
    )


def delivered(release: Release) -> Release:
    return release.evolve(outbox=(), card_stale=False)


@pytest.mark.parametrize("phase", [Phase.STARTING, Phase.PROMOTING, Phase.ROLLING_BACK])
def test_phases_waiting_to_observe_the_cluster_are_due_every_pass(phase: Phase) -> None:
    run = run_in(phase)
    assert due(delivered(run.release), run.now) == run.now


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED])
def test_a_finished_release_leaves_the_index_once_its_messages_are_posted(phase: Phase) -> None:
    run = run_in(phase)
    assert due(delivered(run.release), run.now) is None
    notice = OutboxNotice(id=99, kind=NoticeKind.SUCCEEDED, text="done")
    assert due(delivered(run.release).evolve(outbox=(notice,)), run.now) == run.now


def test_messages_still_to_post_make_any_release_due_at_once() -> None:
    run = run_in(Phase.RUNNING)
    notice = OutboxNotice(id=1, kind=NoticeKind.STAGE_STARTED, text="5 %")
    assert due(run.release.evolve(outbox=(notice,)), run.now) == run.now
    assert due(delivered(run.release).evolve(card_stale=True), run.now) == run.now


def test_a_running_stage_is_due_when_its_timer_ends() -> None:
    run = run_in(Phase.RUNNING)
    release = delivered(run.release)
    assert release.stage_due_at == run.now + timedelta(hours=4)
    assert due(release, run.now) == run.now + RESYNC  # the resync comes first
    later = run.now + timedelta(hours=4) - MINUTE
    assert due(release, later) == release.stage_due_at


def test_a_stage_with_metric_checks_is_due_at_each_interval() -> None:
    run = run_in(Phase.RUNNING)
    checked = delivered(run.release).evolve(analysis_enabled=True)
    assert due(checked, run.now) == run.now  # never checked in this stage: at once
    passed = run.accept(ChecksPassed(summary="ok"), after=timedelta(seconds=5)).release
    passed = delivered(passed).evolve(analysis_enabled=True)
    assert passed.last_check_at == run.now
    assert due(passed, run.now) == run.now + timedelta(seconds=CHECK_S)


def test_awaiting_approval_waits_for_people_but_keeps_checking_and_resyncing() -> None:
    run = run_in(Phase.AWAITING_APPROVAL)
    waiting = delivered(run.release)
    assert due(waiting, run.now) == run.now + RESYNC
    checked = waiting.evolve(analysis_enabled=True, last_check_at=run.now - timedelta(seconds=10))
    assert due(checked, run.now) == run.now + timedelta(seconds=20)


@pytest.mark.parametrize("kind", [ReleaseKind.ARGO_CANARY, ReleaseKind.ARGO_BLUE_GREEN])
def test_an_argo_rollout_is_read_back_every_few_seconds_whatever_waits(kind: ReleaseKind) -> None:
    """Argo may abort it by its own analysis at any moment: the alert follows within seconds."""
    run = run_in(Phase.AWAITING_APPROVAL)
    waiting = delivered(run.release).evolve(kind=kind)
    assert due(waiting, run.now) == run.now + timedelta(seconds=ROLLOUT_WATCH_S)
    held = run_in(Phase.PAUSED)
    paused = delivered(held.release).evolve(kind=kind)
    assert due(paused, held.now) == held.now + timedelta(seconds=ROLLOUT_WATCH_S)
    assert due(delivered(run_in(Phase.ROLLED_BACK).release).evolve(kind=kind), run.now) is None


def test_a_pause_with_a_duration_is_due_when_it_ends() -> None:
    run = run_in(Phase.PAUSED)
    paused = delivered(run.release)
    assert paused.pause is not None and paused.pause.resume_due_at == run.now + timedelta(
        minutes=30
    )
    assert due(paused, run.now) == run.now + RESYNC
    later = run.now + timedelta(minutes=25)
    assert due(paused, later) == paused.pause.resume_due_at
    # a person's pause stops the checks: only the resume time and the resync count
    assert due(paused.evolve(analysis_enabled=True), later) == paused.pause.resume_due_at


def test_a_pause_for_missing_metrics_rechecks_at_each_interval() -> None:
    running = run_in(Phase.RUNNING)
    running.release = running.release.evolve(analysis_enabled=True)
    paused = delivered(running.accept(ChecksInconclusive(reason="no requests")).release)
    assert paused.phase is Phase.PAUSED and paused.pause is not None and paused.pause.by is None
    assert due(paused, running.now) == running.now + timedelta(seconds=CHECK_S)


def test_a_release_held_by_a_freeze_is_due_when_the_freeze_ends() -> None:
    run = run_in(Phase.AWAITING_APPROVAL)
    waiting = delivered(run.release)
    ends = run.now + timedelta(minutes=7)
    assert due(waiting, run.now, hold_ends_at=ends) == ends


def test_a_release_waiting_on_its_verification_job_is_due_every_pass() -> None:
    """The Job's outcome is read by the reconcile: a failed Job rolls back within a pass, a
    passed one starts its stage, and neither waits for the resync."""
    run = run_in(Phase.VERIFYING)  # the Job `smoke` holds the gate of stage 3
    waiting = delivered(run.release)
    assert (waiting.stage_due_at, waiting.pause) == (None, None)  # no timer would call it back
    assert due(waiting, run.now) == run.now
    checked = waiting.evolve(analysis_enabled=True, last_check_at=run.now)
    assert due(checked, run.now + timedelta(minutes=3)) == run.now + timedelta(minutes=3)
