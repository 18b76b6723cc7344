"""Called by the state machine (bot.core.machine): every thread message and refusal it words.

One function per message, named after what it says; each takes the release and the facts it
needs and returns the text. The outcome and pause reasons kept in the release record (and shown
again by the card) are worded here too. The machine decides, this module only says it. Pure.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.core.argo import RolloutAbort
from bot.core.durations import format_duration
from bot.core.release import Approval, DesiredTraffic, Phase, Release, ReleaseKind, VerificationRun
from bot.core.text import amount, count, mention, percent, plan_text, principal_mention

# Notices: the thread messages of accepted events.


def started(release: Release) -> str:
    previous = release.previous_version
    replacing = f" (replacing {previous})" if previous else ""
    if release.kind.drives_argo:
        return (
            f"{mention(release.requested_by)} started a release of {release.app} "
            f"{release.version}{replacing} through its Argo Rollout, walking the Rollout's own "
            f"steps: {plan_text(release.plan)}"
        )
    if release.kind is ReleaseKind.HYBRID:
        return (
            f"{mention(release.requested_by)} started a hybrid release of {release.app} "
            f"{release.version}{replacing}: green comes up beside blue at full size, reachable "
            f"through its preview Service; once approved, production traffic moves onto it in "
            f"canary stages: {plan_text(release.plan)}"
        )
    if release.kind is ReleaseKind.BLUE_GREEN:
        return (
            f"{mention(release.requested_by)} started a blue-green release of {release.app} "
            f"{release.version}{replacing}: green comes up beside blue, reachable through its "
            f"preview Service; production switches to it once approved, then is watched for "
            f"{format_duration(release.plan.stages[-1].duration_s)}"
        )
    return (
        f"{mention(release.requested_by)} started a canary of {release.app} {release.version}"
        f"{replacing}, plan {release.plan.name}: {plan_text(release.plan)}"
    )


def stage_started(release: Release) -> str:
    """The release has just entered its current stage."""
    stage = release.stage
    if release.kind is ReleaseKind.BLUE_GREEN or _is_preview(release, release.stage_index):
        return _blue_green_stage_started(release)
    if stage.header_routed and stage.weight == 0:
        traffic = "no public traffic, the canary is reachable by header"
    else:
        target = "green" if release.kind is ReleaseKind.HYBRID else "the canary"
        traffic = f"{percent(stage.weight)} of traffic goes to {target}"
    span = f" for {format_duration(stage.duration_s)}" if stage.duration_s else ""
    gate = ", then it waits for approval" if stage.needs_approval else ""
    return f"{stage_label(release)}{span}: {traffic}{gate}"


def _is_preview(release: Release, index: int) -> bool:
    """The first stage of a blue-green or hybrid release: green on its preview Service only."""
    return release.previews(index)


def _blue_green_stage_started(release: Release) -> str:
    if release.stage_index == 0:
        return (
            f"{stage_label(release)}: green {release.version} is ready on its preview Service, "
            f"blue {release.previous_version} serves production; production traffic moves onto "
            "green once approved"
        )
    return (
        f"{stage_label(release)} for {format_duration(release.stage.duration_s)}: production "
        f"traffic is checked on green; a failing check switches back to blue by itself"
    )


def switching(release: Release, by: str | None) -> str:
    """`release` before the switch."""
    who = f" ({mention(by)})" if by else ""
    return f"switching production of {release.app} to green {release.version}{who}"


def switched(release: Release, selector_s: float | None, endpoints_s: float | None) -> str:
    """Green took production; the times are measured from the switch's request."""
    if selector_s is None:
        return f"Switched production of {release.app} to green {release.version}"
    text = f"Switched production to green in {selector_s:.2f} s"
    if endpoints_s is not None:
        text += f" (EndpointSlices listed only green pods after {endpoints_s:.2f} s)"
    return text


def switch_refused(release: Release, reason: str) -> str:
    return (
        f"the apiserver refused to switch production of {release.app} to green "
        f"{release.version}: {reason}. Blue {release.previous_version} still serves production; "
        f"fix the cause and approve again (/release approve {release.app}), or roll back"
    )


def keeping_blue(release: Release, reason: str, due: datetime, now: datetime) -> str:
    return (
        f"green {release.version} passed the watch window ({reason}); blue "
        f"{release.previous_version} is kept until {_clock(due, now)} as the rollback path: "
        f"/release rollback {release.app} switches back at once"
    )


def retiring_blue(release: Release, delete_at: datetime, now: datetime) -> str:
    return (
        f"blue {release.previous_version}'s retention is over: it is scaled down to 0, and "
        f"deleted at {_clock(delete_at, now)}"
    )


