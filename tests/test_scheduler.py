"""The scheduler loop (bot.application.scheduler) around a stand-in tick.

Run by pytest. The tick is a plain function that fails or passes as each test scripts it, so the
loop's backoff (doubling, capped, reset after a good pass, a TemporaryError's retry_after_s), its
survival of any exception and its prompt stop are seen directly, with the log events the bot's
operators read (scheduler_pass_failed, scheduler_pass_crashed, retry_in_s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.application import scheduler as scheduler_module
from bot.application.scheduler import Scheduler
from bot.core.errors import PermanentError, TemporaryError

INTERVAL_S = 0.01


class ScriptedTick:
    """Raises the scripted errors one call each (None: a good pass), then passes forever."""

    def __init__(self, *script: BaseException | None) -> None:
        self._script = list(script)
        self.calls: list[float] = []
        self.done = threading.Event()

    def __call__(self, wait_s: float) -> None:
        assert wait_s == INTERVAL_S  # a pass waits for its releases one interval at most
        self.calls.append(time.monotonic())
        if not self._script:
            self.done.set()
            return
        outcome = self._script.pop(0)
        if outcome is not None:
            raise outcome


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def run_until_done(tick: ScriptedTick, *, timeout_s: float = 5.0) -> Scheduler:
    scheduler = Scheduler(tick=tick, interval_s=INTERVAL_S)
    scheduler.start()
    try:
        assert tick.done.wait(timeout_s), "the scheduler never got through its script"
        assert scheduler.is_alive()
    finally:
        scheduler.stop()
    return scheduler


def waits(logs: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(line["event"], line["retry_in_s"]) for line in logs if "retry_in_s" in line]


def test_failed_passes_back_off_doubling_up_to_the_cap_and_start_over_after_a_good_one(
    logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "MAX_BACKOFF_S", 0.08)
    down = TemporaryError("Redis is down")
    tick = ScriptedTick(down, down, down, down, None, RuntimeError("a bug"), PermanentError("x"))

    scheduler = run_until_done(tick)

    failed, crashed = "scheduler_pass_failed", "scheduler_pass_crashed"
    assert waits(logs) == [
        (failed, 0.02), (failed, 0.04), (failed, 0.08), (failed, 0.08),
        (crashed, 0.02), (failed, 0.04),
    ]  # fmt: skip
    assert [line["error"] for line in logs if line["event"] == failed][:1] == ["Redis is down"]
    assert scheduler.passes >= 2
    gaps = [later - earlier for earlier, later in zip(tick.calls, tick.calls[1:], strict=False)]
    for gap, wait_s in zip(gaps, [0.02, 0.04, 0.08, 0.08], strict=False):
        assert gap >= wait_s - 0.005, gaps


def test_a_temporary_error_with_retry_after_is_waited_out_capped(
    logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "MAX_BACKOFF_S", 0.5)
    tick = ScriptedTick(
        TemporaryError("Prometheus is rate limiting", retry_after_s=0.3),
        TemporaryError("Slack is rate limiting", retry_after_s=1000),
    )

    run_until_done(tick)

    assert waits(logs) == [("scheduler_pass_failed", 0.3), ("scheduler_pass_failed", 0.5)]
    first, second, third = tick.calls[:3]
    assert 0.3 <= second - first < 0.45
    assert 0.5 <= third - second < 0.65


def test_stop_ends_the_loop_promptly_in_the_middle_of_a_backoff() -> None:
    failing = threading.Event()

    def tick(wait_s: float) -> None:
        failing.set()
        raise TemporaryError("Redis is down", retry_after_s=1000)

    scheduler = Scheduler(tick=tick, interval_s=INTERVAL_S)
    scheduler.start()
    assert failing.wait(5)

    started = time.monotonic()
    scheduler.stop(timeout_s=5)

    assert time.monotonic() - started < 0.5
    assert not scheduler.is_alive()
    assert scheduler.passes == 0
