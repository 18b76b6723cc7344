"""The release state machine: (release, event, now) -> the next release and the effects to run.

Called by the Slack handlers and the scheduler through the release store, which saves the new
release and then carries out the effects in order. Pure: no I/O and no clock, `now` is passed in.
Every (phase, event type) pair the machine accepts is listed in its kind's table
(TRANSITIONS_BY_KIND: CANARY_TRANSITIONS, BLUE_GREEN_TRANSITIONS); anything else is refused with
a reason meant for the person who asked. A blue-green release walks a two-stage plan (the
preview, then the watch window at 100 %) with SWITCHING between them and KEEPING_BLUE after.
The machine decides; every text it gives a person (thread notices, refusal reasons) is worded by
bot.core.thread_wording.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from bot.core import thread_wording as wording
from bot.core.argo import RolloutAbort
from bot.core.plan import Plan
from bot.core.release import (
    Approval,
    BlueGreenPods,
    BlueGreenTimes,
    NoticeKind,
    OutboxNotice,
    PauseInfo,
    Phase,
    Release,
    ReleaseKind,
    RolloutView,
    VerificationRun,
    desired_traffic,
)
from bot.core.verification import job_name

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
class VerificationPassed:
    """The verification Job `job_name` at the current stage's gate succeeded (from the gate)."""

    job_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationFailed:
    """The verification Job `job_name` failed or ran out of time (from the gate); `log_tail`:
    the last lines of its pod's log, for the thread."""

    job_name: str
    reason: str
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Switched:
    """Blue-green: the apiserver serves the production selector on green (from the reconciler).
    `selector_s`: seconds from the switch's request to the apiserver serving the new selector;
    `endpoints_s`: to the EndpointSlices listing only green pods; None when not measured (the
    selector had been moved by an earlier pass)."""

    selector_s: float | None = None
    endpoints_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PodsObserved:
    """Blue-green: blue's and green's pods changed (from the reconciler); the card shows them."""

    pods: BlueGreenPods


