"""The bot's clock: Redis's, so that every replica agrees on when a stage or pause is due.

Built by bot.entrypoints.server for the release service. Reading Redis's TIME on every call would
cost a round trip each; instead the offset between Redis and this machine is measured now and then
and added to the local clock. Until Redis has answered once, the local clock stands in."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import structlog

from bot.core.errors import ReleaseBotError
from bot.redis.store import ReleaseStore

log = structlog.get_logger(__name__)

RESYNC_S = 60.0


class ServerClock:
    def __init__(self, *, store: ReleaseStore, resync_s: float = RESYNC_S) -> None:
        self._store = store
        self._resync_s = resync_s
        self._offset = timedelta(0)
        self._tried_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            due = self._tried_at is None or time.monotonic() - self._tried_at >= self._resync_s
            if due:
                self._tried_at = time.monotonic()  # a Redis outage costs one timeout per resync
        if due:
            self._sync()
        return datetime.now(UTC) + self._offset

    def _sync(self) -> None:
        try:
            before = datetime.now(UTC)
            server = self._store.server_time()
            after = datetime.now(UTC)
        except ReleaseBotError as error:  # keep the last offset
            log.warning("clock_sync_failed", error=str(error))
            return
        offset = server - (before + (after - before) / 2)
        with self._lock:
            self._offset = offset
        if abs(offset) > timedelta(seconds=1):
            log.warning("clock_skew", seconds=round(offset.total_seconds(), 3))
