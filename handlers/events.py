"""Event listeners: `subteam_members_changed` tells the release service a user group changed.

Registered on the Bolt app by handlers.app.build_app through `register(app, service=...)`.
Bolt acknowledges the event; the listener only drops the group's cached members, so the next
authorization decision that needs the group asks Slack again instead of waiting out the TTL."""

from __future__ import annotations

from typing import Any

import structlog
from slack_bolt import App

from bot.application.service import ReleaseService

log = structlog.get_logger(__name__)


def register(app: App, *, service: ReleaseService | None) -> None:
    """Attach the `subteam_members_changed` listener to `app`."""

    def handle_subteam_members_changed(event: dict[str, Any]) -> None:
        group_id = str(event.get("subteam_id") or "")
        if service is None or not group_id:
            return
        log.info("usergroup_changed", usergroup=group_id)
        service.membership_changed(group_id)

    app.event("subteam_members_changed")(handle_subteam_members_changed)