@dataclass(frozen=True, slots=True, kw_only=True)
class BlueRetentionElapsed:
    """Blue-green: blue's retention is over, it is retired (from the scheduler)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutAborted:
    """Argo Rollouts aborted the release's Rollout, not the bot: its own analysis failed, or
    someone aborted it from outside (from the reconciler); Argo is already shifting traffic
    back to stable."""

    abort: RolloutAbort


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutMovedOn:
    """Argo Rollouts: the Rollout has reached stage `stage_index` of the release's plan, past
    the release's own (promoted from kubectl or Argo's dashboard), from the reconciler."""

    stage_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutObserved:
    """Argo Rollouts: what the Rollout's status shows changed (from the reconciler); the card
    shows it."""

    view: RolloutView


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
    | VerificationPassed
    | VerificationFailed
    | Switched
    | PodsObserved
    | BlueRetentionElapsed
    | RolloutAborted
    | RolloutObserved
    | RolloutMovedOn
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
    """A message in the release's thread; `in_channel` ones (alerts, approval requests) go to the
    channel itself as well."""

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
    approvers: tuple[str, ...] = (),
    kind: ReleaseKind = ReleaseKind.CANARY,
    blue_green: BlueGreenTimes | None = None,
) -> Accepted:
    """A new release of `kind` in STARTING; raises pydantic.ValidationError naming any bad
    field. A blue-green release walks `plan` from bot.core.plan.blue_green_plan and needs
    `blue_green`, its retention timers; a hybrid one walks bot.core.plan.hybrid_plan.

    `four_eyes` (from the app's policy) is fixed for the release's life: when set, the person
    who requested it cannot approve its gates, nor promote past them. `analysis_enabled`: metric
    checks gate its stages (the app has a metrics source). `approvers` (the app's
    authorization.approve, user and group IDs) is copied too, so the approval requests can say
    who may approve; the machine does not enforce it (the service's authorization does).
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
        approvers=approvers,
        started_at=now,
        analysis_enabled=analysis_enabled,
        kind=kind,
        blue_green=blue_green,
    )
    notice = _notice(NoticeKind.STARTED, wording.started(release))
    return _Change(release=release, reconcile=True, notices=(notice,)).accepted()


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
    entry = TRANSITIONS_BY_KIND[release.kind].get((release.phase, type(event)))
    if entry is None:
        return Refused(reason=wording.refusal(release, type(event).__name__, now))
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
    return _move_to_stage(release, 0, now)


def _stage_timer_elapsed(
    release: Release, event: StageTimerElapsed, now: datetime
) -> _Change | Refused:
    assert release.stage_due_at is not None  # Release guarantees it while RUNNING
    if now < release.stage_due_at:
        return Refused(reason=wording.stage_timer_not_due(release, now))
    for gate in STAGE_GATES:
        if (held := gate(release)) is not None:
            return held
    return _leave_stage(release, now, by=None)


def _passing_check_gate(release: Release) -> _Change | Refused | None:
    """A checked stage ends only after a passing metric check."""
    if release.analysis_enabled and release.stage.checked and release.checks_passed == 0:
        return Refused(reason=wording.no_passing_check_yet(release))
    return None


def _approval_gate(release: Release) -> _Change | Refused | None:
    """A stage needing approvals waits for them (last: an approval's arrival opens the way)."""
    return _await_approval(release) if _gate_is_closed(release) else None


Gate = Callable[[Release], "_Change | Refused | None"]
STAGE_GATES: tuple[Gate, ...] = (_passing_check_gate, _approval_gate)
"""What must hold, in order, before a stage whose timer is up is left (for blue-green's preview:
before the switch); each returns None when open, else the refusal or the change that waits.
The approval gate stays last. A verification Job is not among them: a stage naming one is
entered through VERIFYING (_move_to_stage), so its Job has passed before the stage's timer runs
(blue-green's and hybrid's preview: after green is ready, before the approval is asked)."""


def _advance(release: Release, event: Advance, now: datetime) -> _Change | Refused:
    if refused := _aimed_at_other_stage(release, event.stage_index):
        return refused
    notice = _notice(NoticeKind.ADVANCED, wording.ended_early(release, event.by))
    if _gate_is_closed(release):
        return _await_approval(release).preceded_by(notice)
    return _leave_stage(release, now, by=event.by).preceded_by(notice)


def _approve(release: Release, event: Approve, now: datetime) -> _Change | Refused:
    """One person's approval of the current stage; a stage needing N approvals moves on (or is
    approved ahead of time) with the N-th distinct one. The same person counts once."""
    if refused := _aimed_at_other_stage(release, event.stage_index):
        return refused
    if not release.stage.needs_approval:
        return Refused(reason=wording.needs_no_approval(release))
    missing = release.approvals_missing()
    if missing == 0:
        earlier = release.approval_of(release.stage_index)
        assert earlier is not None  # a gate needing approval and missing none has one
        return Refused(reason=wording.already_approved(release, earlier, now))
    if event.by in release.approvers_of(release.stage_index):
        return Refused(reason=wording.already_approved_by_you(release, missing))
    if refused := _four_eyes_refusal(release, event.by, release.stage_index):
        return refused
    approved = _with_approvals(release, by=event.by, now=now, stage_indexes=[release.stage_index])
    if approved.approvals_missing():
        text = wording.approval_counted(approved, event.by)
        return _Change(release=approved, notices=(_notice(NoticeKind.APPROVED, text),))
    if release.phase is Phase.RUNNING:
        text = wording.approved_ahead_of_time(release, event.by)
        return _Change(release=approved, notices=(_notice(NoticeKind.APPROVED, text),))
    notice = _notice(NoticeKind.APPROVED, wording.approved(release, event.by))
    return _leave_stage(approved, now, by=event.by).preceded_by(notice)


def _promote(release: Release, event: Promote, now: datetime) -> _Change | Refused:
    """Promote past a gate counts as one approval of it by the promoter, never more: a gate
    needing N approvals is passed only when the promoter's would be the last one missing."""
    if refused := _aimed_at_other_stage(release, event.stage_index):
        return refused
    passed = range(
        release.stage_index, len(release.plan.stages) if event.full else release.stage_index + 1
    )
    gates = [index for index in passed if _gate_is_closed(release, index)]
    for index in gates:
        if refused := _four_eyes_refusal(release, event.by, index):
            return refused
        counted = 0 if event.by in release.approvers_of(index) else 1
        if (missing := release.approvals_missing(index) - counted) > 0:
            return Refused(reason=wording.promote_short_of_approvals(release, index, missing))
    approved = _with_approvals(release, by=event.by, now=now, stage_indexes=gates)
    if event.full:
        return _EXITS[release.kind].finish(approved, now, event.by)
    notice = _notice(NoticeKind.ADVANCED, wording.promoted_past_stage(release, event.by))
    return _leave_stage(approved, now, by=event.by).preceded_by(notice)


def _pause(release: Release, event: Pause, now: datetime) -> _Change | Refused:
    if event.duration_s is not None and event.duration_s <= 0:
        return Refused(reason=wording.pause_duration_not_positive(event.duration_s))
    resume_due_at = None if event.duration_s is None else now + timedelta(seconds=event.duration_s)
    paused = _hold(release, now, by=event.by, reason=event.reason, resume_due_at=resume_due_at)
    text = wording.paused_by(release, event.by, event.reason, resume_due_at, now)
    return _Change(release=paused, reconcile=True, notices=(_notice(NoticeKind.PAUSED, text),))


def _checks_passed(release: Release, event: ChecksPassed, now: datetime) -> _Change:
    recorded = release.evolve(
        checks_passed=release.checks_passed + 1,
        last_check_at=now,
        latest_metrics=event.summary,
        last_snapshot_at=now if event.snapshot else release.last_snapshot_at,
    )
    snapshot = (_notice(NoticeKind.SNAPSHOT, event.snapshot),) if event.snapshot else ()
    if _paused_by_metrics(release):
        opening = wording.metrics_conclusive_again(release, event.summary)
        return _end_pause(recorded, now, opening=opening).followed_by(*snapshot)
    return _Change(release=recorded, notices=snapshot)


def _recheck_while_paused(
    release: Release, event: ChecksInconclusive, now: datetime
) -> _Change | Refused:
    if not _paused_by_metrics(release):
        return Refused(reason=wording.already_paused(release))
    return _Change(release=release.evolve(last_check_at=now))


def _inconclusive_at_gate(release: Release, event: ChecksInconclusive, now: datetime) -> _Change:
    """While a verification Job holds the gate the release cannot pause: the check is recorded,
    and the stage that follows still needs a passing check of its own before its timer ends it."""
    return _Change(release=release.evolve(last_check_at=now))


def _paused_by_metrics(release: Release) -> bool:
    pause = release.pause
    return pause is not None and pause.reason.startswith(wording.METRICS_PAUSE_PREFIX)


def _checks_inconclusive(release: Release, event: ChecksInconclusive, now: datetime) -> _Change:
    reason = wording.metrics_pause_reason(event.reason)
    paused = _hold(release, now, by=None, reason=reason, resume_due_at=None).evolve(
        last_check_at=now
    )
    text = wording.paused_by_metrics(release, event.reason)
    return _Change(
        release=paused,
        reconcile=True,
        notices=(_notice(NoticeKind.PAUSED, text, in_channel=True),),
    )


def _resume(release: Release, event: Resume, now: datetime) -> _Change:
    return _end_pause(release, now, opening=wording.resumed_by(release, event.by))


def _pause_timer_elapsed(
    release: Release, event: PauseTimerElapsed, now: datetime
) -> _Change | Refused:
    assert release.pause is not None  # Release guarantees it while PAUSED
    due = release.pause.resume_due_at
    if due is None:
        return Refused(reason=wording.pause_has_no_end(release))
    if now < due:
        return Refused(reason=wording.pause_not_due(release, due, now))
    return _end_pause(release, now, opening=wording.timed_pause_over(release))


def _rollback(release: Release, event: Rollback, now: datetime) -> _Change:
    reason = wording.rollback_reason(event.reason)
    notice = _notice(NoticeKind.ROLLBACK, wording.rolling_back_by(release, event.by, reason))
    return _begin_rollback(release, by=event.by, reason=reason, notice=notice)


def _repeat_rollback(release: Release, event: Rollback, now: datetime) -> _Change:
    notice = _notice(NoticeKind.ROLLBACK, wording.rolling_back_again(event.by))
    return _Change(release=release, reconcile=True, notices=(notice,))


def _checks_failed(release: Release, event: ChecksFailed, now: datetime) -> _Change:
    reading = wording.check_reading(event.metric, event.value, event.threshold, event.unit)
    failed = release.checks_failed + 1
    if failed <= event.failure_limit and release.phase is not Phase.PROMOTING:
        recorded = release.evolve(
            checks_failed=failed, last_check_at=now, latest_metrics=event.summary or None
        )
        text = wording.check_failed_tolerated(release, reading, failed, event.failure_limit)
        return _Change(release=recorded, notices=(_notice(NoticeKind.CHECK_FAILED, text),))
    text = wording.rolling_back_automatically(release, reading)
    release = release.evolve(
        checks_failed=failed,
        last_check_at=now,
        latest_metrics=event.summary or release.latest_metrics,
    )
    notice = _notice(NoticeKind.AUTO_ROLLBACK, text, in_channel=True)
    reason = wording.checks_failed_reason(reading)
    return _begin_rollback(release, by=None, reason=reason, notice=notice)


def _promotion_done(release: Release, event: PromotionDone, now: datetime) -> _Change:
    done = release.evolve(phase=Phase.SUCCEEDED, finished_at=now)
    notice = _notice(NoticeKind.SUCCEEDED, wording.released(release))
    return _Change(release=done, reconcile=True, notices=(notice,))


def _rollback_done(release: Release, event: RollbackDone, now: datetime) -> _Change:
    done = release.evolve(phase=Phase.ROLLED_BACK, finished_at=now)
    notice = _notice(NoticeKind.ROLLED_BACK, wording.rolled_back(release))
    return _Change(release=done, notices=(notice,))


def _verification_passed(
    release: Release, event: VerificationPassed, now: datetime
) -> _Change | Refused:
    if refused := _other_verification(release, event.job_name):
        return refused
    notice = _notice(NoticeKind.VERIFICATION, wording.verification_passed(release, event.job_name))
    return _enter_stage(release, release.stage_index, now).preceded_by(notice)


def _verification_failed(
    release: Release, event: VerificationFailed, now: datetime
) -> _Change | Refused:
    """An automatic rollback: the alert (channel and thread) names the Job and why; its log
    lines follow in the thread only."""
    if refused := _other_verification(release, event.job_name):
        return refused
    text = wording.rolling_back_after_verification(release, event.job_name, event.reason)
    alert = _notice(NoticeKind.AUTO_ROLLBACK, text, in_channel=True)
    reason = wording.verification_failed_reason(event.job_name, event.reason)
    change = _begin_rollback(release, by=None, reason=reason, notice=alert)
    log_text = wording.verification_log(event.job_name, event.log_tail)
    return change.followed_by(_notice(NoticeKind.VERIFICATION_LOG, log_text))


def _switched(release: Release, event: Switched, now: datetime) -> _Change:
    text = wording.switched(release, event.selector_s, event.endpoints_s)
    return _enter_stage(release, release.stage_index + 1, now).preceded_by(
        _notice(NoticeKind.SWITCHED, text)
    )


def _pods_observed(release: Release, event: PodsObserved, now: datetime) -> _Change:
    return _Change(release=release.evolve(pods=event.pods))


def _switch_refused(release: Release, event: Fail, now: datetime) -> _Change:
    """The apiserver refused the switch: blue still serves, and the preview waits for a fresh
    approval (the one given is spent) once the cause is fixed."""
    waiting = release.evolve(
        phase=Phase.AWAITING_APPROVAL,
        switch_requested_at=None,
        approvals=tuple(a for a in release.approvals if a.stage_index != release.stage_index),
    )
    text = wording.switch_refused(release, event.reason)
    return _Change(
        release=waiting,
        reconcile=True,
        notices=(_notice(NoticeKind.SWITCH_REFUSED, text, in_channel=True),),
    )


def _blue_retention_elapsed(
    release: Release, event: BlueRetentionElapsed, now: datetime
) -> _Change | Refused:
    assert release.blue_due_at is not None and release.blue_green is not None
    if now < release.blue_due_at:
        return Refused(reason=wording.blue_retention_not_due(release, now))
    delete_at = now + timedelta(seconds=release.blue_green.scale_down_grace_s)
    retiring = release.evolve(phase=Phase.PROMOTING, blue_due_at=delete_at)
    notice = _notice(NoticeKind.PROMOTING, wording.retiring_blue(release, delete_at, now))
    return _Change(release=retiring, reconcile=True, notices=(notice,))


def _rollout_aborted(release: Release, event: RolloutAborted, now: datetime) -> _Change:
    text = wording.aborted_by_argo(release, event.abort)
    notice = _notice(NoticeKind.AUTO_ROLLBACK, text, in_channel=True)
    reason = wording.aborted_by_argo_reason(event.abort)
    return _begin_rollback(release, by=None, reason=reason, notice=notice)


def _rollout_moved_on(release: Release, event: RolloutMovedOn, now: datetime) -> _Change | Refused:
    """The release follows its Rollout into the stage it reached outside the bot."""
    if not release.stage_index < event.stage_index < len(release.plan.stages):
        return Refused(reason=wording.rollout_not_ahead(release, event.stage_index))
    notice = _notice(NoticeKind.ADVANCED, wording.rollout_moved_on(release, event.stage_index))
    return _enter_stage(release, event.stage_index, now).preceded_by(notice)


def _rollout_observed(release: Release, event: RolloutObserved, now: datetime) -> _Change:
    return _Change(release=release.evolve(rollout=event.view))


def _fail(release: Release, event: Fail, now: datetime) -> _Change:
    failed = release.evolve(
        phase=Phase.FAILED,
        finished_at=now,
        stage_due_at=None,
        pause=None,
        verification=None,
        blue_due_at=None,
        outcome_by=None,
        outcome_reason=event.reason,
    )
    notice = _notice(NoticeKind.FAILED, wording.failed(release, event.reason), in_channel=True)
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
    Phase.VERIFYING,
    Phase.RUNNING,
    Phase.AWAITING_APPROVAL,
    Phase.PAUSED,
    Phase.PROMOTING,
    Phase.ROLLING_BACK,
)
_NOT_YET_ROLLING_BACK = tuple(phase for phase in _UNFINISHED if phase is not Phase.ROLLING_BACK)
_ENTERING_A_STAGE = _to(Phase.RUNNING, Phase.VERIFYING)  # a stage with a Job is verified first
_LEAVING_A_STAGE = _ENTERING_A_STAGE | _to(Phase.AWAITING_APPROVAL, Phase.PROMOTING)
_BACK_FROM_A_PAUSE = _to(Phase.RUNNING, Phase.AWAITING_APPROVAL)
_MOVED_ON = _ENTERING_A_STAGE | _to(Phase.PROMOTING)


