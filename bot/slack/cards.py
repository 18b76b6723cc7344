"""The Slack messages of a release, as Block Kit: its card, thread notices and channel alerts.

Called by the Slack announcer, which posts them (the card once, then updated in place), by the
button handlers (parse_button_value) and by `release-bot demo`, which prints them with
render_text. Pure: builds blocks, sends nothing. Every text is cut to fit Slack's limits, and
slack_sdk validates each message when it is built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
    TextObject,
)

from bot.core.durations import format_duration
from bot.core.freezes import held_by_freeze
from bot.core.machine import Advance, Approve, Event, Notify, Pause, Resume, Rollback, offers
from bot.core.release import NoticeKind, Phase, Release, ReleaseKind, RolloutView, desired_traffic
from bot.core.text import percent, principal_mention

ACTION_APPROVE = "release.approve"
ACTION_ADVANCE = "release.advance"
ACTION_PAUSE = "release.pause"
ACTION_RESUME = "release.resume"
ACTION_ROLLBACK = "release.rollback"

ELLIPSIS = "…"
TEXT_MAX = 3000  # any text object (Block Kit reference), so a context element's too
FIELD_MAX = 2000  # one section field
FALLBACK_TEXT_MAX = 4000  # a message's `text`: Slack advises 4,000 and cuts at 40,000
MESSAGE_BLOCKS_MAX = 50


class InvalidButtonValue(ValueError):
    """A button value this module did not make: garbage, tampering or an outdated format."""


@dataclass(frozen=True, slots=True)
class ButtonRef:
    """What a button was shown for: the release, and the stage it was in at the time.

    The state machine refuses a click whose stage is no longer the release's, so a stale card
    or a double click never acts on the wrong stage.
    """

    release_id: str
    stage_index: int

    @property
    def value(self) -> str:
        return f"{self.release_id}:{self.stage_index}"


_BUTTON_VALUE = re.compile(r"(?P<release_id>\S+):(?P<stage_index>[0-9]{1,6})")


def parse_button_value(value: object) -> ButtonRef:
    """The ButtonRef in a button's `value` (from an action payload); raises InvalidButtonValue."""
    match = _BUTTON_VALUE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        shown = _fit(repr(value), 80)
        raise InvalidButtonValue(
            f"not a release button value: {shown} (expected '<release id>:<stage index>')"
        )
    return ButtonRef(release_id=match["release_id"], stage_index=int(match["stage_index"]))


@dataclass(frozen=True, slots=True)
class CardMessage:
    """A message to post: `text` is the notification and fallback text, `blocks` what Slack shows.

    Building one validates it: slack_sdk raises SlackObjectFormationError on a broken limit.
    That validation (Block.to_dict) is most of a status answer's cost, so it runs once: its
    JSON is kept for payload().
    """

    text: str
    blocks: tuple[Block, ...]
    _blocks_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.text or len(self.text) > FALLBACK_TEXT_MAX:
            raise ValueError(f"message text must be 1..{FALLBACK_TEXT_MAX} characters")
        if not 0 < len(self.blocks) <= MESSAGE_BLOCKS_MAX:
            raise ValueError(f"a message holds 1..{MESSAGE_BLOCKS_MAX} blocks")
        validated = [block.to_dict() for block in self.blocks]  # raises on a broken limit
        object.__setattr__(self, "_blocks_json", json.dumps(validated))

    def payload(self) -> dict[str, Any]:
        """The arguments of chat.postMessage / chat.update besides the channel (and ts); a new
        dict each call, so a caller may change it."""
        return {"text": self.text, "blocks": json.loads(self._blocks_json)}


# The card.


