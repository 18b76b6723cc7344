"""Who may change production: the pure decision the release service asks before every action.

Called by the release service (bot.application.service) with the app's rules, the action, the
Slack user id, the channel the request came from and the user-group memberships it resolved
(through the MembershipPort). Pure: no Slack call, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from bot.core.apps import AppConfig, ChannelRef


class Right(StrEnum):
    """What an action needs beyond being asked from one of the app's channels."""

    START = "start"
    APPROVE = "approve"
    PROMOTE = "promote"
    CHANNEL = "channel"
    """Only the channel: pause, resume, roll back, lock, unlock (stopping harm is never gated)."""


_DOING = {Right.START: "starting", Right.APPROVE: "approving", Right.PROMOTE: "promoting"}


@dataclass(frozen=True, slots=True)
class SeenChannel:
    """The channel a Slack request came from: its id, and its name when the payload has one."""

    id: str
    name: str = ""


APP_HOME = "app-home"
"""What the Slack listeners pass as the channel of a click or a form on the bot's App Home, which
is in no channel; the audit trail records it as that place."""


@dataclass(frozen=True, slots=True)
class FromAppHome:
    """A request from the bot's App Home: it counts as coming from an allowed channel the person
    is a member of. `member_of`: the app's allowed channel IDs the person is in, as resolved
    (an allowed channel given by name cannot be resolved, so never counts)."""

    member_of: frozenset[str]


Place = SeenChannel | FromAppHome
"""Where a person's request came from: a channel, or the App Home."""


@dataclass(frozen=True, slots=True)
class Allowed:
    pass


@dataclass(frozen=True, slots=True)
class Denied:
    """`reason` is meant for the person who asked: what would be needed."""

    reason: str


Decision = Allowed | Denied

Memberships = Mapping[str, frozenset[str] | None]
"""User-group id -> its members' user ids; None when Slack could not be asked."""


def principals(app: AppConfig, right: Right) -> tuple[str, ...]:
    """The user and user-group ids the app's rules list for `right`; empty: anyone."""
    rules = app.authorization
    match right:
        case Right.START:
            return rules.start
        case Right.APPROVE:
            return rules.approve
        case Right.PROMOTE:
            return rules.promote
    return ()


def groups_to_resolve(app: AppConfig, right: Right, user: str) -> tuple[str, ...]:
    """The user groups whose members decide whether `user` may: none when the rules list the
    user by id or list nobody (anyone may)."""
    listed = principals(app, right)
    if not listed or user in listed:
        return ()
    return tuple(p for p in listed if _is_group(p))


def allowed_channels(app: AppConfig) -> tuple[ChannelRef, ...]:
    """Where the app may be released from: its `authorization.channels`, else its slack_channel."""
    return app.authorization.channels or (app.slack_channel,)


def decide(
    app: AppConfig,
    right: Right,
    *,
    user: str,
    channel: Place | None,
    memberships: Memberships,
) -> Decision:
    """May `user`, asking from `channel`, do what needs `right` on `app`?

    `channel` None: a caller outside Slack (the demo, a script), which has no channel to check;
    FromAppHome: the App Home, which counts as an allowed channel the person is a member of.
    A group missing from `memberships` or mapped to None could not be resolved: a right that
    needs it is denied (fail closed); the channel-only right never needs one."""
    if channel is not None and not _in_allowed_channel(app, channel):
        where = " or ".join(_channel_mention(ref) for ref in allowed_channels(app))
        if isinstance(channel, FromAppHome):
            return Denied(
                f"{app.name} is released from {where} only, and from App Home by its members; "
                "you are not a member, so nothing was changed"
            )
        return Denied(f"{app.name} is released from {where} only; nothing was changed here")
    listed = principals(app, right)
    if right is Right.CHANNEL or not listed or user in listed:
        return Allowed()
    unresolved: list[str] = []
    for group in (p for p in listed if _is_group(p)):
        members = memberships.get(group)
        if members is None:
            unresolved.append(group)
        elif user in members:
            return Allowed()
    needed = f"{_DOING[right]} {app.name} needs {_anyone_of(listed)}"
    if unresolved:
        groups = ", ".join(_mention(group) for group in unresolved)
        return Denied(f"{needed}; Slack could not be asked who is in {groups}, so it is refused")
    return Denied(needed)


def home_channel_ids(app: AppConfig) -> tuple[str, ...]:
    """The allowed channels whose members may act from App Home: those given by ID."""
    return tuple(ref.value for ref in allowed_channels(app) if ref.is_id)


def _in_allowed_channel(app: AppConfig, channel: Place) -> bool:
    if isinstance(channel, FromAppHome):
        return any(channel_id in channel.member_of for channel_id in home_channel_ids(app))
    return any(
        ref.matches(channel_id=channel.id, channel_name=channel.name)
        for ref in allowed_channels(app)
    )


def _is_group(principal: str) -> bool:
    return principal.startswith("S")


def _mention(principal: str) -> str:
    return f"<!subteam^{principal}>" if _is_group(principal) else f"<@{principal}>"


def _anyone_of(listed: tuple[str, ...]) -> str:
    groups = [p for p in listed if _is_group(p)]
    ordered = [*groups, *(p for p in listed if not _is_group(p))]
    article = "a member of " if groups else ""
    return article + " or ".join(_mention(p) for p in ordered)


def _channel_mention(ref: ChannelRef) -> str:
    return f"<#{ref.value}>" if ref.is_id else str(ref)