def _tolerated_or_rolled_back(phase: Phase) -> frozenset[Phase]:
    """A failed check within the failure limit leaves the phase as it is (not while promoting)."""
    if phase is Phase.PROMOTING:
        return _to(Phase.ROLLING_BACK)
    return _to(phase, Phase.ROLLING_BACK)


TransitionTable = dict[tuple[Phase, type[Event]], Transition]

_VERIFYING_TRANSITIONS: TransitionTable = {
    (Phase.VERIFYING, VerificationPassed): Transition(_verification_passed, _to(Phase.RUNNING)),
    (Phase.VERIFYING, VerificationFailed): Transition(
        _verification_failed, _to(Phase.ROLLING_BACK)
    ),
    # The canary (or green, on preview) keeps the traffic it held, so it is checked meanwhile:
    # a failing check rolls back (as in every unfinished phase), a passing one is recorded.
    (Phase.VERIFYING, ChecksPassed): Transition(_checks_passed, _to(Phase.VERIFYING)),
    (Phase.VERIFYING, ChecksInconclusive): Transition(_inconclusive_at_gate, _to(Phase.VERIFYING)),
}
"""A stage naming a verification Job is entered through VERIFYING, in every kind's table."""

_PAUSE_AND_CHECK_TRANSITIONS: TransitionTable = {
    (Phase.RUNNING, Pause): Transition(_pause, _to(Phase.PAUSED)),
    (Phase.AWAITING_APPROVAL, Pause): Transition(_pause, _to(Phase.PAUSED)),
    (Phase.PAUSED, Resume): Transition(_resume, _BACK_FROM_A_PAUSE),
    (Phase.PAUSED, PauseTimerElapsed): Transition(_pause_timer_elapsed, _BACK_FROM_A_PAUSE),
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
}
"""Pausing, resuming and the metric checks of a stage: the same in every kind's table."""