def release_card(release: Release, *, now: datetime) -> CardMessage:
    """The release's one message in its channel, rebuilt and edited in place after each change.

    `release.latest_metrics`, the newest metrics summary (bot.core.analysis.summary_line), is shown
    when there is one. `now` only shows as the stage's time left and the "updated" time, so a card
    is built and validated once per (release, those two texts): CARD_CACHE_SIZE are kept, and a
    status answered many times a second reuses its card.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return _release_card(release, _stage_time_text(release, now), _slack_time(now))


CARD_CACHE_SIZE = 256
"""Cards kept built: a few per active release (one per second of its "updated" time)."""


@lru_cache(maxsize=CARD_CACHE_SIZE)
def _release_card(release: Release, stage_time: str | None, updated: str) -> CardMessage:
    blocks: list[Block] = [
        _header(f"{release.app} {release.version} · {release.kind} release"),
        _context(_origin_text(release)),
        _section(_status_text(release), fields=_stage_fields(release, stage_time)),
        _section(f"*Stages:* {_progress_line(release)}"),
    ]
    if release.overrides:
        blocks.append(_section(_overrides_text(release)))
    if release.approvals:
        blocks.append(_section(_approvals_text(release)))
    if release.rollout is not None:
        blocks.append(_context(_rollout_text(release.rollout)))
    if release.latest_metrics:
        blocks.append(_context(f"📊 {release.latest_metrics}"))
    if buttons := _buttons(release):
        blocks.append(ActionsBlock(elements=buttons))
    blocks.append(_context(f"release `{release.id}` · updated {updated}"))
    summary = f"{release.app} {release.version}: {_PHASE_EMOJI[release.phase]} {_headline(release)}"
    return CardMessage(text=_fit(summary, FALLBACK_TEXT_MAX), blocks=tuple(blocks))


_PHASE_EMOJI = {
    Phase.STARTING: "⏳",
    Phase.VERIFYING: "🧪",
    Phase.RUNNING: "▶️",
    Phase.AWAITING_APPROVAL: "✋",
    Phase.PAUSED: "⏸️",
    Phase.PROMOTING: "🚀",
    Phase.SWITCHING: "🔀",
    Phase.KEEPING_BLUE: "🟢",
    Phase.ROLLING_BACK: "↩️",
    Phase.SUCCEEDED: "✅",
    Phase.ROLLED_BACK: "⏪",
    Phase.FAILED: "❌",
}


def _rollout_text(view: RolloutView) -> str:
    """What Argo Rollouts last reported of the release's Rollout."""
    parts = [f"🐙 Argo Rollouts: *{view.phase}*" + (f" ({view.message})" if view.message else "")]
    if view.step is not None:
        parts.append(f"step {min(view.step + 1, view.steps)}/{view.steps}")
    if view.new_revision:
        pods = f"{view.updated_pods}/{view.pods} pods"
        parts.append(f"new ReplicaSet `{view.new_revision}` {pods}")
    if view.stable_revision and view.stable_revision != view.new_revision:
        parts.append(f"stable `{view.stable_revision}`")
    return " · ".join(parts)


def _origin_text(release: Release) -> str:
    parts = [
        f"Started by <@{release.requested_by}> {_slack_time(release.started_at)}",
        f"plan *{release.plan.name}*",
    ]
    if release.previous_version:
        parts.append(f"replacing {release.previous_version}")
    if release.four_eyes:
        parts.append("four-eyes approvals")
    return " · ".join(parts)


_STAGE_HEADLINES = {
    Phase.RUNNING: "Running {stage}",
    Phase.AWAITING_APPROVAL: "Waiting for approval of {stage}",
    Phase.PAUSED: "Paused at {stage}",
    Phase.VERIFYING: "Verifying before {stage}",
}
_HEADLINES = {
    Phase.STARTING: "Starting",
    Phase.PROMOTING: "Promoting",
    Phase.SWITCHING: "Switching production to green",
    Phase.KEEPING_BLUE: "Green serves production, blue kept",
    Phase.ROLLING_BACK: "Rolling back",
    Phase.SUCCEEDED: "Succeeded",
    Phase.ROLLED_BACK: "Rolled back",
    Phase.FAILED: "Failed",
}


def _headline(release: Release) -> str:
    if release.phase is Phase.PROMOTING and release.kind is ReleaseKind.BLUE_GREEN:
        return "Retiring blue"
    if (template := _STAGE_HEADLINES.get(release.phase)) is not None:
        return template.format(stage=_stage_name(release, release.stage_index))
    return _HEADLINES[release.phase]


def _status_text(release: Release) -> str:
    headline = f"{_PHASE_EMOJI[release.phase]} *{_headline(release)}*"
    return f"{headline}\n{_status_detail(release)}"


