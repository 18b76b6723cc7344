"""The scheduler loop: a background thread that runs ReleaseService.tick every few seconds.

Started by bot.entrypoints.server next to the HTTP server. Each pass reconciles every active release
and delivers what has come due (canary ready, stage timers, promotion and rollback done); due times
live in the release records in Redis, so a restarted bot picks up where the last one stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from bot.core.errors import ReleaseBotError

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 60.0


class Scheduler:
    def __init__(self, *, tick: Callable[[], None], interval_s: float) -> None:
        self._tick = tick
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.passes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        wait_s = self._interval_s
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._tick()
            except Exception as error:  # e.g. Redis down: back off, never let the loop die
                wait_s = min(wait_s * 2, MAX_BACKOFF_S)
                if isinstance(error, ReleaseBotError):
                    log.warning("scheduler_pass_failed", error=str(error), retry_in_s=wait_s)
                else:
                    log.exception("scheduler_pass_crashed", retry_in_s=wait_s)
            else:
                wait_s = self._interval_s
                self.passes += 1
                log.debug("scheduler_pass", seconds=round(time.monotonic() - started, 3))
            self._stopping.wait(wait_s)
