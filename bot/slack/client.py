"""The Slack Web API client the bot posts with; built by bot.entrypoints.server for the Bolt app and
the
Slack announcer alike."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.entrypoints.settings import Settings

RATE_LIMIT_RETRIES = 3
"""How often one Web API call waits out a 429 (sleeping Retry-After seconds) before it fails."""


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