def _status_detail(release: Release) -> str:
    outcome = release.outcome_reason or "no reason given"
    if release.kind is ReleaseKind.BLUE_GREEN and (detail := _blue_green_detail(release)):
        return detail
    match release.phase:
        case Phase.STARTING:
            return "The canary's pods are coming up; it takes no traffic yet."
        case Phase.VERIFYING:
            assert release.verification is not None  # Release guarantees it while VERIFYING
            job = release.verification.job_name
            return f"Verification Job `{job}` runs; traffic stays as it was until it passes."
        case Phase.RUNNING:
            return _running_detail(release)
        case Phase.AWAITING_APPROVAL:
            if release.stage.approvals_required > 1:
                return f"Its time is up; {_tally(release)} to move on."
            return f"Its time is up; it {_needs_approval(release)} to move on."
        case Phase.PAUSED:
            return _pause_detail(release)
        case Phase.PROMOTING:
            rolling = f"Stable is being rolled to {release.version}"
            return f"{rolling}, the canary takes all traffic meanwhile ({outcome})."
        case Phase.ROLLING_BACK:
            return (
                f"By {_actor(release.outcome_by)}: {outcome}. All traffic is going back to stable."
            )
        case Phase.SUCCEEDED:
            return f"{_finished_at(release)} · {outcome}. Stable runs {release.version}."
        case Phase.ROLLED_BACK:
            return f"{_finished_at(release)} · by {_actor(release.outcome_by)}: {outcome}."
        case Phase.FAILED:
            return (
                f"{_finished_at(release)} · {outcome}. "
                "All traffic is sent to stable; someone needs to look at the cluster."
            )
    raise AssertionError("only blue-green releases switch or keep blue: worded above")


def _blue_green_detail(release: Release) -> str | None:
    """What a blue-green release's phases say differently; None: as a canary's."""
    match release.phase:
        case Phase.STARTING:
            return "Green's pods are coming up beside blue, which serves production."
        case Phase.VERIFYING:
            assert release.verification is not None  # Release guarantees it while VERIFYING
            return (
                f"Verification Job `{release.verification.job_name}` tests green through its "
                "preview Service; blue serves production until it passes."
            )
        case Phase.SWITCHING:
            return "The production Service's selector is moving to green in one update."
        case Phase.KEEPING_BLUE:
            assert release.blue_due_at is not None  # Release guarantees it while keeping blue
            return (
                f"Blue is kept as the rollback path until {_slack_time(release.blue_due_at)} "
                f"({release.outcome_reason}); Rollback switches back at once."
            )
        case Phase.PROMOTING:
            return "Blue is scaled down, then deleted; green serves production."
    return None


def _running_detail(release: Release) -> str:
    index = release.stage_index
    upcoming = _stage_name(release, index + 1) if not release.is_last_stage else "promotion"
    if release.is_last_stage and release.kind is ReleaseKind.BLUE_GREEN:
        upcoming = "keeping blue as the rollback path"
    if not release.stage.needs_approval:
        return f"Moves on to {upcoming} when its time is up."
    if release.stage.approvals_required > 1:
        return f"{_tally(release)}; then it moves on to {upcoming} when its time is up."
    approval = release.approval_of(index)
    if approval is None:
        return f"It {_needs_approval(release)} before it moves on to {upcoming}."
    approved = f"Approved by <@{approval.by}> {_slack_time(approval.at)}"
    return f"{approved}; moves on to {upcoming} when its time is up."


def _pause_detail(release: Release) -> str:
    pause = release.pause
    assert pause is not None  # Release guarantees it while PAUSED
    why = f"By {_actor(pause.by)}: {pause.reason}." if pause.reason else f"By {_actor(pause.by)}."
    if pause.resume_due_at is not None:
        return f"{why} Resumes by itself {_slack_time(pause.resume_due_at)}."
    if held_by_freeze(pause.reason, pause.by):
        return f"{why} It goes on by itself when the freeze ends."
    return f"{why} It stays paused until someone resumes or rolls it back."


def _needs_approval(release: Release) -> str:
    if release.four_eyes:
        return f"needs approval from someone other than <@{release.requested_by}>"
    return "needs approval"


def _overrides_text(release: Release) -> str:
    used = "; ".join(
        f"{override.action} by <@{override.by}> {_slack_time(override.at)}: {override.reason}"
        for override in release.overrides
    )
    return f"🔓 *Break-glass override:* {used}"


def _tally(release: Release) -> str:
    """E.g. '1 of 2 approvals: <@U1>; 1 more needed (not <@U0ANA>)' for the current stage."""
    approvers = release.approvers_of(release.stage_index)
    needed = release.stage.approvals_required
    given = ", ".join(f"<@{user}>" for user in approvers)
    tally = f"{len(approvers)} of {needed} approvals" + (f": {given}" if given else "")
    if missing := release.approvals_missing():
        tally += f"; {missing} more needed"
        if release.four_eyes:
            tally += f" (not <@{release.requested_by}>)"
    return tally


