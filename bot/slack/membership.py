"""Who is in a Slack user group, asked through usergroups.users.list and kept a short while.

Built by bot.entrypoints.server with the bot's Web API client and handed to
bot.application.service.ReleaseService as its MembershipPort; the service asks it before an
action whose rules name a user group. Needs the bot scope usergroups:read."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.ports import MembershipUnavailable

log = structlog.get_logger(__name__)

MEMBERSHIP_TTL_S = 60.0
"""How long a group's members are trusted before Slack is asked again."""


class SlackMembership:
    """A MembershipPort on the Web API with a `ttl_s` cache per group; errors are not cached."""

    def __init__(
        self,
        *,
        client: WebClient,
        ttl_s: float = MEMBERSHIP_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    def members(self, group_id: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(group_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        try:
            answer = self._client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as error:
            code = error.response.get("error", "unknown_error")
            log.warning("usergroup_unresolved", usergroup=group_id, error=code)
            raise MembershipUnavailable(f"usergroups.users.list {group_id}: {code}") from error
        except OSError as error:  # Slack unreachable after the client's retries
            log.warning("usergroup_unresolved", usergroup=group_id, error=str(error))
            raise MembershipUnavailable(f"usergroups.users.list {group_id}: {error}") from error
        members = frozenset(str(user) for user in answer.get("users") or ())
        with self._lock:
            self._cache[group_id] = (now, members)
        return members

    def forget(self, group_id: str) -> None:
        """Drop the group's cached members: the next ask goes to Slack."""
        with self._lock:
            self._cache.pop(group_id, None)
