"""Requests as Slack sends them to a bot's /slack/events: slash commands, button clicks (on a
message, on App Home or in a modal), modal submissions and events, signed.

Used by tests/infra/slack.py (the `slack_requests` fixture and BotClient) and by tests that
drive the bot. Signing follows Slack's "verifying requests" scheme exactly:
`X-Slack-Signature = "v0=" + hex(HMAC-SHA256(signing_secret, f"v0:{timestamp}:{body}"))`.
Stale timestamps, tampered bodies and Slack's retry headers can be produced on demand.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from tests.infra.slack_standin import APP_ID, BOT_ID, BOT_USER_ID, TEAM_ID

TEAM_DOMAIN = "standin"
VERIFICATION_TOKEN = "standin-verification-token"  # Slack's deprecated per-app token field
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class SlackUser:
    id: str
    name: str


@dataclass(frozen=True)
class SlackChannel:
    id: str
    name: str


ALICE = SlackUser("U0ALICE001", "alice")
BOB = SlackUser("U0BOB00001", "bob")
RELEASES = SlackChannel("C0RELEASES", "releases")


@dataclass(frozen=True)
class SignedRequest:
    """A body and the headers Slack would send with it."""

    body: str
    headers: dict[str, str]

    def with_body(self, body: str) -> SignedRequest:
        """The same headers on another body: what an attacker altering the request produces."""
        return replace(self, body=body)


class SlackRequests:
    """Builds signed requests for one app (one signing secret)."""

    def __init__(
        self,
        *,
        signing_secret: str,
        response_url_base: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signing_secret = signing_secret
        self._response_url_base = response_url_base
        self._clock = clock
        self._sequence = itertools.count(1)

    def slash_command(
        self,
        text: str,
        *,
        command: str = "/release",
        user: SlackUser = ALICE,
        channel: SlackChannel = RELEASES,
        timestamp: int | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
    ) -> SignedRequest:
        """`/release <text>` typed by `user` in `channel`."""
        fields = {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel.id,
            "channel_name": channel.name,
            "user_id": user.id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self._response_url(),
            "trigger_id": self._trigger_id(),
        }
        return self.sign(
            urlencode(fields), timestamp=timestamp, retry_num=retry_num, retry_reason=retry_reason
        )

    def block_action(
        self,
        *,
        action_id: str,
        value: str,
        message_ts: str,
        block_id: str = "release_actions",
        user: SlackUser = ALICE,
        channel: SlackChannel = RELEASES,
        thread_ts: str | None = None,
        timestamp: int | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
    ) -> SignedRequest:
        """A click by `user` on the button `action_id` of the bot's message `message_ts`."""
        payload = self.block_actions_payload(
            action_id=action_id,
            value=value,
            message_ts=message_ts,
            block_id=block_id,
            user=user,
            channel=channel,
            thread_ts=thread_ts,
        )
        body = urlencode({"payload": json.dumps(payload)})
        return self.sign(body, timestamp=timestamp, retry_num=retry_num, retry_reason=retry_reason)

    def block_actions_payload(
        self,
        *,
        action_id: str,
        value: str,
        message_ts: str,
        block_id: str,
        user: SlackUser,
        channel: SlackChannel,
        thread_ts: str | None,
    ) -> dict[str, Any]:
        """The decoded `payload` of a block_actions request (Slack's field set for a button)."""
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel.id,
            "is_ephemeral": False,
        }
        message: dict[str, Any] = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID}
        message["ts"] = message_ts
        if thread_ts is not None:
            container["thread_ts"] = thread_ts
            message["thread_ts"] = thread_ts
        return {
            "type": "block_actions",
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": container,
            "trigger_id": self._trigger_id(),
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel.id, "name": channel.name},
            "message": message,
            "state": {"values": {}},
            "response_url": self._response_url(),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": action_id, "emoji": True},
                    "value": value,
                    "action_ts": f"{self._clock():.6f}",
                }
            ],
        }

    def view_action(
        self,
        view: dict[str, Any],
        *,
        action: dict[str, Any],
        block_id: str,
        user: SlackUser = ALICE,
        values: dict[str, Any] | None = None,
    ) -> SignedRequest:
        """A click or a select in `view` (App Home or a modal, as views.publish / views.open
        answered it): Slack's block_actions payload from a view, which names no channel and,
        for App Home, carries no response_url. `action`: the element's own fields (type,
        action_id, value or selected_option); `values`: the modal's input state so far."""
        shown = {**view, "state": {"values": values or {}}}
        payload = {
            "type": "block_actions",
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {"type": "view", "view_id": view["id"]},
            "trigger_id": self._trigger_id(),
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "view": shown,
            "actions": [{**action, "block_id": block_id, "action_ts": f"{self._clock():.6f}"}],
        }
        return self.sign(urlencode({"payload": json.dumps(payload)}))

    def view_submission(
        self, view: dict[str, Any], *, values: dict[str, Any], user: SlackUser = ALICE
    ) -> SignedRequest:
        """The modal `view` submitted by `user` with its inputs' `values` (Slack's
        view.state.values: block id -> action id -> the element's value)."""
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self._trigger_id(),
            "view": {**view, "state": {"values": values}},
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self.sign(urlencode({"payload": json.dumps(payload)}))

    def _user(self, user: SlackUser) -> dict[str, str]:
        return {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM_ID}

    def event_callback(self, event: dict[str, Any]) -> SignedRequest:
        """An Events API delivery of `event` (its `type` and fields as Slack documents them),
        JSON-encoded as Slack posts it."""
        envelope = {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": {"event_ts": f"{self._clock():.6f}", **event},
            "type": "event_callback",
            "event_id": f"Ev{next(self._sequence):010d}",
            "event_time": int(self._clock()),
            "authorizations": [
                {
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        signed = self.sign(json.dumps(envelope))
        return replace(signed, headers={**signed.headers, "Content-Type": "application/json"})

    def sign(
        self,
        body: str,
        *,
        timestamp: int | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
    ) -> SignedRequest:
        """Sign `body` as Slack does; `timestamp` defaults to now (pass an old one: stale)."""
        stamp = str(int(self._clock()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": FORM_CONTENT_TYPE,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": slack_signature(self._signing_secret, timestamp=stamp, body=body),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason
        return SignedRequest(body=body, headers=headers)

    def _response_url(self) -> str:
        return f"{self._response_url_base}{TEAM_ID}/{next(self._sequence)}/{secrets.token_hex(12)}"

    def _trigger_id(self) -> str:
        return f"{next(self._sequence)}.{int(self._clock())}.{secrets.token_hex(16)}"


def slack_signature(signing_secret: str, *, timestamp: str, body: str) -> str:
    basestring = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(signing_secret.encode(), basestring, hashlib.sha256).hexdigest()
    return f"v0={digest}"