def blue_retention_not_due(release: Release, now: datetime) -> str:
    assert release.blue_due_at is not None
    return f"blue of {release.app} is kept until {_clock(release.blue_due_at, now)}"


def ended_early(release: Release, by: str) -> str:
    return f"{mention(by)} ended {stage_label(release)} early"


def approval_requested(release: Release) -> str:
    """Posted in the thread and the channel: what the stage needs, and who may give it."""
    needed = release.stage.approvals_required
    other = f" other than {mention(release.requested_by)}" if release.four_eyes else ""
    if needed == 1:
        what = f"approval from {'someone' + other if other else 'someone'}"
    else:
        what = f"{needed} approvals from different people{other}"
        if (missing := release.approvals_missing()) < needed:
            what += f" ({missing} more needed)"
    command = f"/release approve {release.app}"
    return (
        f"{stage_label(release)} is done and needs {what}: {command}. "
        f"May approve: {who_may_approve(release)}"
    )


def who_may_approve(release: Release) -> str:
    """The app's approvers as mentions, or anyone (but the requester under four-eyes)."""
    requester = mention(release.requested_by)
    if not release.approvers:
        return f"anyone but {requester}" if release.four_eyes else "anyone in the channel"
    listed = ", ".join(principal_mention(principal) for principal in release.approvers)
    return f"{listed}, not {requester}" if release.four_eyes else listed


def approvals_tally(release: Release) -> str:
    """E.g. '1 of 2 approvals: <@U1>; 1 more needed' for the current stage."""
    approvers = release.approvers_of(release.stage_index)
    needed = release.stage.approvals_required
    given = ", ".join(mention(user) for user in approvers)
    tally = f"{len(approvers)} of {count(needed, 'approval')}"
    tally += f": {given}" if given else ""
    missing = release.approvals_missing()
    return f"{tally}; {missing} more needed" if missing else tally


def approval_counted(release: Release, by: str) -> str:
    """`by`'s approval is recorded (`release` holds it) and the stage still needs more."""
    return f"{mention(by)} approved {stage_label(release)}: {approvals_tally(release)}"


def approved_ahead_of_time(release: Release, by: str) -> str:
    stage = stage_label(release)
    return f"{mention(by)} approved {stage} ahead of time; it moves on when its timer ends"


def approved(release: Release, by: str) -> str:
    return f"{mention(by)} approved {stage_label(release)}"


def promoted_past_stage(release: Release, by: str) -> str:
    return f"{mention(by)} promoted {release.app} past {stage_label(release)}"


def promotion_reason(release: Release, by: str | None) -> str:
    """Why the release, still in its last stage passed, is promoted (kept as its outcome)."""
    stage_count = len(release.plan.stages)
    skipped = stage_count - 1 - release.stage_index
    if by is None and release.kind is ReleaseKind.BLUE_GREEN:
        return "the watch window passed"
    if by is None:
        return f"all {stage_count} stages passed"
    if skipped:
        return f"promoted by {mention(by)}, skipping {skipped} of {stage_count} stages"
    return f"promoted by {mention(by)} from the last stage"


def promoting(release: Release, reason: str) -> str:
    return (
        f"promoting {release.version} ({reason}): "
        "stable is being rolled to it, the canary takes 100 % meanwhile"
    )


def paused_by(
    release: Release, by: str, reason: str, resume_due_at: datetime | None, now: datetime
) -> str:
    """`release` as it was before the pause."""
    text = f"{mention(by)} paused {release.app} at {stage_label(release)}{_reason_suffix(reason)}"
    if resume_due_at is None:
        return text
    return f"{text}; it resumes by itself at {_clock(resume_due_at, now)}"


METRICS_PAUSE_PREFIX = "metrics inconclusive: "
"""Starts the pause reason of a release that paused itself; the machine recognises it by it."""


def metrics_pause_reason(reason: str) -> str:
    return f"{METRICS_PAUSE_PREFIX}{reason}"


def paused_by_metrics(release: Release, reason: str) -> str:
    return (
        f"{release.app} {release.version} paused itself at {stage_label(release)}: "
        f"metrics are inconclusive ({reason}); it never moves on without a passing check. "
        "It resumes by itself when a check passes again, or resume or roll it back"
    )


# Why a pause ends: the opening of the resumed notice.


def resumed_by(release: Release, by: str) -> str:
    return f"{mention(by)} resumed {release.app}"


def timed_pause_over(release: Release) -> str:
    return f"{release.app}'s timed pause is over"


