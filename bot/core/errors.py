"""The error taxonomy every adapter raises and the scheduler and handlers act on.

TemporaryError: the world may fix itself (a timeout, a 409 conflict, a 5xx); retry later, after
`retry_after_s` when the error knows how long (a 429's Retry-After), else on the next pass.
PermanentError: retrying cannot help (a 403, an object that is missing); the release must stop.
Each client library has one translator into these: bot.kube.client (Kubernetes),
bot.metrics.prometheus (Prometheus), bot.slack.announcer (Slack), bot.redis.store (Redis).
"""

from __future__ import annotations


class ReleaseBotError(Exception):
    """Base of every error the bot raises on purpose; the message is meant for people."""


class TemporaryError(ReleaseBotError):
    """Retry later: nothing is wrong with the release itself."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """How long to wait before trying again, when the failure says so; None: next pass."""


class PermanentError(ReleaseBotError):
    """Retrying cannot help; the release must be stopped or rolled back."""