def _actor(user: str | None) -> str:
    return f"<@{user}>" if user else "the bot"


def _finished_at(release: Release) -> str:
    assert release.finished_at is not None  # Release guarantees it once finished
    return _slack_time(release.finished_at)


def _stage_fields(release: Release, stage_time: str | None) -> list[str]:
    if release.kind is ReleaseKind.BLUE_GREEN:
        fields = _blue_green_fields(release)
    else:
        fields = [f"*Traffic*\n{_traffic_text(release)}"]
    if stage_time:
        fields.append(f"*Stage time*\n{stage_time}")
    return fields


def _blue_green_fields(release: Release) -> list[str]:
    """Blue and green side by side: version, ready pods, which one serves production."""
    green_serves = desired_traffic(release).canary_weight == 100 or release.phase is Phase.SUCCEEDED
    pods = release.pods
    blue_pods = green_pods = "pods not seen yet"
    if pods is not None:
        blue_pods = f"{pods.blue_ready}/{pods.blue_desired} pods ready"
        green_pods = f"{pods.green_ready}/{pods.green_desired} pods ready"
    blue_role = "retired" if release.phase is Phase.SUCCEEDED else "kept, idle"
    blue = f"*🔵 Blue* {release.previous_version or ''}\n{blue_pods}"
    green = f"*🟢 Green* {release.version}\n{green_pods}"
    if green_serves:
        return [f"{blue} · {blue_role}", f"{green} · serves production"]
    green_role = "removed" if release.phase.is_terminal else "on its preview Service"
    return [f"{blue} · serves production", f"{green} · {green_role}"]


def _traffic_text(release: Release) -> str:
    if release.phase is Phase.SUCCEEDED:
        return f"{_stable(release.version)} {percent(100)}"
    if release.phase.is_terminal:
        return f"{_stable(release.previous_version)} {percent(100)}"
    traffic = desired_traffic(release)
    canary = f"canary {release.version} {percent(traffic.canary_weight)}"
    stable = percent(100 - traffic.canary_weight)
    text = f"{_stable(release.previous_version)} {stable} · {canary}"
    if traffic.header_routing:
        text += "\nthe canary is also reachable by header"
    return text


def _stable(version: str | None) -> str:
    return f"stable {version}" if version else "stable"


def _stage_time_text(release: Release, now: datetime) -> str | None:
    if release.phase is Phase.RUNNING:
        assert release.stage_due_at is not None  # Release guarantees it while RUNNING
        left = (release.stage_due_at - now).total_seconds()
        ends = _slack_time(release.stage_due_at)
        return (
            f"⏱ {format_duration(left)} left, ends {ends}" if left > 0 else f"⏱ time is up ({ends})"
        )
    if release.phase is Phase.AWAITING_APPROVAL:
        return "⏱ time is up"
    if release.pause is not None and release.pause.paused_from is Phase.RUNNING:
        return f"⏱ stopped with {format_duration(release.pause.remaining_s)} left"
    if release.pause is not None:
        return "⏱ time was up"
    return None


_CURRENT_STAGE_MARKS = {
    Phase.VERIFYING: "🧪 verifying",
    Phase.RUNNING: "▶",
    Phase.AWAITING_APPROVAL: "⏸ approval",
    Phase.PAUSED: "⏸ paused",
    Phase.SWITCHING: "🔀 switching",
    Phase.ROLLING_BACK: "✗",
    Phase.ROLLED_BACK: "✗",
    Phase.FAILED: "✗",
}
_PROMOTED = {Phase.PROMOTING, Phase.SUCCEEDED, Phase.KEEPING_BLUE}


def _progress_line(release: Release) -> str:
    """E.g. `0 % ✓ → 5 % ✓ → [50 %] ⏸ approval → 100 %`: passed, current (bracketed), to come;
    a stage to come needing 2 approvals reads `50 % ✋ 2`."""
    return " → ".join(_stage_step(release, index) for index in range(len(release.plan.stages)))


