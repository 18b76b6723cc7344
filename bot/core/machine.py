"""The release state machine: (release, event, now) -> the next release and the effects to run.

Called by the Slack handlers and the scheduler through the release store, which saves the new
release and then carries out the effects in order. Pure: no I/O and no clock, `now` is passed in.
Every (phase, event type) pair the machine accepts is listed in TRANSITIONS; anything else is
refused with a reason meant for the person who asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.durations import format_duration
from bot.core.plan import Plan
from bot.core.release import Approval, NoticeKind, OutboxNotice, PauseInfo, Phase, Release
from bot.core.text import amount, mention, percent, plan_text

# Events. `by` is the Slack user id of the person acting. `stage_index` on a person's event is the
# stage they were looking at (a button carries it; a slash command leaves it None): if the release
# has moved on since, the event is refused, so a double click can never act on two stages.


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryReady:
    """The canary's pods are ready; the first stage can start (from the reconciler)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageTimerElapsed:
    """A StartTimer(STAGE_END) came due (from the scheduler)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseTimerElapsed:
    """A StartTimer(PAUSE_END) came due: a pause given a duration resumes (from the scheduler)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Advance:
    """End the current stage now; an approval gate still applies."""

    by: str
    stage_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Approve:
    """Approve the current stage: moves on if it waits, pre-approves it while it still runs."""

    by: str
    stage_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    """Hold the release at its current traffic; with `duration_s` it resumes by itself."""

    by: str
    reason: str = ""
    duration_s: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume:
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollback:
    """All traffic back to stable and remove the canary; accepted in every unfinished phase."""

    by: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Promote:
    """Approve and leave the current stage; `full` skips all remaining stages to promotion."""

    by: str
    full: bool = False
    stage_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PromotionDone:
    """Stable runs the new version (from the reconciler)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RollbackDone:
    """Stable takes all traffic and the canary is gone (from the reconciler)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksPassed:
    """A metric check passed (from the analysis); `snapshot` is a thread message to post."""

    summary: str
    snapshot: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksFailed:
    """A metric crossed its threshold (from the analysis): once more checks of the stage have
    failed than `failure_limit` tolerates, the release rolls back by itself."""

    metric: str
    value: float
    threshold: float
    unit: str = ""
    failure_limit: int = 0
    summary: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksInconclusive:
    """Metrics are missing or cannot decide: the release pauses, it never promotes on them."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Fail:
    """The bot cannot carry the release on (e.g. a permanent cluster error); a person must look."""

    reason: str


Event = (
    CanaryReady
    | StageTimerElapsed
    | PauseTimerElapsed
    | Advance
    | Approve
    | Pause
    | Resume
    | Rollback
    | Promote
    | PromotionDone
    | RollbackDone
    | ChecksPassed
    | ChecksFailed
    | ChecksInconclusive
    | Fail
)


# Effects, carried out in the order given. Time needs none: a stage's or pause's due time is in
# the release record, and the scheduler delivers the timer events once it has passed.


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileCluster:
    """Bring the cluster to the release's desired state (bot.core.release.desired_traffic)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateCard:
    """Post the release card, or edit it in place once its card_ts is known."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """A message in the release's thread; `in_channel` alerts go to the channel itself as well."""

    kind: NoticeKind
    text: str
    in_channel: bool = False


