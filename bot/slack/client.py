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

RATE_LIMIT_RETRIES = 3
"""How often one Web API call waits out a 429 (sleeping Retry-After seconds) before it fails."""


def build_web_client(*, token: str, base_url: str) -> WebClient:
    """A Web API client on SLACK_API_URL that retries connection errors and honours Retry-After."""
    return WebClient(
        token=token,
        base_url=base_url,
        retry_handlers=[
            ConnectionErrorRetryHandler(),
            RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
        logger=logging.getLogger("release_bot.slack_api"),
    )
