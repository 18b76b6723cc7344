"""The scheduler loop: a background thread that runs ReleaseService.tick every few seconds.

Started by bot.entrypoints.server next to the HTTP server. Each pass works the releases that have
come due (canary ready, stage timers, metric checks, promotion and rollback done, messages to post);
due times live in Redis with the release records, so a restarted bot picks up where the last one
stopped. A pass waits for its releases one interval at most (`tick(wait_s)`): a release whose
calls hang goes on in its own worker while the next passes work the others.

A failed pass (e.g. Redis down) is retried by tenacity: the wait doubles from twice the interval
up to MAX_BACKOFF_S, or is the failure's own TemporaryError.retry_after_s (capped the same), and
starts over after a good pass. The loop never dies of a pass's exception, and stop() ends it
within one wait: tenacity sleeps on the stop event. Each pass, failed or not, is timed in
release_bot_scheduler_pass_seconds (bot.application.telemetry)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_never
from tenacity.wait import wait_exponential

from bot.application import telemetry
from bot.core.errors import ReleaseBotError, TemporaryError

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 60.0


class Scheduler:
    def __init__(self, *, tick: Callable[[float], None], interval_s: float) -> None:
        self._tick = tick
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._doubling = wait_exponential(multiplier=interval_s * 2, max=MAX_BACKOFF_S)
        self.passes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        # One Retrying per good pass, so the backoff starts over after each one.
        until_a_good_pass = Retrying(
            retry=retry_if_exception_type(Exception),
            stop=stop_never,
            wait=self._backoff_s,
            sleep=self._sleep,
            before_sleep=self._log_failure,
        )
        while not self._stopping.is_set():
            until_a_good_pass(self._pass)
            self._stopping.wait(self._interval_s)

    def _pass(self) -> None:
        if self._stopping.is_set():  # stopped while backing off: no more passes
            return
        started = time.monotonic()
        try:
            self._tick(self._interval_s)
        finally:
            telemetry.SCHEDULER_PASS_SECONDS.observe(time.monotonic() - started)
        self.passes += 1
        log.debug("scheduler_pass", seconds=round(time.monotonic() - started, 3))

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # stop() wakes it

    def _backoff_s(self, state: RetryCallState) -> float:
        error = _failure(state)
        if isinstance(error, TemporaryError) and error.retry_after_s is not None:
            return min(max(error.retry_after_s, 0.0), MAX_BACKOFF_S)
        return float(self._doubling(state))

    def _log_failure(self, state: RetryCallState) -> None:
        error, wait_s = _failure(state), state.upcoming_sleep
        if isinstance(error, ReleaseBotError):
            log.warning("scheduler_pass_failed", error=str(error), retry_in_s=wait_s)
        else:
            log.error("scheduler_pass_crashed", retry_in_s=wait_s, exc_info=error)


def _failure(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None
