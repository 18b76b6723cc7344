"""Button listeners: Approve, Advance, Pause, Resume and Rollback on release cards and threads.

Registered on the Bolt app by handlers.app.build_app through
`register(app, service=..., after_ack=...)`. A click is acknowledged at once and carried out
after, on the `after_ack` pool. Its value names the release and the stage the card showed, so a
stale card or a double click never acts on another stage; a delivery Slack repeats is acted on
once (its trigger id is claimed in Redis). Refusals are answered to the clicker alone: in the
channel, or on top of their App Home when the click came from there (it counts as a click in
the app's channel for its members, bot.core.authorization.FromAppHome).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, cast

import structlog
from slack_bolt import Ack, App, Respond

from bot.application.home import AppHome
from bot.application.service import ReleaseService
from bot.core import machine
from bot.core.authorization import APP_HOME
from bot.core.errors import ReleaseBotError
from bot.slack.cards import (
    ACTION_ADVANCE,
    ACTION_APPROVE,
    ACTION_PAUSE,
    ACTION_RESUME,
    ACTION_ROLLBACK,
    InvalidButtonValue,
    parse_button_value,
)
from handlers.commands import INTERNAL_ERROR, NOT_SET_UP, answer_after_ack

log = structlog.get_logger(__name__)

_EVENTS: dict[str, Callable[[str, int], machine.Event]] = {
    ACTION_APPROVE: lambda user, stage: machine.Approve(by=user, stage_index=stage),
    ACTION_ADVANCE: lambda user, stage: machine.Advance(by=user, stage_index=stage),
    ACTION_PAUSE: lambda user, stage: machine.Pause(by=user),
    ACTION_RESUME: lambda user, stage: machine.Resume(by=user),
    ACTION_ROLLBACK: lambda user, stage: machine.Rollback(by=user, reason="Rollback button"),
}


RELEASE_BUTTONS = re.compile("^(?:" + "|".join(map(re.escape, _EVENTS)) + ")$")
"""The action ids of every release button: one listener, so a click is matched by one regex
instead of Bolt trying a listener per button (each try builds its keyword arguments)."""


def register(
    app: App, *, service: ReleaseService | None, after_ack: Executor, home: AppHome | None = None
) -> None:
    """Attach the release buttons' listener; `home`: where a refusal of a click on App Home is
    shown. handlers.app registers it before every other action: clicks on a card come first."""

    def handle_button(
        ack: Ack, respond: Respond, body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        ack()
        answer_after_ack(
            after_ack=after_ack,
            respond=_on_home(home, body) or respond,
            answer=lambda: {"text": _click(service, body, action)},
        )

    app.action(RELEASE_BUTTONS)(handle_button)


def register_unknown_button(app: App, *, after_ack: Executor) -> None:
    """Attach the catch-all for buttons nobody knows; handlers.app registers it after every
    other action listener."""

    def handle_unknown_button(ack: Ack, respond: Respond, action: dict[str, Any]) -> None:
        ack()
        known = ", ".join(_EVENTS)
        text = (
            f":warning: release-bot has no button `{action.get('action_id')}` (it knows "
            f"{known}); this message may come from an older version. Nothing was changed."
        )
        answer_after_ack(after_ack=after_ack, respond=respond, answer=lambda: {"text": text})

    app.action(re.compile(".*"))(handle_unknown_button)


def _from_home(body: dict[str, Any]) -> bool:
    return (body.get("view") or {}).get("type") == "home"


def _on_home(home: AppHome | None, body: dict[str, Any]) -> Respond | None:
    """For a click on App Home (which has no response_url): an answer shown on top of the
    clicker's Home; None for a click in a channel."""
    if home is None or not _from_home(body):
        return None
    user = body["user"]["id"]
    return cast(Respond, lambda text="", **_: home.tell(user, text))


def _click(service: ReleaseService | None, body: dict[str, Any], action: dict[str, Any]) -> str:
    """What to tell the clicker; '' when the click was applied (the card and thread show it)."""
    if service is None:
        return NOT_SET_UP
    try:
        button = parse_button_value(action.get("value"))
        if not service.claim_delivery(body["trigger_id"]):
            log.info("duplicate_delivery", trigger_id=body["trigger_id"])
            return ""
        user = body["user"]["id"]
        event = _EVENTS[action["action_id"]](user, button.stage_index)
        clicked_in = body.get("channel") or {}  # where the card was clicked
        channel = APP_HOME if _from_home(body) else str(clicked_in.get("id") or "")
        outcome = service.act_on_release(
            release_id=button.release_id,
            event=event,
            actor=user,
            channel=channel,  # none: no allowed channel matches
            channel_name=str(clicked_in.get("name") or ""),
        )
    except (InvalidButtonValue, ReleaseBotError) as error:
        return f":warning: {error}. Nothing was changed."
    except Exception:
        log.exception("button_failed", action_id=action.get("action_id"))
        return INTERNAL_ERROR
    return "" if outcome.applied else f":no_entry_sign: {outcome.message}"