CANARY_TRANSITIONS: TransitionTable = {
    (Phase.STARTING, CanaryReady): Transition(_canary_ready, _ENTERING_A_STAGE),
    **_VERIFYING_TRANSITIONS,
    (Phase.RUNNING, StageTimerElapsed): Transition(_stage_timer_elapsed, _LEAVING_A_STAGE),
    (Phase.RUNNING, Advance): Transition(_advance, _LEAVING_A_STAGE),
    (Phase.RUNNING, Approve): Transition(
        _approve,
        _to(Phase.RUNNING),
        offered=lambda release: _gate_is_closed(release),  # noqa: PLW0108 (defined below)
    ),
    (Phase.AWAITING_APPROVAL, Approve): Transition(
        _approve,
        _to(Phase.AWAITING_APPROVAL, *_MOVED_ON),  # waiting on: one of N approvals
    ),
    (Phase.RUNNING, Promote): Transition(_promote, _MOVED_ON),
    (Phase.AWAITING_APPROVAL, Promote): Transition(_promote, _MOVED_ON),
    **_PAUSE_AND_CHECK_TRANSITIONS,
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
TRANSITIONS = CANARY_TRANSITIONS

_BG_UNFINISHED = (*_UNFINISHED, Phase.SWITCHING, Phase.KEEPING_BLUE)
_BG_STAGE_PHASES = (Phase.RUNNING, Phase.AWAITING_APPROVAL, Phase.PAUSED)
_BG_LEAVING_A_STAGE = _to(Phase.AWAITING_APPROVAL, Phase.SWITCHING, Phase.KEEPING_BLUE)
_BG_MOVED_ON = _to(Phase.SWITCHING, Phase.KEEPING_BLUE)
_BG_ROLLBACK_FROM = (
    Phase.STARTING,
    Phase.VERIFYING,
    *_BG_STAGE_PHASES,
    Phase.SWITCHING,
    Phase.KEEPING_BLUE,
)

BLUE_GREEN_TRANSITIONS: TransitionTable = {
    # green starting beside blue, its verification Job against the preview Service when the
    # plan names one, then the preview (stage 1: blue serves, green on preview)
    (Phase.STARTING, CanaryReady): Transition(_canary_ready, _ENTERING_A_STAGE),
    **_VERIFYING_TRANSITIONS,
    (Phase.RUNNING, StageTimerElapsed): Transition(_stage_timer_elapsed, _BG_LEAVING_A_STAGE),
    (Phase.RUNNING, Advance): Transition(_advance, _BG_LEAVING_A_STAGE),
    (Phase.RUNNING, Approve): Transition(
        _approve,
        _to(Phase.RUNNING),
        offered=lambda release: _gate_is_closed(release),  # noqa: PLW0108 (defined below)
    ),
    (Phase.AWAITING_APPROVAL, Approve): Transition(
        _approve, _to(Phase.AWAITING_APPROVAL, *_BG_MOVED_ON)
    ),
    (Phase.RUNNING, Promote): Transition(_promote, _BG_MOVED_ON),
    (Phase.AWAITING_APPROVAL, Promote): Transition(_promote, _BG_MOVED_ON),
    # the switch: one selector update; a refusal leaves blue serving and the preview waiting
    (Phase.SWITCHING, Switched): Transition(_switched, _to(Phase.RUNNING)),
    (Phase.SWITCHING, Fail): Transition(_switch_refused, _to(Phase.AWAITING_APPROVAL)),
    # the watch window (stage 2, 100 % on green), then blue kept as the rollback path
    (Phase.KEEPING_BLUE, BlueRetentionElapsed): Transition(
        _blue_retention_elapsed, _to(Phase.PROMOTING)
    ),
    (Phase.PROMOTING, PromotionDone): Transition(_promotion_done, _to(Phase.SUCCEEDED)),
    **_PAUSE_AND_CHECK_TRANSITIONS,
    **{
        (phase, ChecksFailed): Transition(_checks_failed, _to(phase, Phase.ROLLING_BACK))
        for phase in (Phase.STARTING, Phase.VERIFYING, *_BG_STAGE_PHASES)
    },
    # switching back to blue works while blue exists: not once it is being retired
    **{
        (phase, Rollback): Transition(_rollback, _to(Phase.ROLLING_BACK))
        for phase in _BG_ROLLBACK_FROM
    },
    (Phase.ROLLING_BACK, Rollback): Transition(_repeat_rollback, _to(Phase.ROLLING_BACK)),
    (Phase.ROLLING_BACK, RollbackDone): Transition(_rollback_done, _to(Phase.ROLLED_BACK)),
    **{
        (phase, Fail): Transition(_fail, _to(Phase.FAILED))
        for phase in _BG_UNFINISHED
        if phase is not Phase.SWITCHING
    },
    **{
        (phase, PodsObserved): Transition(_pods_observed, _to(phase), offered=lambda _: False)
        for phase in _BG_UNFINISHED
    },
}

ARGO_TRANSITIONS: TransitionTable = {
    **CANARY_TRANSITIONS,
    # Argo aborted the Rollout itself (its analysis) or someone did outside the bot
    **{
        (phase, RolloutAborted): Transition(
            _rollout_aborted, _to(Phase.ROLLING_BACK), offered=lambda _: False
        )
        for phase in _NOT_YET_ROLLING_BACK
    },
    **{
        (phase, RolloutMovedOn): Transition(
            _rollout_moved_on, _to(Phase.RUNNING), offered=lambda _: False
        )
        for phase in (Phase.RUNNING, Phase.AWAITING_APPROVAL)
    },
    **{
        (phase, RolloutObserved): Transition(_rollout_observed, _to(phase), offered=lambda _: False)
        for phase in _UNFINISHED
    },
}
"""An Argo Rollout walks the canary's table over the stages of its own steps (bot.core.argo):
the bot decides as for its own canary, the Rollout's fields carry it out (bot.kube.argo)."""

TRANSITIONS_BY_KIND: dict[ReleaseKind, TransitionTable] = {
    ReleaseKind.CANARY: CANARY_TRANSITIONS,
    ReleaseKind.BLUE_GREEN: BLUE_GREEN_TRANSITIONS,
    # hybrid walks a canary's stages; its first one is the preview, gated like blue-green's
    ReleaseKind.HYBRID: CANARY_TRANSITIONS,
    ReleaseKind.ARGO_CANARY: ARGO_TRANSITIONS,
    ReleaseKind.ARGO_BLUE_GREEN: ARGO_TRANSITIONS,
}


def offers(release: Release, action: type[Event]) -> bool:
    """True when a person should be offered `action` on this release now (a card's buttons)."""
    entry = TRANSITIONS_BY_KIND[release.kind].get((release.phase, action))
    return entry is not None and entry.offered(release)


# Moves shared by the steps.


def _move_to_stage(release: Release, index: int, now: datetime) -> _Change:
    """Into stage `index`, or first to its gate when the stage names a verification Job."""
    verification = release.plan.stages[index].verification
    if verification is None:
        return _enter_stage(release, index, now)
    run = VerificationRun(
        verification=verification,
        job_name=job_name(release.app, release.id, index),
        started_at=now,
        held=desired_traffic(release),
    )
    verifying = release.evolve(
        phase=Phase.VERIFYING,
        stage_index=index,
        stage_started_at=None,  # the stage starts when its Job has passed
        stage_due_at=None,
        checks_passed=0,
        checks_failed=0,
        verification=run,
    )
    text = wording.verification_started(verifying, run)
    return _Change(
        release=verifying,
        reconcile=True,  # the Job is created with the rest of the cluster's desired state
        notices=(_notice(NoticeKind.VERIFICATION, text),),
    )


def _enter_stage(release: Release, index: int, now: datetime) -> _Change:
    stage = release.plan.stages[index]
    due = now + timedelta(seconds=stage.duration_s)
    entered = release.evolve(
        phase=Phase.RUNNING,
        stage_index=index,
        stage_started_at=now,
        stage_starts=(*release.stage_starts, now),
        stage_due_at=due,
        checks_passed=0,
        checks_failed=0,
        verification=None,
    )
    return _Change(
        release=entered,
        reconcile=True,
        notices=(_notice(NoticeKind.STAGE_STARTED, wording.stage_started(entered)),),
    )


def _leave_stage(release: Release, now: datetime, *, by: str | None) -> _Change:
    exits = _EXITS[release.kind]
    if release.is_last_stage:
        return exits.finish(release, now, by)
    return exits.next_stage(release, now, by)


def _begin_switch(release: Release, now: datetime, by: str | None) -> _Change:
    """Blue-green leaves its preview: production moves to green in one selector update."""
    switching = release.evolve(phase=Phase.SWITCHING, stage_due_at=None, switch_requested_at=now)
    notice = _notice(NoticeKind.STAGE_STARTED, wording.switching(release, by))
    return _Change(release=switching, reconcile=True, notices=(notice,))


def _keep_blue(release: Release, now: datetime, by: str | None) -> _Change:
    """Blue-green's watch window passed: green serves, blue is kept for its retention."""
    assert release.blue_green is not None  # every blue-green release has its times
    due = now + timedelta(seconds=release.blue_green.retention_s)
    reason = wording.promotion_reason(release, by)
    keeping = release.evolve(
        phase=Phase.KEEPING_BLUE,
        stage_due_at=None,
        blue_due_at=due,
        outcome_by=by,
        outcome_reason=reason,
    )
    notice = _notice(NoticeKind.BLUE_KEPT, wording.keeping_blue(release, reason, due, now))
    return _Change(release=keeping, reconcile=True, notices=(notice,))


@dataclass(frozen=True, slots=True)
class _Exits:
    """How a kind leaves a stage: into the next one, and past the last."""

    next_stage: Callable[[Release, datetime, str | None], _Change]
    finish: Callable[[Release, datetime, str | None], _Change]


_CANARY_EXITS = _Exits(
    next_stage=lambda release, now, by: _move_to_stage(release, release.stage_index + 1, now),
    finish=lambda release, now, by: _begin_promotion(release, by=by),
)
_EXITS = {
    ReleaseKind.CANARY: _CANARY_EXITS,
    ReleaseKind.HYBRID: _CANARY_EXITS,
    # a Rollout's blue-green switch is its stage 2, which Argo makes once the preview is left
    ReleaseKind.ARGO_CANARY: _CANARY_EXITS,
    ReleaseKind.ARGO_BLUE_GREEN: _CANARY_EXITS,
    # leaving the preview, or promoting past it with --full, is the switch
    ReleaseKind.BLUE_GREEN: _Exits(
        next_stage=_begin_switch,
        finish=lambda release, now, by: (
            _keep_blue(release, now, by) if release.stage_index else _begin_switch(release, now, by)
        ),
    ),
}


def _await_approval(release: Release) -> _Change:
    waiting = release.evolve(phase=Phase.AWAITING_APPROVAL, stage_due_at=None)
    text = wording.approval_requested(release)
    notice = _notice(NoticeKind.APPROVAL_REQUESTED, text, in_channel=True)
    return _Change(release=waiting, notices=(notice,))


def _begin_promotion(release: Release, *, by: str | None) -> _Change:
    reason = wording.promotion_reason(release, by)
    promoting = release.evolve(
        phase=Phase.PROMOTING, stage_due_at=None, outcome_by=by, outcome_reason=reason
    )
    notice = _notice(NoticeKind.PROMOTING, wording.promoting(release, reason))
    return _Change(release=promoting, reconcile=True, notices=(notice,))


def _begin_rollback(release: Release, *, by: str | None, reason: str, notice: Notify) -> _Change:
    rolling_back = release.evolve(
        phase=Phase.ROLLING_BACK,
        stage_due_at=None,
        pause=None,
        verification=None,
        outcome_by=by,
        outcome_reason=reason,
    )
    return _Change(release=rolling_back, reconcile=True, notices=(notice,))


def _hold(
    release: Release, now: datetime, *, by: str | None, reason: str, resume_due_at: datetime | None
) -> Release:
    """The release PAUSED, remembering the stage time left so Resume can restore it. Pausing and
    resuming reconcile the cluster: most strategies hold traffic as it is, an Argo Rollout
    holds itself by its spec.paused."""
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
        text = wording.resumed_awaiting_approval(release, opening)
        notices = (_notice(NoticeKind.RESUMED, text),)
        return _Change(release=waiting, reconcile=True, notices=notices)
    due = now + timedelta(seconds=pause.remaining_s)
    running = release.evolve(phase=Phase.RUNNING, pause=None, stage_due_at=due)
    text = wording.resumed_with_time_left(release, opening, pause.remaining_s)
    return _Change(release=running, reconcile=True, notices=(_notice(NoticeKind.RESUMED, text),))


def _with_approvals(
    release: Release, *, by: str, now: datetime, stage_indexes: list[int]
) -> Release:
    if not stage_indexes:
        return release
    added = tuple(Approval(by=by, at=now, stage_index=index) for index in stage_indexes)
    return release.evolve(approvals=(*release.approvals, *added))


# Guards.


def _gate_is_closed(release: Release, index: int | None = None) -> bool:
    """True when stage `index` (default: the current one) still misses some of its approvals."""
    return release.approvals_missing(index) > 0


def _four_eyes_refusal(release: Release, user: str, index: int) -> Refused | None:
    if release.four_eyes and user == release.requested_by:
        return Refused(reason=wording.four_eyes_rule(release, user, index))
    return None


def _other_verification(release: Release, name: str) -> Refused | None:
    """An outcome of another Job (an earlier gate's, read late) decides nothing here."""
    run = release.verification
    if run is not None and run.job_name == name:
        return None
    return Refused(reason=wording.not_this_verification(release, name))


def _aimed_at_other_stage(release: Release, stage_index: int | None) -> Refused | None:
    if stage_index is None or stage_index == release.stage_index:
        return None
    return Refused(reason=wording.meant_for_other_stage(release, stage_index))


# Effects' helpers.


def _notice(kind: NoticeKind, text: str, *, in_channel: bool = False) -> Notify:
    return Notify(kind=kind, text=text, in_channel=in_channel)
