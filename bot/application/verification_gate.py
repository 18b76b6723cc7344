"""What a verification Job's status means for a release waiting at its gate: called by the
release service on every scheduler pass of a VERIFYING release (any strategy's gate)."""

from __future__ import annotations

from datetime import datetime

from bot.core import thread_wording as wording
from bot.core.machine import Event, VerificationFailed, VerificationPassed
from bot.core.release import Release
from bot.core.verification import VerificationState, VerificationStatus


def due_event(
    release: Release, status: VerificationStatus | None, *, now: datetime
) -> Event | None:
    """Passed or failed once the Job says so, failed when it outlives its timeout; else None."""
    run = release.verification
    if run is None:
        return None
    verification = run.verification
    if status is not None and status.job_name == run.job_name:
        if status.state is VerificationState.SUCCEEDED:
            return VerificationPassed(job_name=run.job_name)
        if status.state is VerificationState.FAILED:
            return VerificationFailed(
                job_name=run.job_name, reason=status.reason, log_tail=status.log_tail
            )
    if now >= run.deadline:
        reason = wording.verification_timed_out(verification.timeout_s)
        return VerificationFailed(job_name=run.job_name, reason=reason)
    return None
