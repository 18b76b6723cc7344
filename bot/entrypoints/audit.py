"""`release-bot audit export`: called by bot.entrypoints.cli; prints the audit trail from Redis.

Needs a Redis only (REDIS_URL, or REDIS_SENTINELS with REDIS_SENTINEL_MASTER, and their
passwords), no Slack token: it reads those variables alone instead of the bot's whole Settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from bot.core.durations import parse_duration
from bot.core.errors import ReleaseBotError
from bot.entrypoints.settings import parse_host_ports
from bot.redis.store import ReleaseStore, connect

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2

NO_REDIS = (
    "release-bot audit export: no Redis configured: set REDIS_URL (redis://host:port/db), or "
    "REDIS_SENTINELS (host:port,...) with REDIS_SENTINEL_MASTER"
)


class AuditConfigError(ValueError):
    """The environment or the command line does not say what to export from where."""


def export_command(
    *,
    app: str | None = None,
    since: str | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the trail as JSON lines, oldest first; 2 when misconfigured, 1 when Redis fails."""
    out = out if out is not None else sys.stdout
    try:
        client = redis_from_env(os.environ if environ is None else environ)
        store = ReleaseStore(client)
        start = parse_since(since, now=store.server_time) if since else None
        entries = store.audit_trail(app, since=start)
    except AuditConfigError as error:
        print(str(error), file=sys.stderr)
        return EXIT_USAGE
    except ReleaseBotError as error:  # the store is unavailable
        print(f"release-bot audit export: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    for entry in entries:
        out.write(entry.to_json() + "\n")
    out.flush()
    return EXIT_OK


def parse_since(text: str, *, now: Callable[[], datetime]) -> datetime:
    """`--since`: a duration back from `now()` ('7d': the last 7 days), or an ISO 8601 time
    (UTC when it names no offset)."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        pass
    else:
        return now() - timedelta(seconds=seconds)
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AuditConfigError(
            f"release-bot audit export: --since {text!r} is neither an ISO 8601 time "
            "(2026-01-31 or 2026-01-31T12:00:00Z) nor a duration (7d, 12h, 30m)"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def redis_from_env(environ: Mapping[str, str]) -> Any:
    """A client as `release-bot serve` connects (bot.redis.store.connect) from the same
    variables; empty variables count as unset, as they do for the bot's Settings."""

    def get(name: str) -> str | None:
        return environ.get(name) or None

    url, sentinels, master = get("REDIS_URL"), get("REDIS_SENTINELS"), get("REDIS_SENTINEL_MASTER")
    if url is None and sentinels is None:
        raise AuditConfigError(NO_REDIS)
    if url is not None and sentinels is not None:
        raise AuditConfigError(
            "release-bot audit export: REDIS_URL and REDIS_SENTINELS are both set; set one"
        )
    if sentinels is not None and master is None:
        raise AuditConfigError(
            "release-bot audit export: REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not"
        )
    try:
        addresses = parse_host_ports(sentinels) if sentinels else []
    except ValueError as error:
        raise AuditConfigError(f"release-bot audit export: REDIS_SENTINELS {error}") from None
    return connect(
        url,
        sentinels=addresses,
        master=master,
        password=get("REDIS_PASSWORD"),
        sentinel_password=get("REDIS_SENTINEL_PASSWORD"),
    )