def _stage_step(release: Release, index: int) -> str:
    stage = release.plan.stages[index]
    weight = percent(stage.weight)
    # False while the canary is still starting; a stage verified at its gate is current already
    entered = release.stage_started_at is not None or release.verification is not None
    if index < release.stage_index or (index == release.stage_index and release.phase in _PROMOTED):
        return f"{weight} ✓"
    if index == release.stage_index and entered:
        return f"[{weight}] {_CURRENT_STAGE_MARKS[release.phase]}"
    if release.phase in _PROMOTED:
        return f"{weight} skipped"
    if stage.approvals_required > 1:
        return f"{weight} ✋ {stage.approvals_required}"
    return f"{weight} ✋" if stage.needs_approval else weight


def _approvals_text(release: Release) -> str:
    lines = [
        f"✅ {_stage_name(release, approval.stage_index)} approved by <@{approval.by}> "
        f"{_slack_time(approval.at)}"
        for approval in release.approvals
    ]
    return "*Approvals*\n" + _latest_lines(lines, TEXT_MAX - len("*Approvals*\n"))


def _latest_lines(lines: list[str], limit: int) -> str:
    """The last lines that fit in `limit` characters, after a count of those left out."""
    kept: list[str] = []
    used = len(f"{ELLIPSIS} {len(lines)} earlier\n")  # room for the count, in case it is needed
    for line in reversed(lines):
        used += len(line) + 1
        if used > limit:
            break
        kept.insert(0, line)
    left_out = len(lines) - len(kept)
    return "\n".join([f"{ELLIPSIS} {left_out} earlier", *kept] if left_out else kept)


def _stage_name(release: Release, index: int) -> str:
    stages = release.plan.stages
    if release.previews(index):
        return "the preview"
    if release.kind is ReleaseKind.BLUE_GREEN:
        return "the watch window"
    return f"stage {index + 1}/{len(stages)} ({percent(stages[index].weight)})"


# Buttons.


@dataclass(frozen=True, slots=True)
class _ButtonSpec:
    label: str
    action_id: str
    event: type[Event]
    style: str | None = None


_BUTTONS = (
    _ButtonSpec("Approve", ACTION_APPROVE, Approve, style="primary"),
    _ButtonSpec("Advance", ACTION_ADVANCE, Advance),
    _ButtonSpec("Pause", ACTION_PAUSE, Pause),
    _ButtonSpec("Resume", ACTION_RESUME, Resume),
)


def _buttons(release: Release) -> list[ButtonElement]:
    """The actions the state machine offers in the release's phase (bot.core.machine.offers),
    Rollback last; none once finished."""
    buttons = [
        _button(release, spec.label, spec.action_id, style=spec.style)
        for spec in _BUTTONS
        if offers(release, spec.event)
    ]
    if offers(release, Rollback):
        buttons.append(_rollback_button(release))
    return buttons


def _button(
    release: Release,
    label: str,
    action_id: str,
    *,
    style: str | None = None,
    confirm: ConfirmObject | None = None,
) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=label, emoji=True),
        action_id=action_id,
        value=ButtonRef(release_id=release.id, stage_index=release.stage_index).value,
        style=style,
        confirm=confirm,
    )


def _rollback_button(release: Release) -> ButtonElement:
    back = f"All traffic goes back to {_stable(release.previous_version)}"
    effect = (
        f"{back} and canary {release.version} is removed. "
        "The release ends; a new one must be started to try again."
    )
    confirm = ConfirmObject(
        title=PlainTextObject(
            text=_fit(f"Roll back {release.app}?", ConfirmObject.title_max_length)
        ),
        text=PlainTextObject(text=_fit(effect, ConfirmObject.text_max_length)),
        confirm=PlainTextObject(text="Roll back"),
        deny=PlainTextObject(text="Cancel"),
        style="danger",
    )
    return _button(release, "Rollback", ACTION_ROLLBACK, style="danger", confirm=confirm)


# A release on a board (App Home): the card's wording, shorter.


def board_row(release: Release, *, now: datetime) -> list[Block]:
    """An active release as a row of a board: what, where it stands, the traffic, the latest
    verdict and who must approve, then the card's buttons (the same action ids and values, so a
    click on the board is a click on the card)."""
    lines = [
        f"*{release.app} {release.version}* · {release.kind} · "
        f"{_PHASE_EMOJI[release.phase]} {_headline(release)}",
        f"Traffic: {_traffic_text(release).replace(chr(10), ' · ')}",
    ]
    if release.latest_metrics:
        lines.append(f"📊 {release.latest_metrics}")
    if approval := _approval_needed(release):
        lines.append(f"✋ {approval}")
    lines.append(f"<#{release.channel}> · started by <@{release.requested_by}>")
    row: list[Block] = [_section("\n".join(lines))]
    if buttons := _buttons(release):
        row.append(ActionsBlock(elements=buttons))
    return row


