"""Event listeners: `subteam_members_changed` tells the release service a user group changed;
`app_home_opened` shows the person their App Home.

Registered on the Bolt app by handlers.app.build_app through
`register(app, service=..., home=..., after_ack=...)`. Bolt acknowledges the event; the group
listener only drops the group's cached members, so the next authorization decision that needs
the group asks Slack again instead of waiting out the TTL; the Home listener publishes the board
on the `after_ack` pool."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

import structlog
from slack_bolt import App

from bot.application.home import AppHome
from bot.application.service import ReleaseService
from handlers.commands import run_after_ack

log = structlog.get_logger(__name__)


def register(
    app: App, *, service: ReleaseService | None, home: AppHome | None, after_ack: Executor
) -> None:
    """Attach the `subteam_members_changed` and `app_home_opened` listeners to `app`."""

    def handle_subteam_members_changed(event: dict[str, Any]) -> None:
        group_id = str(event.get("subteam_id") or "")
        if service is None or not group_id:
            return
        log.info("usergroup_changed", usergroup=group_id)
        service.membership_changed(group_id)

    def handle_app_home_opened(event: dict[str, Any]) -> None:
        user = str(event.get("user") or "")
        if home is None or event.get("tab") != "home" or not user:
            return  # the Messages tab, or a bot without releases: nothing to show
        run_after_ack(after_ack, lambda: home.opened(user), what="app_home_failed")

    app.event("subteam_members_changed")(handle_subteam_members_changed)
    app.event("app_home_opened")(handle_app_home_opened)