Effect = ReconcileCluster | UpdateCard | Notify


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    release: Release
    effects: tuple[Effect, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Change:
    """What a step decided; `accepted` puts the effects in their fixed order."""

    release: Release
    reconcile: bool = False
    notices: tuple[Notify, ...] = ()

    def preceded_by(self, notice: Notify) -> _Change:
        return replace(self, notices=(notice, *self.notices))

    def followed_by(self, *notices: Notify) -> _Change:
        return replace(self, notices=(*self.notices, *notices))

    def accepted(self) -> Accepted:
        """Cluster first (nothing stands between a decision and the traffic shift), people last."""
        effects: list[Effect] = [ReconcileCluster()] if self.reconcile else []
        effects.append(UpdateCard())
        effects.extend(self.notices)
        return Accepted(release=self.release, effects=tuple(effects))


def start_release(
    *,
    release_id: str,
    app: str,
    version: str,
    previous_version: str | None,
    plan: Plan,
    requested_by: str,
    channel: str,
    four_eyes: bool,
    now: datetime,
    analysis_enabled: bool = False,
) -> Accepted:
    """A new canary release in STARTING; raises pydantic.ValidationError naming any bad field.

    `four_eyes` (from the app's policy) is fixed for the release's life: when set, the person
    who requested it cannot approve its gates, nor promote past them. `analysis_enabled`: metric
    checks gate its stages (the app has a metrics source).
    """
    release = Release(
        id=release_id,
        app=app,
        version=version,
        previous_version=previous_version,
        plan=plan,
        phase=Phase.STARTING,
        requested_by=requested_by,
        channel=channel,
        four_eyes=four_eyes,
        started_at=now,
        analysis_enabled=analysis_enabled,
    )
    replacing = f" (replacing {previous_version})" if previous_version else ""
    text = (
        f"{mention(requested_by)} started a canary of {app} {version}{replacing}, "
        f"plan {plan.name}: {plan_text(plan)}"
    )
    return _Change(
        release=release, reconcile=True, notices=(_notice(NoticeKind.STARTED, text),)
    ).accepted()


def with_outbox(release: Release, effects: tuple[Effect, ...]) -> Release:
    """`release` holding the effects' notices in its outbox and marked for a card update, so
    the messages are saved with the transition and survive a crash before Slack is told."""
    notices = [effect for effect in effects if isinstance(effect, Notify)]
    first = release.notices_decided + 1
    added = tuple(
        OutboxNotice(id=first + offset, kind=n.kind, text=n.text, in_channel=n.in_channel)
        for offset, n in enumerate(notices)
    )
    return release.evolve(
        outbox=(*release.outbox, *added),
        notices_decided=release.notices_decided + len(added),
        card_stale=release.card_stale or UpdateCard() in effects,
    )


def transition(release: Release, event: Event, *, now: datetime) -> Accepted | Refused:
    """Apply `event` to `release` at `now` (timezone-aware); no phase and event makes it raise."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    entry = TRANSITIONS.get((release.phase, type(event)))
    if entry is None:
        return Refused(reason=_refusal_reason(release, event, now))
    decided = entry.step(release, event, now)
    if isinstance(decided, Refused):
        return decided
    if decided.release.phase not in entry.targets:
        raise AssertionError(
            f"{release.phase} + {type(event).__name__} led to {decided.release.phase}, "
            f"which TRANSITIONS does not list"
        )
    return decided.accepted()


# Steps: one per accepted (phase, event type). A step may still refuse when a guard fails.


def _canary_ready(release: Release, event: CanaryReady, now: datetime) -> _Change:
    return _enter_stage(release, 0, now)


def _stage_timer_elapsed(
    release: Release, event: StageTimerElapsed, now: datetime
) -> _Change | Refused:
    assert release.stage_due_at is not None  # Release guarantees it while RUNNING
    if now < release.stage_due_at:
        due = _clock(release.stage_due_at, now)
        return Refused(reason=f"{release.app}'s stage timer is not due until {due}")
    if release.analysis_enabled and release.checks_passed == 0:
        return Refused(
            reason=f"{_stage_label(release)} of {release.app} has no passing metric check yet; "
            "it moves on once one passes"
        )
    if _gate_is_closed(release):
        return _await_approval(release)
    return _leave_stage(release, now, by=None)


def _advance(release: Release, event: Advance, now: datetime) -> _Change | Refused:
    if refused := _aimed_at_other_stage(release, event.stage_index):
        return refused
    notice = _notice(
        NoticeKind.ADVANCED, f"{mention(event.by)} ended {_stage_label(release)} early"
    )
    if _gate_is_closed(release):
        return _await_approval(release).preceded_by(notice)
    return _leave_stage(release, now, by=event.by).preceded_by(notice)


def _approve(release: Release, event: Approve, now: datetime) -> _Change | Refused:
    if refused := _aimed_at_other_stage(release, event.stage_index):
        return refused
    stage = _stage_label(release)
    if not release.stage.needs_approval:
        return Refused(reason=f"{stage} of {release.app} needs no approval")
    if earlier := release.approval_of(release.stage_index):
        approver = f"{mention(earlier.by)} at {_clock(earlier.at, now)}"
        return Refused(reason=f"{stage} of {release.app} is already approved by {approver}")
    if refused := _four_eyes_refusal(release, event.by, release.stage_index):
        return refused
    approved = _with_approvals(release, by=event.by, now=now, stage_indexes=[release.stage_index])
    if release.phase is Phase.RUNNING:
        text = (
            f"{mention(event.by)} approved {stage} ahead of time; it moves on when its timer ends"
        )
        return _Change(release=approved, notices=(_notice(NoticeKind.APPROVED, text),))
    notice = _notice(NoticeKind.APPROVED, f"{mention(event.by)} approved {stage}")
    return _leave_stage(approved, now, by=event.by).preceded_by(notice)


def _promote(release: Release, event: Promote, now: datetime) -> _Change | Refused:
    if refused := _aimed_at_other_stage(release, event.stage_index):
        return refused
    passed = range(
        release.stage_index, len(release.plan.stages) if event.full else release.stage_index + 1
    )
    gates = [index for index in passed if _gate_is_closed(release, index)]
    for index in gates:
        if refused := _four_eyes_refusal(release, event.by, index):
            return refused
    approved = _with_approvals(release, by=event.by, now=now, stage_indexes=gates)
    if event.full:
        return _begin_promotion(approved, by=event.by)
    notice = _notice(
        NoticeKind.ADVANCED,
        f"{mention(event.by)} promoted {release.app} past {_stage_label(release)}",
    )
    return _leave_stage(approved, now, by=event.by).preceded_by(notice)


def _pause(release: Release, event: Pause, now: datetime) -> _Change | Refused:
    if event.duration_s is not None and event.duration_s <= 0:
        return Refused(reason=f"a pause duration must be positive, got {event.duration_s} s")
    resume_due_at = None if event.duration_s is None else now + timedelta(seconds=event.duration_s)
    paused = _hold(release, now, by=event.by, reason=event.reason, resume_due_at=resume_due_at)
    stage = _stage_label(release)
    text = f"{mention(event.by)} paused {release.app} at {stage}{_reason_suffix(event.reason)}"
    if resume_due_at is None:
        return _Change(release=paused, notices=(_notice(NoticeKind.PAUSED, text),))
    text += f"; it resumes by itself at {_clock(resume_due_at, now)}"
    return _Change(release=paused, notices=(_notice(NoticeKind.PAUSED, text),))


def _checks_passed(release: Release, event: ChecksPassed, now: datetime) -> _Change:
    recorded = release.evolve(
        checks_passed=release.checks_passed + 1,
        last_check_at=now,
        latest_metrics=event.summary,
        last_snapshot_at=now if event.snapshot else release.last_snapshot_at,
    )
    snapshot = (_notice(NoticeKind.SNAPSHOT, event.snapshot),) if event.snapshot else ()
    if _paused_by_metrics(release):
        opening = f"metrics of {release.app} are conclusive again ({event.summary})"
        return _end_pause(recorded, now, opening=opening).followed_by(*snapshot)
    return _Change(release=recorded, notices=snapshot)


def _recheck_while_paused(
    release: Release, event: ChecksInconclusive, now: datetime
) -> _Change | Refused:
    if not _paused_by_metrics(release):
        return Refused(reason=f"{release.app} is already {_pause_text(release)}")
    return _Change(release=release.evolve(last_check_at=now))


def _paused_by_metrics(release: Release) -> bool:
    return release.pause is not None and release.pause.reason.startswith(_METRICS_PAUSE)


_METRICS_PAUSE = "metrics inconclusive: "


def _checks_inconclusive(release: Release, event: ChecksInconclusive, now: datetime) -> _Change:
    paused = _hold(
        release, now, by=None, reason=f"{_METRICS_PAUSE}{event.reason}", resume_due_at=None
    ).evolve(last_check_at=now)
    text = (
        f"{release.app} {release.version} paused itself at {_stage_label(release)}: "
        f"metrics are inconclusive ({event.reason}); it never moves on without a passing check. "
        "It resumes by itself when a check passes again, or resume or roll it back"
    )
    return _Change(
        release=paused,
        notices=(_notice(NoticeKind.PAUSED, text, in_channel=True),),
    )


def _resume(release: Release, event: Resume, now: datetime) -> _Change:
    return _end_pause(release, now, opening=f"{mention(event.by)} resumed {release.app}")


def _pause_timer_elapsed(
    release: Release, event: PauseTimerElapsed, now: datetime
) -> _Change | Refused:
    assert release.pause is not None  # Release guarantees it while PAUSED
    due = release.pause.resume_due_at
    if due is None:
        command = f"/release resume {release.app}"
        return Refused(reason=f"{release.app}'s pause has no end time; resume it with {command}")
    if now < due:
        return Refused(reason=f"{release.app}'s pause does not end until {_clock(due, now)}")
    return _end_pause(release, now, opening=f"{release.app}'s timed pause is over")


def _rollback(release: Release, event: Rollback, now: datetime) -> _Change:
    reason = event.reason or "no reason given"
    what = f"{release.app} {release.version} {_where(release)}"
    text = f"{mention(event.by)} is rolling back {what}: {reason}"
    return _begin_rollback(
        release, by=event.by, reason=reason, notice=_notice(NoticeKind.ROLLBACK, text)
    )


def _repeat_rollback(release: Release, event: Rollback, now: datetime) -> _Change:
    text = f"{mention(event.by)} asked to roll back again; sending all traffic to stable once more"
    return _Change(release=release, reconcile=True, notices=(_notice(NoticeKind.ROLLBACK, text),))


def _checks_failed(release: Release, event: ChecksFailed, now: datetime) -> _Change:
    value, threshold = amount(event.value, event.unit), amount(event.threshold, event.unit)
    reading = f"{event.metric} is {value} against a threshold of {threshold}"
    failed = release.checks_failed + 1
    if failed <= event.failure_limit and release.phase is not Phase.PROMOTING:
        recorded = release.evolve(
            checks_failed=failed, last_check_at=now, latest_metrics=event.summary or None
        )
        text = (
            f"a metric check of {release.app} {release.version} failed at {_stage_label(release)}:"
            f" {reading}; {failed} of {event.failure_limit} failed checks tolerated in this stage,"
            " one more rolls it back"
        )
        return _Change(release=recorded, notices=(_notice(NoticeKind.CHECK_FAILED, text),))
    what = f"{release.app} {release.version}"
    text = f"{what} is rolling back automatically {_where(release)}: {reading}"
    release = release.evolve(
        checks_failed=failed,
        last_check_at=now,
        latest_metrics=event.summary or release.latest_metrics,
    )
    notice = _notice(NoticeKind.AUTO_ROLLBACK, text, in_channel=True)
    return _begin_rollback(release, by=None, reason=f"checks failed: {reading}", notice=notice)


def _promotion_done(release: Release, event: PromotionDone, now: datetime) -> _Change:
    done = release.evolve(phase=Phase.SUCCEEDED, finished_at=now)
    text = f"{release.app} {release.version} is released: stable runs it and the canary is removed"
    return _Change(release=done, reconcile=True, notices=(_notice(NoticeKind.SUCCEEDED, text),))


def _rollback_done(release: Release, event: RollbackDone, now: datetime) -> _Change:
    done = release.evolve(phase=Phase.ROLLED_BACK, finished_at=now)
    stable = release.previous_version or "the previous version"
    text = f"{release.app} is back on {stable} for all traffic; canary {release.version} is removed"
    return _Change(release=done, notices=(_notice(NoticeKind.ROLLED_BACK, text),))


def _fail(release: Release, event: Fail, now: datetime) -> _Change:
    failed = release.evolve(
        phase=Phase.FAILED,
        finished_at=now,
        stage_due_at=None,
        pause=None,
        outcome_by=None,
        outcome_reason=event.reason,
    )
    text = (
        f"{release.app} {release.version} failed {_where(release)}: {event.reason}. "
        "All traffic is being sent to stable; someone needs to look at the cluster"
    )
    notice = _notice(NoticeKind.FAILED, text, in_channel=True)
    return _Change(release=failed, reconcile=True, notices=(notice,))


Step = Callable[[Release, Any, datetime], "_Change | Refused"]


@dataclass(frozen=True, slots=True)
class Transition:
    """What the machine does with one (phase, event type) pair: the step that decides, the phases
    it may lead to, and when a person is offered it as a button (bot.slack.cards asks `offers`)."""

    step: Step
    targets: frozenset[Phase]
    offered: Callable[[Release], bool] = lambda release: True


def _to(*phases: Phase) -> frozenset[Phase]:
    return frozenset(phases)


_UNFINISHED = (
    Phase.STARTING,
    Phase.RUNNING,
    Phase.AWAITING_APPROVAL,
    Phase.PAUSED,
    Phase.PROMOTING,
    Phase.ROLLING_BACK,
)
_NOT_YET_ROLLING_BACK = tuple(phase for phase in _UNFINISHED if phase is not Phase.ROLLING_BACK)
_LEAVING_A_STAGE = _to(Phase.RUNNING, Phase.AWAITING_APPROVAL, Phase.PROMOTING)
_BACK_FROM_A_PAUSE = _to(Phase.RUNNING, Phase.AWAITING_APPROVAL)
_MOVED_ON = _to(Phase.RUNNING, Phase.PROMOTING)


def _tolerated_or_rolled_back(phase: Phase) -> frozenset[Phase]:
    """A failed check within the failure limit leaves the phase as it is (not while promoting)."""
    if phase is Phase.PROMOTING:
        return _to(Phase.ROLLING_BACK)
    return _to(phase, Phase.ROLLING_BACK)


TRANSITIONS: dict[tuple[Phase, type[Event]], Transition] = {
    (Phase.STARTING, CanaryReady): Transition(_canary_ready, _to(Phase.RUNNING)),
    (Phase.RUNNING, StageTimerElapsed): Transition(_stage_timer_elapsed, _LEAVING_A_STAGE),
    (Phase.RUNNING, Advance): Transition(_advance, _LEAVING_A_STAGE),
    (Phase.RUNNING, Approve): Transition(
        _approve,
        _to(Phase.RUNNING),
        offered=lambda release: _gate_is_closed(release),  # noqa: PLW0108 (defined below)
    ),
    (Phase.AWAITING_APPROVAL, Approve): Transition(_approve, _MOVED_ON),
    (Phase.RUNNING, Promote): Transition(_promote, _MOVED_ON),
    (Phase.AWAITING_APPROVAL, Promote): Transition(_promote, _MOVED_ON),
    (Phase.RUNNING, Pause): Transition(_pause, _to(Phase.PAUSED)),
    (Phase.AWAITING_APPROVAL, Pause): Transition(_pause, _to(Phase.PAUSED)),
    (Phase.RUNNING, ChecksInconclusive): Transition(_checks_inconclusive, _to(Phase.PAUSED)),
    (Phase.AWAITING_APPROVAL, ChecksInconclusive): Transition(
        _checks_inconclusive, _to(Phase.PAUSED)
    ),
    (Phase.PAUSED, ChecksInconclusive): Transition(_recheck_while_paused, _to(Phase.PAUSED)),
    (Phase.RUNNING, ChecksPassed): Transition(_checks_passed, _to(Phase.RUNNING)),
    (Phase.AWAITING_APPROVAL, ChecksPassed): Transition(
        _checks_passed, _to(Phase.AWAITING_APPROVAL)
    ),
    (Phase.PAUSED, ChecksPassed): Transition(
        _checks_passed, _to(Phase.PAUSED, *_BACK_FROM_A_PAUSE)
    ),
    (Phase.PAUSED, Resume): Transition(_resume, _BACK_FROM_A_PAUSE),
    (Phase.PAUSED, PauseTimerElapsed): Transition(_pause_timer_elapsed, _BACK_FROM_A_PAUSE),
    (Phase.PROMOTING, PromotionDone): Transition(_promotion_done, _to(Phase.SUCCEEDED)),
    (Phase.ROLLING_BACK, RollbackDone): Transition(_rollback_done, _to(Phase.ROLLED_BACK)),
    (Phase.ROLLING_BACK, Rollback): Transition(_repeat_rollback, _to(Phase.ROLLING_BACK)),
    # Stopping harm is never gated: every unfinished phase accepts these.
    **{
        (phase, Rollback): Transition(_rollback, _to(Phase.ROLLING_BACK))
        for phase in _NOT_YET_ROLLING_BACK
    },
    **{
        (phase, ChecksFailed): Transition(_checks_failed, _tolerated_or_rolled_back(phase))
        for phase in _NOT_YET_ROLLING_BACK
    },
    **{(phase, Fail): Transition(_fail, _to(Phase.FAILED)) for phase in _UNFINISHED},
}


def offers(release: Release, action: type[Event]) -> bool:
    """True when a person should be offered `action` on this release now (a card's buttons)."""
    entry = TRANSITIONS.get((release.phase, action))
    return entry is not None and entry.offered(release)


# Moves shared by the steps.


def _enter_stage(release: Release, index: int, now: datetime) -> _Change:
    stage = release.plan.stages[index]
    due = now + timedelta(seconds=stage.duration_s)
    entered = release.evolve(
        phase=Phase.RUNNING,
        stage_index=index,
        stage_started_at=now,
        stage_due_at=due,
        checks_passed=0,
        checks_failed=0,
    )
    if stage.header_routed and stage.weight == 0:
        traffic = "no public traffic, the canary is reachable by header"
    else:
        traffic = f"{percent(stage.weight)} of traffic goes to the canary"
    span = f" for {format_duration(stage.duration_s)}" if stage.duration_s else ""
    gate = ", then it waits for approval" if stage.needs_approval else ""
    text = f"{_stage_label(entered)}{span}: {traffic}{gate}"
    return _Change(
        release=entered,
        reconcile=True,
        notices=(_notice(NoticeKind.STAGE_STARTED, text),),
    )


def _leave_stage(release: Release, now: datetime, *, by: str | None) -> _Change:
    if release.is_last_stage:
        return _begin_promotion(release, by=by)
    return _enter_stage(release, release.stage_index + 1, now)


def _await_approval(release: Release) -> _Change:
    waiting = release.evolve(phase=Phase.AWAITING_APPROVAL, stage_due_at=None)
    who = f"someone other than {mention(release.requested_by)}" if release.four_eyes else "someone"
    command = f"/release approve {release.app}"
    text = f"{_stage_label(release)} is done and needs approval from {who}: {command}"
    return _Change(
        release=waiting,
        notices=(_notice(NoticeKind.APPROVAL_REQUESTED, text),),
    )


def _begin_promotion(release: Release, *, by: str | None) -> _Change:
    stage_count = len(release.plan.stages)
    skipped = stage_count - 1 - release.stage_index
    if by is None:
        reason = f"all {stage_count} stages passed"
    elif skipped:
        reason = f"promoted by {mention(by)}, skipping {skipped} of {stage_count} stages"
    else:
        reason = f"promoted by {mention(by)} from the last stage"
    promoting = release.evolve(
        phase=Phase.PROMOTING, stage_due_at=None, outcome_by=by, outcome_reason=reason
    )
    text = (
        f"promoting {release.version} ({reason}): "
        "stable is being rolled to it, the canary takes 100 % meanwhile"
    )
    return _Change(
        release=promoting,
        reconcile=True,
        notices=(_notice(NoticeKind.PROMOTING, text),),
    )


def _begin_rollback(release: Release, *, by: str | None, reason: str, notice: Notify) -> _Change:
    rolling_back = release.evolve(
        phase=Phase.ROLLING_BACK,
        stage_due_at=None,
        pause=None,
        outcome_by=by,
        outcome_reason=reason,
    )
    return _Change(release=rolling_back, reconcile=True, notices=(notice,))


def _hold(
    release: Release, now: datetime, *, by: str | None, reason: str, resume_due_at: datetime | None
) -> Release:
    """The release PAUSED, remembering the stage time left so Resume can restore it."""
    remaining = timedelta(0)
    if release.stage_due_at is not None:
        remaining = max(release.stage_due_at - now, timedelta(0))
    pause = PauseInfo(
        by=by,
        reason=reason,
        paused_at=now,
        paused_from=release.phase,
        remaining_s=remaining.total_seconds(),
        resume_due_at=resume_due_at,
    )
    return release.evolve(phase=Phase.PAUSED, stage_due_at=None, pause=pause)


def _end_pause(release: Release, now: datetime, *, opening: str) -> _Change:
    pause = release.pause
    assert pause is not None  # only PAUSED releases are resumed
    if pause.paused_from is Phase.AWAITING_APPROVAL:
        waiting = release.evolve(phase=Phase.AWAITING_APPROVAL, pause=None)
        text = f"{opening}; {_stage_label(release)} still waits for approval"
        return _Change(release=waiting, notices=(_notice(NoticeKind.RESUMED, text),))
    due = now + timedelta(seconds=pause.remaining_s)
    running = release.evolve(phase=Phase.RUNNING, pause=None, stage_due_at=due)
    left = format_duration(pause.remaining_s)
    text = f"{opening}; {_stage_label(release)} goes on with {left} left"
    return _Change(release=running, notices=(_notice(NoticeKind.RESUMED, text),))


def _with_approvals(
    release: Release, *, by: str, now: datetime, stage_indexes: list[int]
) -> Release:
    if not stage_indexes:
        return release
    added = tuple(Approval(by=by, at=now, stage_index=index) for index in stage_indexes)
    return release.evolve(approvals=(*release.approvals, *added))


# Guards.


def _gate_is_closed(release: Release, index: int | None = None) -> bool:
    """True when stage `index` (default: the current one) needs an approval it does not have yet."""
    index = release.stage_index if index is None else index
    return release.plan.stages[index].needs_approval and release.approval_of(index) is None


def _four_eyes_refusal(release: Release, user: str, index: int) -> Refused | None:
    if release.four_eyes and user == release.requested_by:
        stage = _stage_label(release, index)
        return Refused(
            reason=f"four-eyes rule: {mention(user)} requested this release of {release.app}, "
            f"so someone else must approve {stage}"
        )
    return None


def _aimed_at_other_stage(release: Release, stage_index: int | None) -> Refused | None:
    if stage_index is None or stage_index == release.stage_index:
        return None
    total = len(release.plan.stages)
    return Refused(
        reason=f"that was meant for stage {stage_index + 1}/{total}, but {release.app} is now in "
        f"{_stage_label(release)}; nothing was changed"
    )


# Refusals for pairs the table does not list.

_ACTIONS: dict[type[Event], str] = {
    Advance: "advance",
    Approve: "approve",
    Pause: "pause",
    Resume: "resume",
    Rollback: "roll back",
    Promote: "promote",
}


def _refusal_reason(release: Release, event: Event, now: datetime) -> str:
    app = release.app
    if release.phase.is_terminal:
        return f"{app}'s release {release.version} already finished: {_outcome_text(release, now)}"
    if release.phase is Phase.PAUSED and isinstance(event, Pause | ChecksInconclusive):
        return f"{app} is already {_pause_text(release)}"
    if release.phase is Phase.PAUSED and isinstance(event, Advance | Approve | Promote):
        return f"{app} is {_pause_text(release)}; resume it first"
    if release.phase is Phase.AWAITING_APPROVAL and isinstance(event, Advance):
        return (
            f"{_stage_label(release)} of {app} waits for approval, "
            f"and advance never skips an approval gate: /release approve {app}"
        )
    return _generic_refusal(release, event)


def _generic_refusal(release: Release, event: Event) -> str:
    if isinstance(event, Resume):
        return f"{release.app} is not paused: {_phase_text(release)}"
    action = _ACTIONS.get(type(event))
    if action is not None:
        return f"can't {action} {release.app}: {_phase_text(release)}"
    return f"{release.app}: {type(event).__name__} does not apply while {_phase_text(release)}"


_STILL_PHASE_TEXTS = {
    Phase.STARTING: "its canary is still starting",
    Phase.PROMOTING: "it is being promoted",
    Phase.ROLLING_BACK: "it is rolling back",
}


def _phase_text(release: Release) -> str:
    """Where an unfinished release stands, for refusals."""
    if release.phase is Phase.RUNNING:
        return f"it is in {_stage_label(release)}"
    if release.phase is Phase.AWAITING_APPROVAL:
        return f"{_stage_label(release)} waits for approval"
    if release.phase is Phase.PAUSED:
        return f"it is {_pause_text(release)}"
    return _STILL_PHASE_TEXTS[release.phase]


def _pause_text(release: Release) -> str:
    assert release.pause is not None  # only called while PAUSED
    who = f" by {mention(release.pause.by)}" if release.pause.by else ""
    return f"paused{who}{_reason_suffix(release.pause.reason)}"


_FINISHED_VERBS = {
    Phase.SUCCEEDED: "succeeded",
    Phase.ROLLED_BACK: "rolled back",
    Phase.FAILED: "failed",
}


def _outcome_text(release: Release, now: datetime) -> str:
    assert release.finished_at is not None  # Release guarantees it once finished
    text = f"{_FINISHED_VERBS[release.phase]} at {_clock(release.finished_at, now)}"
    if release.outcome_by:
        text += f" by {mention(release.outcome_by)}"
    if release.outcome_reason:
        text += f" ({release.outcome_reason})"
    return text


def _where(release: Release) -> str:
    match release.phase:
        case Phase.STARTING:
            return "before the canary took any traffic"
        case Phase.PROMOTING:
            return "during promotion"
        case Phase.ROLLING_BACK:
            return "while rolling back"
        case _:
            return f"at {_stage_label(release)}"


# Text helpers.


def _notice(kind: NoticeKind, text: str, *, in_channel: bool = False) -> Notify:
    return Notify(kind=kind, text=text, in_channel=in_channel)


def _reason_suffix(reason: str) -> str:
    return f": {reason}" if reason else ""


def _stage_label(release: Release, index: int | None = None) -> str:
    index = release.stage_index if index is None else index
    stage = release.plan.stages[index]
    return f"stage {index + 1}/{len(release.plan.stages)} ({percent(stage.weight)})"


def _clock(when: datetime, now: datetime) -> str:
    """HH:MM UTC, with the date when it is not today."""
    when_utc = when.astimezone(UTC)
    same_day = when_utc.date() == now.astimezone(UTC).date()
    return when_utc.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")