def _approval_needed(release: Release) -> str | None:
    """Who must approve the current stage, while it still needs someone; None when it does not."""
    if not release.stage.needs_approval or release.approvals_missing() == 0:
        return None
    if release.phase.is_terminal or release.phase is Phase.PROMOTING:
        return None
    who = " or ".join(principal_mention(p) for p in release.approvers) or "anyone in the channel"
    tally = _tally(release) if release.stage.approvals_required > 1 else "approval needed"
    not_requester = f", not <@{release.requested_by}>" if release.four_eyes else ""
    return f"{tally}: {who}{not_requester}"


def finished_line(release: Release) -> str:
    """A finished release in one line: '✅ shop-api v2 · succeeded <date> · by <@U1>'."""
    outcome = release.outcome_reason or _headline(release).lower()
    return (
        f"{_PHASE_EMOJI[release.phase]} *{release.app} {release.version}* · "
        f"{_headline(release).lower()} {_finished_at(release)} · {_fit(outcome, 200)}"
    )


# Thread notices and channel alerts.

_NOTICE_EMOJI = {
    NoticeKind.STARTED: "🐤",
    NoticeKind.PREFLIGHT: "🔎",
    NoticeKind.STAGE_STARTED: "➡️",
    NoticeKind.ADVANCED: "⏩",
    NoticeKind.APPROVAL_REQUESTED: "✋",
    NoticeKind.APPROVED: "👍",
    NoticeKind.PAUSED: "⏸️",
    NoticeKind.RESUMED: "▶️",
    NoticeKind.PROMOTING: "🚀",
    NoticeKind.SUCCEEDED: "✅",
    NoticeKind.ROLLBACK: "↩️",
    NoticeKind.AUTO_ROLLBACK: "🚨",
    NoticeKind.ROLLED_BACK: "⏪",
    NoticeKind.FAILED: "❌",
    NoticeKind.SNAPSHOT: "📊",
    NoticeKind.CHECK_FAILED: "⚠️",
    NoticeKind.VERIFICATION: "🧪",
    NoticeKind.VERIFICATION_LOG: "📜",
    NoticeKind.OVERRIDE: "🔓",
    NoticeKind.SWITCHED: "🔀",
    NoticeKind.SWITCH_REFUSED: "⛔",
    NoticeKind.BLUE_KEPT: "🔵",
}
_NOTICES_ASKING_FOR_ACTION = {NoticeKind.APPROVAL_REQUESTED, NoticeKind.PAUSED}
_ALERT_TITLES = {
    NoticeKind.AUTO_ROLLBACK: "automatic rollback",
    NoticeKind.SWITCH_REFUSED: "switch refused",
    NoticeKind.PAUSED: "paused itself",
    NoticeKind.FAILED: "release failed",
    NoticeKind.OVERRIDE: "break-glass override",
    NoticeKind.APPROVAL_REQUESTED: "approval needed",
}
_NOT_ALARMS = {NoticeKind.APPROVAL_REQUESTED}
"""In-channel notices that ask people for something rather than raise an alarm: no alert
mention opens them (alert_mention is for rollbacks, failures and self-pauses)."""


def is_alarm(notice: Notify) -> bool:
    """True for an in-channel notice that raises an alarm (the app's alert_mention opens it)."""
    return notice.in_channel and notice.kind not in _NOT_ALARMS


def thread_notice(notice: Notify, release: Release) -> CardMessage:
    """A reply in the release's thread for one event.

    `release` is the release as the transition that made the notice left it: an approval request
    or a pause carries the buttons for what can be done next.
    """
    text = f"{_NOTICE_EMOJI[notice.kind]} {notice.text}"
    blocks = (_section(text), *_next_step_buttons(notice, release))
    return CardMessage(text=_fit(text, FALLBACK_TEXT_MAX), blocks=blocks)


