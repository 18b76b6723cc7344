"""Freeze windows: is an app frozen at `now`, until when and why; called by the release service.

Pure: the recurring windows come from the apps file (bot.core.apps.FreezeWindow), the one-off
freezes from the store (set by `/release freeze`); `now` is passed in.

Decisions:
- A recurring window is an iCalendar RRULE (dateutil.rrule.rrulestr) read in its own time zone
  (zoneinfo): each occurrence starts at the rule's wall-clock time there and lasts `duration_s`
  real seconds (so a window over a DST change is as long as written). Fields the rule leaves out
  take the rule's fixed anchor, midnight of 1 January 2020 in its time zone (so
  `FREQ=WEEKLY;BYDAY=FR;BYHOUR=16` starts at 16:00:00 sharp, and an INTERVAL counts from there,
  the same every year). Rules recur daily at most often (FREQ HOURLY and finer are refused by
  the loader): walking them from the anchor would be slow, and a freeze is no hourly affair.
- Windows and one-off freezes that touch or overlap make one freeze: `until` is the end of the
  whole chain, the reason that of the freeze in force at `now`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rruleset, rrulestr

ALL_APPS = "all"
"""The scope of a one-off freeze of every app."""

_CHAIN_LIMIT = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """One recurring window, as the apps file gives it (validated by bot.core.apps)."""

    rrule: str
    duration_s: int
    timezone: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OneOffFreeze:
    """A freeze set from Slack: `scope` is an app name or ALL_APPS; times are ISO 8601."""

    scope: str
    by: str
    reason: str
    at: str
    until: str

    @property
    def ends_at(self) -> datetime:
        return datetime.fromisoformat(self.until)


@dataclass(frozen=True, slots=True)
class Frozen:
    """The app is frozen until `until` (UTC): `reason` says by what."""

    until: datetime
    reason: str

    def describe(self) -> str:
        """`frozen until 2026-11-27 16:00 UTC, weekend`: the wording of refusals and holds."""
        return f"frozen until {self.until:%Y-%m-%d %H:%M} UTC, {self.reason}"


ANCHOR_YEAR = 2020
_TOO_OFTEN = re.compile(r"(^|[;\s])FREQ=(HOURLY|MINUTELY|SECONDLY)\b", re.IGNORECASE)


def parse_rule(text: str, *, timezone: str) -> rrule | rruleset:
    """The rule with its anchor (DTSTART) in `timezone`; ValueError when it does not parse or
    recurs more often than daily."""
    if _TOO_OFTEN.search(text):
        raise ValueError("freeze windows recur daily at most often (FREQ=DAILY, WEEKLY, ...)")
    start = datetime(ANCHOR_YEAR, 1, 1, tzinfo=ZoneInfo(timezone))
    return rrulestr(text, dtstart=start, forceset=False, cache=False)


def _window_reason(window: Window) -> str:
    return window.reason or "a recurring freeze window"


def _in_force(window: Window, at: datetime) -> Frozen | None:
    """The occurrence of `window` that covers `at`, if one does."""
    rule = parse_rule(window.rrule, timezone=window.timezone)
    started = rule.before(at.astimezone(ZoneInfo(window.timezone)), inc=True)
    if started is None:
        return None
    ends = started.astimezone(UTC) + timedelta(seconds=window.duration_s)
    return Frozen(ends, _window_reason(window)) if ends > at else None


def _freezes_at(
    at: datetime, windows: Sequence[Window], one_offs: Sequence[OneOffFreeze]
) -> list[Frozen]:
    found = [frozen for window in windows if (frozen := _in_force(window, at)) is not None]
    for freeze in one_offs:
        if datetime.fromisoformat(freeze.at) <= at < freeze.ends_at:
            reason = f"{freeze.reason or 'no reason given'} (set by <@{freeze.by}>)"
            found.append(Frozen(freeze.ends_at.astimezone(UTC), reason))
    return found


def frozen_at(
    now: datetime, *, windows: Sequence[Window], one_offs: Sequence[OneOffFreeze]
) -> Frozen | None:
    """Whether an app with these windows and one-off freezes is frozen at `now` (aware)."""
    found = _freezes_at(now, windows, one_offs)
    if not found:
        return None
    first = max(found, key=lambda frozen: frozen.until)
    until = first.until
    for _ in range(_CHAIN_LIMIT):  # a freeze that starts as another ends continues it
        later = [frozen.until for frozen in _freezes_at(until, windows, one_offs)]
        if not later or max(later) <= until:
            break
        until = max(later)
    return Frozen(until.astimezone(UTC), first.reason)


# What people read of freezes (the release service words its refusals, holds and notices here).

FREEZE_PAUSE_PREFIX = "frozen until "
"""Starts the pause reason of a release held at its gate by a freeze (Frozen.describe)."""


def held_by_freeze(reason: str, by: str | None) -> bool:
    """True for the pause of a release that a freeze holds at its gate."""
    return by is None and reason.startswith(FREEZE_PAUSE_PREFIX)


def refused_while_frozen(app: str, frozen: Frozen, what: str) -> str:
    return (
        f"{app} is {frozen.describe()}: {what} is refused until then (rollback and pause still "
        'work; a break-glass member may add `--override "<reason>"`)'
    )


def held_at_gate(app: str, version: str, stage: str, frozen: Frozen) -> str:
    return (
        f"{app} {version} holds at {stage}: {frozen.describe()}. It goes on by itself when the "
        "freeze ends; rollback still works"
    )


def freeze_over(app: str, stage: str) -> str:
    return f"the freeze of {app} is over; {stage} goes on"


def overridden(app: str, version: str, by: str, action: str, reason: str) -> str:
    return f"<@{by}> used a break-glass override on {app} {version} ({action}): {reason}"


def override_refused(user: str) -> str:
    return (
        f"<@{user}> may not use `--override`: only the apps file's `break_glass` members may; "
        "nothing was changed"
    )