def metrics_conclusive_again(release: Release, summary: str) -> str:
    return f"metrics of {release.app} are conclusive again ({summary})"


def resumed_awaiting_approval(release: Release, opening: str) -> str:
    return f"{opening}; {stage_label(release)} still waits for approval"


def resumed_with_time_left(release: Release, opening: str, remaining_s: float) -> str:
    return f"{opening}; {stage_label(release)} goes on with {format_duration(remaining_s)} left"


def rollback_reason(reason: str) -> str:
    """The reason a person gave for a rollback, or that they gave none (kept as its outcome)."""
    return reason or "no reason given"


def rolling_back_by(release: Release, by: str, reason: str) -> str:
    """`release` as it was before the rollback; `reason` from rollback_reason."""
    return (
        f"{mention(by)} is rolling back {release.app} {release.version} {_where(release)}: {reason}"
    )


def rolling_back_again(by: str) -> str:
    return f"{mention(by)} asked to roll back again; sending all traffic to stable once more"


def check_reading(metric: str, value: float, threshold: float, unit: str) -> str:
    """A failed metric check: which metric, its value and the threshold it crossed."""
    return f"{metric} is {amount(value, unit)} against a threshold of {amount(threshold, unit)}"


def check_failed_tolerated(release: Release, reading: str, failed: int, limit: int) -> str:
    return (
        f"a metric check of {release.app} {release.version} failed at {stage_label(release)}:"
        f" {reading}; {failed} of {limit} failed checks tolerated in this stage,"
        " one more rolls it back"
    )


def checks_failed_reason(reading: str) -> str:
    """The outcome reason of an automatic rollback."""
    return f"checks failed: {reading}"


def rolling_back_automatically(release: Release, reading: str) -> str:
    """`release` as it was before the rollback."""
    what = f"{release.app} {release.version}"
    if release.kind is ReleaseKind.BLUE_GREEN and release.stage_index == 1:
        return (
            f"{what} is switching back to blue {release.previous_version} automatically "
            f"{_where(release)}: {reading}"
        )
    return f"{what} is rolling back automatically {_where(release)}: {reading}"


def aborted_by_argo(release: Release, abort: RolloutAbort) -> str:
    """`release` as it was when Argo Rollouts aborted it: the alert, with the failed analysis."""
    cause = abort.message or "aborted outside release-bot"
    measured = abort.measurement
    if measured is not None:
        cause = (
            f"analysis {measured.run} failed: {measured.metric} measured {measured.value} "
            f"({measured.condition}); Argo says: {cause}"
        )
    return (
        f"Argo Rollouts aborted {release.app} {release.version} {_where(release)}: {cause}. "
        f"Its traffic goes back to stable {release.previous_version or ''}".rstrip()
    )


def rollout_moved_on(release: Release, index: int) -> str:
    """`release` as it was when its Rollout was found in stage `index`, ahead of it."""
    return (
        f"{release.app}'s Rollout moved on from {stage_label(release)} to "
        f"{stage_label(release, index)} outside release-bot (promoted with kubectl or Argo's "
        "dashboard): the release follows it; release-bot's gates between were not asked"
    )


def rollout_not_ahead(release: Release, index: int) -> str:
    return (
        f"{release.app}'s Rollout is not ahead of its release: it is at stage {index + 1}, "
        f"the release at {stage_label(release)}"
    )


def aborted_by_argo_reason(abort: RolloutAbort) -> str:
    """The outcome reason of a release Argo aborted."""
    measured = abort.measurement
    if measured is not None:
        return f"aborted by Argo Rollouts: {measured.metric} measured {measured.value}"
    return f"aborted by Argo Rollouts: {abort.message or 'from outside release-bot'}"


def verification_started(release: Release, run: VerificationRun) -> str:
    """`release` at the gate it has just reached."""
    verification = run.verification
    if release.previews(release.stage_index):
        held = (
            f"it tests green {release.version} through its preview Service, blue "
            f"{release.previous_version} serves production"
        )
    else:
        held = _held_text(run.held)
    return (
        f"{stage_label(release)} waits for verification Job `{run.job_name}` "
        f"({verification.label}, up to {format_duration(verification.timeout_s)}): "
        f"{held} until it passes"
    )


def verification_passed(release: Release, job: str) -> str:
    return f"verification Job `{job}` passed; {stage_label(release)} starts"


def verification_failed_reason(job: str, reason: str) -> str:
    """The outcome reason of a rollback after a failed verification Job."""
    return f"verification Job {job} failed: {reason}"


