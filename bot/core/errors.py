"""The error taxonomy every adapter raises and the scheduler and handlers act on.

TemporaryError: the world may fix itself (a timeout, a 409 conflict, a 5xx); retry on the next tick.
PermanentError: retrying cannot help (a 403, an object that is missing); the release must stop.
"""

from __future__ import annotations


class ReleaseBotError(Exception):
    """Base of every error the bot raises on purpose; the message is meant for people."""


class TemporaryError(ReleaseBotError):
    """Retry later: nothing is wrong with the release itself."""


class PermanentError(ReleaseBotError):
    """Retrying cannot help; the release must be stopped or rolled back."""