def rollback_alert(release: Release, notice: Notify, *, mention: str | None) -> CardMessage:
    """The channel copy of an `in_channel` notice: an alarm (auto-rollback, failure, self-pause)
    or an approval request.

    `mention` (e.g. `<!here>`, `<!subteam^S0123>`) opens an alarm so it notifies people; an
    approval request (not is_alarm) goes without it, its text names who may approve. The
    announcer adds the pointer to the release's thread.
    """
    if not notice.in_channel:
        raise ValueError(f"a {notice.kind} notice goes to the thread only, not to the channel")
    title = _ALERT_TITLES.get(notice.kind, notice.kind.value.replace("_", " "))
    opening = f"{mention} " if mention and is_alarm(notice) else ""
    headline = f"{opening}{_NOTICE_EMOJI[notice.kind]} *{release.app} {release.version}: {title}*"
    blocks = (
        _section(f"{headline}\n{notice.text}"),
        _context(f"release `{release.id}` · {_headline(release).lower()}"),
        *_next_step_buttons(notice, release),
    )
    text = f"{opening}{_NOTICE_EMOJI[notice.kind]} {notice.text}"
    return CardMessage(text=_fit(text, FALLBACK_TEXT_MAX), blocks=blocks)


def _next_step_buttons(notice: Notify, release: Release) -> list[ActionsBlock]:
    """Under a notice that asks for a decision, the buttons the release accepts now."""
    buttons = _buttons(release) if notice.kind in _NOTICES_ASKING_FOR_ACTION else []
    return [ActionsBlock(elements=buttons)] if buttons else []


# Block builders: every text is cut to its limit here.


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(
        text=PlainTextObject(text=_fit(text, HeaderBlock.text_max_length), emoji=True)
    )


def _section(text: str, *, fields: Sequence[str] = ()) -> SectionBlock:
    return SectionBlock(
        text=MarkdownTextObject(text=_fit(text, SectionBlock.text_max_length)),
        fields=[MarkdownTextObject(text=_fit(field, FIELD_MAX)) for field in fields] or None,
    )


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=_fit(text, TEXT_MAX))])


def _fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending in an ellipsis; never inside a `<...>` token."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    opened = cut.rfind("<")
    if opened > cut.rfind(">"):
        cut = cut[:opened]
    return cut.rstrip() + ELLIPSIS


def _slack_time(when: datetime) -> str:
    """Shown in each reader's time zone by Slack; the UTC fallback is what render_text prints."""
    fallback = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


# Plain-text rendering for a terminal.


def render_text(blocks: Sequence[Block]) -> str:
    """A message's blocks as a person reads them in a terminal, one line per row of the message."""
    lines: list[str] = []
    for block in blocks:
        lines.extend(_render_block(block))
    return "\n".join(lines)


def _render_block(block: Block) -> list[str]:
    if isinstance(block, HeaderBlock) and block.text is not None:
        title = plain_text(block.text.text)
        return [title, "=" * len(title)]
    if isinstance(block, SectionBlock):
        text = [plain_text(block.text.text)] if block.text is not None else []
        return text + [plain_text(_FIELD_TITLE.sub(r"\1: ", field.text)) for field in block.fields]
    if isinstance(block, ContextBlock):
        return [" · ".join(plain_text(e.text) for e in block.elements if isinstance(e, TextObject))]
    if isinstance(block, ActionsBlock):
        labels = [e.text.text for e in block.elements if isinstance(e, ButtonElement) and e.text]
        return [" ".join(f"[ {label} ]" for label in labels)]
    raise ValueError(f"render_text cannot show a {block.type} block")


_TOKEN = re.compile(r"<([^<>]*)>")
_BOLD = re.compile(r"\*([^*\n]+)\*")
_CODE = re.compile(r"`([^`\n]+)`")
_FIELD_TITLE = re.compile(r"^\*([^*\n]+)\*\n")


def plain_text(mrkdwn: str) -> str:
    """Slack mrkdwn as plain text: mentions as @name, dates as their fallback, no bold or code."""
    text = _TOKEN.sub(_plain_token, mrkdwn)
    text = _CODE.sub(r"\1", _BOLD.sub(r"\1", text))
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _plain_token(match: re.Match[str]) -> str:
    target, _, label = match[1].partition("|")
    if target.startswith(("@", "#")):
        return target[0] + (label or target[1:])
    if target.startswith("!date^"):
        return label or target
    if target.startswith("!subteam^"):
        return label or "@" + target.removeprefix("!subteam^")
    if target.startswith("!"):
        return "@" + target.removeprefix("!")  # here, channel, everyone
    return f"{label} ({target})" if label else target
