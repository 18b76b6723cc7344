"""Builds the Bolt app: its Web API client and every Slack listener.

Called by bot.cli, which hands `build_app` to bot.server.serve (bot never imports handlers).
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.settings import Settings
from handlers import commands

RATE_LIMIT_RETRIES = 3
"""How often one Web API call waits out a 429 (sleeping Retry-After seconds) before it fails."""


def build_app(*, settings: Settings) -> App:
    """A Bolt app with every listener registered; building it makes no network call.

    The token is verified by the server's readiness check (auth.test), not here, so a slow
    Slack at start-up delays readiness instead of crashing the process.
    """
    signing_secret = settings.slack_signing_secret
    app = App(
        client=build_web_client(settings=settings),
        signing_secret=signing_secret.get_secret_value() if signing_secret else "",
        token_verification_enabled=False,
        logger=logging.getLogger("release_bot.slack"),
    )
    commands.register(app)
    return app


def build_web_client(*, settings: Settings) -> WebClient:
    """A Web API client on SLACK_API_URL that retries connection errors and honours Retry-After."""
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        retry_handlers=[
            ConnectionErrorRetryHandler(),
            RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
        logger=logging.getLogger("release_bot.slack_api"),
    )
