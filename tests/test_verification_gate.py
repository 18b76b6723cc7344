"""What a verification Job's status means at a release's gate
(bot/application/verification_gate.py): pure, on a release driven to its gate by the real state
machine (tests/releases.py)."""

from __future__ import annotations

from datetime import timedelta

from bot.application.verification_gate import due_event
from bot.core.machine import VerificationFailed, VerificationPassed
from bot.core.release import Phase
from bot.core.verification import DEADLINE_GRACE_S, VerificationState, VerificationStatus
from tests.releases import VERIFIED_JOB, run_in

TIMEOUT = timedelta(minutes=5)  # VERIFIED_PLAN's smoke Job


def status(state: VerificationState, *, job: str = VERIFIED_JOB) -> VerificationStatus:
    return VerificationStatus(job_name=job, state=state, reason="why", log_tail=("last line",))


def test_the_jobs_own_outcome_decides() -> None:
    run = run_in(Phase.VERIFYING)
    passed = due_event(run.release, status(VerificationState.SUCCEEDED), now=run.now)
    failed = due_event(run.release, status(VerificationState.FAILED), now=run.now)

    assert passed == VerificationPassed(job_name=VERIFIED_JOB)
    assert failed == VerificationFailed(
        job_name=VERIFIED_JOB, reason="why", log_tail=("last line",)
    )


def test_a_running_job_waits_until_its_timeout_then_fails() -> None:
    run = run_in(Phase.VERIFYING)
    running = status(VerificationState.RUNNING)
    deadline = run.now + TIMEOUT + timedelta(seconds=DEADLINE_GRACE_S)

    assert due_event(run.release, running, now=deadline - timedelta(seconds=1)) is None
    assert due_event(run.release, None, now=deadline - timedelta(seconds=1)) is None
    assert due_event(run.release, running, now=deadline) == VerificationFailed(
        job_name=VERIFIED_JOB, reason="it did not finish within its timeout of 5m"
    )


def test_another_jobs_status_is_not_this_gates() -> None:
    run = run_in(Phase.VERIFYING)
    other = status(VerificationState.SUCCEEDED, job="shop-api-verify-rel-1-1")

    assert due_event(run.release, other, now=run.now) is None


def test_a_release_not_at_a_gate_has_nothing_due() -> None:
    run = run_in(Phase.RUNNING)

    assert due_event(run.release, status(VerificationState.SUCCEEDED), now=run.now) is None
