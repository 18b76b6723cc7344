"""Who is in a Slack user group or channel, asked through usergroups.users.list and
conversations.members and kept a short while.

Built by bot.entrypoints.server with the bot's Web API client and handed to
bot.application.service.ReleaseService as its MembershipPort; the service asks it before an
action whose rules name a user group, and before a click or a start from App Home (which counts
for members of the app's channels). Needs the bot scopes usergroups:read, channels:read and
groups:read (private channels)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.ports import MembershipUnavailable

log = structlog.get_logger(__name__)

MEMBERSHIP_TTL_S = 60.0
"""How long a group's or channel's members are trusted before Slack is asked again."""
PAGE_SIZE = 200


class SlackMembership:
    """A MembershipPort on the Web API with a `ttl_s` cache per group and per channel; errors
    are not cached."""

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
        return self._cached(group_id, "usergroups.users.list", lambda: self._group(group_id))

    def channel_members(self, channel_id: str) -> frozenset[str]:
        return self._cached(channel_id, "conversations.members", lambda: self._channel(channel_id))

    def _group(self, group_id: str) -> Iterator[str]:
        answer = self._client.usergroups_users_list(usergroup=group_id)
        yield from (str(user) for user in answer.get("users") or ())

    def _channel(self, channel_id: str) -> Iterator[str]:
        cursor = ""
        while True:
            answer = self._client.conversations_members(
                channel=channel_id, limit=PAGE_SIZE, cursor=cursor or None
            )
            yield from (str(user) for user in answer.get("members") or ())
            cursor = str((answer.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return

    def _cached(self, key: str, method: str, fetch: Callable[[], Iterator[str]]) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        try:
            members = frozenset(fetch())
        except SlackApiError as error:
            code = error.response.get("error", "unknown_error")
            log.warning("membership_unresolved", of=key, method=method, error=code)
            raise MembershipUnavailable(f"{method} {key}: {code}") from error
        except OSError as error:  # Slack unreachable after the client's retries
            log.warning("membership_unresolved", of=key, method=method, error=str(error))
            raise MembershipUnavailable(f"{method} {key}: {error}") from error
        with self._lock:
            self._cache[key] = (now, members)
        return members

    def forget(self, group_id: str) -> None:
        """Drop the group's cached members: the next ask goes to Slack."""
        with self._lock:
            self._cache.pop(group_id, None)
