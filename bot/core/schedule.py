"""When a release next needs a scheduler pass: the score of the store's due-time index.

Called by the release service each time it saves a release (the store writes the score in the
same atomic script as the record) and after a pass that changed nothing. Pure: the reasons are
read from the release record alone, plus the app's check interval, the resync period and, for a
release a freeze holds, when that freeze ends.

A release is due:
- at once while it has Slack messages to post (outbox, a stale card): delivery is retried every
  pass until Slack takes them;
- at once while the cluster must be watched until something is observed (starting: the canary
  becoming ready; verifying: the gate's Job ending, read every pass so a failed one rolls back
  within a pass, never at the resync; a blue-green switch; promoting, or retiring blue; rolling
  back);
- when its stage timer ends (running), when its pause's duration ends (paused `--for`), when the
  freeze that holds it ends, when blue's retention ends (blue-green, keeping blue);
- when its next metric check is due (`check_interval_s` after the last one; at once if none ran
  yet), while checks run for it (running, awaiting approval, paused by the bot itself);
- an Argo Rollout at least every ROLLOUT_WATCH_S: its controller acts on its own (its analysis
  may abort it at any moment), and the channel's alert should follow within seconds;
- in any case `resync_s` after now, so drift in the cluster (someone edited the route) is
  repaired within that period;
- never once it is finished and has nothing left to post (it leaves the index).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core.release import Phase, Release

WATCHED_PHASES = frozenset(
    {Phase.STARTING, Phase.VERIFYING, Phase.SWITCHING, Phase.PROMOTING, Phase.ROLLING_BACK}
)
"""Reconciled every pass until the reconciler observes what the phase waits for."""
CHECKED_PHASES = frozenset({Phase.VERIFYING, Phase.RUNNING, Phase.AWAITING_APPROVAL})
ROLLOUT_WATCH_S = 5.0
"""How often an Argo Rollout is read back while nothing else is due (one GET)."""


def next_due(
    release: Release,
    *,
    now: datetime,
    check_interval_s: float,
    resync_s: float,
    hold_ends_at: datetime | None = None,
) -> datetime | None:
    """The earliest time the release needs a pass; None when it never will again."""
    if release.outbox or release.card_stale:
        return now
    if release.phase.is_terminal:
        return None
    if release.phase in WATCHED_PHASES:
        return now
    candidates = [now + timedelta(seconds=resync_s)]
    if release.kind.drives_argo:
        candidates.append(now + timedelta(seconds=ROLLOUT_WATCH_S))
    if release.stage_due_at is not None:
        candidates.append(release.stage_due_at)
    pause = release.pause
    if pause is not None and pause.resume_due_at is not None:
        candidates.append(pause.resume_due_at)
    if release.blue_due_at is not None:
        candidates.append(release.blue_due_at)
    if hold_ends_at is not None:
        candidates.append(hold_ends_at)
    if checks_run(release):
        last = release.last_check_at
        candidates.append(now if last is None else last + timedelta(seconds=check_interval_s))
    return min(candidates)


def checks_run(release: Release) -> bool:
    """Metric checks gate the release now: while a stage runs or waits, or a verification Job
    holds its gate (judged at the traffic held), and while the bot itself
    paused it (missing metrics, or a freeze), to notice when they are back; never in a stage
    that is not checked (a blue-green preview whose app does not gate on preview metrics)."""
    if not release.analysis_enabled or not release.stage.checked:
        return False
    if release.phase in CHECKED_PHASES:
        return True
    return release.phase is Phase.PAUSED and release.pause is not None and release.pause.by is None
