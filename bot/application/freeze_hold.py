"""How a freeze holds a release at its gate, what the thread then says, and how a break-glass
override is recorded; called by the release service (bot.application.service)."""

from __future__ import annotations

from datetime import datetime

from bot.core import freezes
from bot.core.freezes import Frozen
from bot.core.machine import Accepted, Effect, Notify, Refused
from bot.core.release import NoticeKind, Override, Release, desired_traffic
from bot.core.thread_wording import stage_label


def widens(before: Release, after: Release) -> bool:
    """The step gives the canary more public traffic (a higher stage weight, or promotion)."""
    return desired_traffic(after).canary_weight > desired_traffic(before).canary_weight


def held_by_freeze(release: Release) -> bool:
    pause = release.pause
    return pause is not None and freezes.held_by_freeze(pause.reason, pause.by)


def held(release: Release, decided: Accepted | Refused, frozen: Frozen) -> Accepted | Refused:
    """The machine's pause, made the bot's own (no one paused it) with the freeze's notice."""
    if not isinstance(decided, Accepted) or decided.release.pause is None:
        return decided
    pause = decided.release.pause.model_copy(update={"by": None})
    text = freezes.held_at_gate(release.app, release.version, stage_label(release), frozen)
    return Accepted(
        release=decided.release.evolve(pause=pause),
        effects=_with_notice_text(decided.effects, NoticeKind.PAUSED, text),
    )


def resume_notice(release: Release, decided: Accepted, *, resumed_by_bot: bool) -> Accepted:
    """A release resumed at the end of a freeze says so (not that the bot resumed it)."""
    if not (resumed_by_bot and held_by_freeze(release)):
        return decided
    text = freezes.freeze_over(release.app, stage_label(release))
    return Accepted(
        release=decided.release,
        effects=_with_notice_text(decided.effects, NoticeKind.RESUMED, text),
    )


def _with_notice_text(
    effects: tuple[Effect, ...], kind: NoticeKind, text: str
) -> tuple[Effect, ...]:
    return tuple(
        Notify(kind=kind, text=text, in_channel=effect.in_channel)
        if isinstance(effect, Notify) and effect.kind is kind
        else effect
        for effect in effects
    )


def overridden(
    release: Release,
    effects: tuple[Effect, ...],
    *,
    by: str,
    reason: str,
    at: datetime,
    action: str,
) -> tuple[Release, tuple[Effect, ...]]:
    """The release flagged for its life, and an in-channel notice naming who and why."""
    override = Override(by=by, reason=reason, at=at, action=action)
    text = freezes.overridden(release.app, release.version, by, action, reason)
    notice = Notify(kind=NoticeKind.OVERRIDE, text=text, in_channel=True)
    return release.evolve(overrides=(*release.overrides, override)), (*effects, notice)