def verification_timed_out(timeout_s: int) -> str:
    return f"it did not finish within its timeout of {format_duration(timeout_s)}"


def rolling_back_after_verification(release: Release, job: str, reason: str) -> str:
    """`release` as it was before the rollback: the alert, naming the Job and why."""
    what = f"{release.app} {release.version}"
    failed = f"verification Job `{job}` failed: {reason}"
    if release.previews(release.stage_index):
        return (
            f"{what} is rolling back automatically before production reached green: {failed}; "
            f"green is removed, blue {release.previous_version} goes on serving production"
        )
    return f"{what} is rolling back automatically {_where(release)}: {failed}"


def verification_log(job: str, log_tail: tuple[str, ...]) -> str:
    """The last lines of a failed verification Job's log, for the thread (a code block)."""
    if not log_tail:
        return f"verification Job `{job}` left no log lines to show"
    lines = "\n".join(line.replace("`", "'") for line in log_tail)
    heading = f"last {count(len(log_tail), 'log line')} of verification Job `{job}`"
    return f"{heading}:\n```\n{lines}\n```"


def released(release: Release) -> str:
    if release.kind.drives_argo:
        return (
            f"{release.app} {release.version} is released: the Rollout is Healthy and its "
            "stable ReplicaSet runs it"
        )
    if release.kind is ReleaseKind.BLUE_GREEN:
        return (
            f"{release.app} {release.version} is released: green serves production and blue "
            f"{release.previous_version} is deleted"
        )
    return f"{release.app} {release.version} is released: stable runs it and the canary is removed"


def rolled_back(release: Release) -> str:
    stable = release.previous_version or "the previous version"
    if release.kind.drives_argo:
        return (
            f"{release.app} is back on {stable} for all traffic: the Rollout is aborted, its "
            f"{release.version} ReplicaSet scaled down (`/release retry {release.app}` tries "
            f"{release.version} again)"
        )
    if release.kind is ReleaseKind.BLUE_GREEN:
        return (
            f"{release.app} is back on blue {stable} for all traffic; green {release.version} "
            "and its preview Service are removed"
        )
    return f"{release.app} is back on {stable} for all traffic; canary {release.version} is removed"


def failed(release: Release, reason: str) -> str:
    """`release` as it was before it failed."""
    return (
        f"{release.app} {release.version} failed {_where(release)}: {reason}. "
        "All traffic is being sent to stable; someone needs to look at the cluster"
    )


# Refusals a step gives when one of its guards fails.


def not_this_verification(release: Release, job: str) -> str:
    running = release.verification.job_name if release.verification else "none"
    return f"{release.app}: Job {job} is not the verification running now ({running})"


def stage_timer_not_due(release: Release, now: datetime) -> str:
    assert release.stage_due_at is not None  # Release guarantees it while RUNNING
    return f"{release.app}'s stage timer is not due until {_clock(release.stage_due_at, now)}"


def no_passing_check_yet(release: Release) -> str:
    return (
        f"{stage_label(release)} of {release.app} has no passing metric check yet; "
        "it moves on once one passes"
    )


def needs_no_approval(release: Release) -> str:
    return f"{stage_label(release)} of {release.app} needs no approval"


def already_approved(release: Release, approval: Approval, now: datetime) -> str:
    approver = f"{mention(approval.by)} at {_clock(approval.at, now)}"
    return f"{stage_label(release)} of {release.app} is already approved by {approver}"


def already_approved_by_you(release: Release, missing: int) -> str:
    """The same person approving a stage twice: their approval counts once."""
    return (
        f"{stage_label(release)} of {release.app} is already approved by you; "
        f"{missing} more needed from someone else"
    )


def promote_short_of_approvals(release: Release, index: int, missing: int) -> str:
    """Promote counts as one approval; stage `index` would still miss `missing` of them."""
    needed = release.plan.stages[index].approvals_required
    return (
        f"{stage_label(release, index)} of {release.app} needs {needed} approvals from "
        f"different people; a promote counts as one, so {missing} more needed first: "
        f"/release approve {release.app}"
    )


def four_eyes_rule(release: Release, user: str, index: int) -> str:
    """`user` requested the release, so may not approve stage `index`."""
    return (
        f"four-eyes rule: {mention(user)} requested this release of {release.app}, "
        f"so someone else must approve {stage_label(release, index)}"
    )


def meant_for_other_stage(release: Release, stage_index: int) -> str:
    total = len(release.plan.stages)
    return (
        f"that was meant for stage {stage_index + 1}/{total}, but {release.app} is now in "
        f"{stage_label(release)}; nothing was changed"
    )


def pause_duration_not_positive(duration_s: int) -> str:
    return f"a pause duration must be positive, got {duration_s} s"


def already_paused(release: Release) -> str:
    return f"{release.app} is already {_pause_text(release)}"


def pause_has_no_end(release: Release) -> str:
    command = f"/release resume {release.app}"
    return f"{release.app}'s pause has no end time; resume it with {command}"


def pause_not_due(release: Release, due: datetime, now: datetime) -> str:
    return f"{release.app}'s pause does not end until {_clock(due, now)}"


# Refusals for the (phase, event type) pairs the machine's table does not list. The event is
# named by its class's name (bot.core.machine's event types), so this module needs no import
# of the machine.

_ACTIONS = {
    "Advance": "advance",
    "Approve": "approve",
    "Pause": "pause",
    "Resume": "resume",
    "Rollback": "roll back",
    "Promote": "promote",
}


def refusal(release: Release, event_name: str, now: datetime) -> str:
    """Why `release` in its phase does not take the event named `event_name` (e.g. 'Approve')."""
    app = release.app
    if release.phase.is_terminal:
        return f"{app}'s release {release.version} already finished: {_outcome_text(release, now)}"
    if release.phase is Phase.PAUSED and event_name in {"Pause", "ChecksInconclusive"}:
        return already_paused(release)
    if release.phase is Phase.PAUSED and event_name in {"Advance", "Approve", "Promote"}:
        return f"{app} is {_pause_text(release)}; resume it first"
    if release.phase is Phase.AWAITING_APPROVAL and event_name == "Advance":
        return (
            f"{stage_label(release)} of {app} waits for approval, "
            f"and advance never skips an approval gate: /release approve {app}"
        )
    return _generic_refusal(release, event_name)


def _generic_refusal(release: Release, event_name: str) -> str:
    if event_name == "Resume":
        return f"{release.app} is not paused: {_phase_text(release)}"
    action = _ACTIONS.get(event_name)
    if action is not None:
        return f"can't {action} {release.app}: {_phase_text(release)}"
    return f"{release.app}: {event_name} does not apply while {_phase_text(release)}"


_STILL_PHASE_TEXTS = {
    Phase.STARTING: "its canary is still starting",
    Phase.VERIFYING: "its verification Job is running",
    Phase.PROMOTING: "it is being promoted",
    Phase.ROLLING_BACK: "it is rolling back",
    Phase.SWITCHING: "production is switching to green",
    Phase.KEEPING_BLUE: "green serves production, blue is kept as the rollback path",
}


def _phase_text(release: Release) -> str:
    """Where an unfinished release stands, for refusals."""
    if release.phase is Phase.RUNNING:
        return f"it is in {stage_label(release)}"
    if release.phase is Phase.AWAITING_APPROVAL:
        return f"{stage_label(release)} waits for approval"
    if release.phase is Phase.PAUSED:
        return f"it is {_pause_text(release)}"
    if release.phase is Phase.PROMOTING and release.kind is ReleaseKind.BLUE_GREEN:
        return "blue is being retired: release a new version instead"
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


# Pieces shared by the messages.


def _where(release: Release) -> str:
    match release.phase:
        case Phase.STARTING:
            return "before the canary took any traffic"
        case Phase.VERIFYING:
            return f"at the gate of {stage_label(release)}"
        case Phase.PROMOTING:
            return "during promotion"
        case Phase.SWITCHING:
            return "during the switch"
        case Phase.KEEPING_BLUE:
            return "while blue is kept"
        case Phase.ROLLING_BACK:
            return "while rolling back"
        case _:
            return f"at {stage_label(release)}"


def _held_text(held: DesiredTraffic) -> str:
    if held.canary_weight == 0:
        return "the canary takes no public traffic" + (
            " (it stays reachable by header)" if held.header_routing else ""
        )
    return f"the canary keeps {percent(held.canary_weight)} of traffic"


def _reason_suffix(reason: str) -> str:
    return f": {reason}" if reason else ""


def stage_label(release: Release, index: int | None = None) -> str:
    index = release.stage_index if index is None else index
    stage = release.plan.stages[index]
    if _is_preview(release, index):
        return "the preview"
    if release.kind is ReleaseKind.BLUE_GREEN:
        return "the watch window"
    return f"stage {index + 1}/{len(release.plan.stages)} ({percent(stage.weight)})"


def _clock(when: datetime, now: datetime) -> str:
    """HH:MM UTC, with the date when it is not today."""
    when_utc = when.astimezone(UTC)
    same_day = when_utc.date() == now.astimezone(UTC).date()
    return when_utc.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")
