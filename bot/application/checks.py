"""Metric checks of running canaries: when one is due, and the state-machine event it yields.

Called by the release service on every scheduler pass. It reads canary and stable side by side
through a MetricsPort (Prometheus), judges them with bot.core.analysis, and turns the judgement into
ChecksPassed, ChecksFailed or ChecksInconclusive. A check that fails yields its event without any
further query, so nothing stands between the decision and the rollback. At the start of a pass,
`prefetch` asks for the readings of every release whose check is due, one batch per Prometheus
(MetricsPort.read_many), so the queries of a pass do not grow with the number of releases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog

from bot.core.analysis import (
    MetricsUnavailable,
    Reading,
    Trend,
    Verdict,
    judge,
    snapshot_text,
    summary_line,
)
from bot.core.apps import AppConfig, MetricsConfig
from bot.core.machine import ChecksFailed, ChecksInconclusive, ChecksPassed, Event
from bot.core.ports import MetricsPort
from bot.core.release import Release
from bot.core.schedule import checks_run

log = structlog.get_logger(__name__)

TREND_POINTS = 12

ReadingOf = Callable[[], Reading]
Submit = Callable[..., Future[Any]]
"""ThreadPoolExecutor.submit: runs a batch's read_many on a thread of its own."""


class CanaryChecks:
    def __init__(self, *, metrics: MetricsPort) -> None:
        self._metrics = metrics

    def covers(self, app: AppConfig) -> bool:
        return self._metrics.covers(app)

    def due(self, release: Release, app: AppConfig, *, now: datetime) -> bool:
        """Every `interval` while a stage runs or waits (and while paused by missing metrics,
        to notice they are back); at once when the stage timer is up without a passing check."""
        if not checks_run(release):
            return False
        last = release.last_check_at
        if last is None or now - last >= timedelta(seconds=app.metrics.interval_s):
            return True
        timer_up = release.stage_due_at is not None and now >= release.stage_due_at
        stage_started = release.stage_started_at
        unchecked = release.checks_passed == 0 and (stage_started is None or last < stage_started)
        return timer_up and unchecked

    def prefetch(
        self, due: Sequence[tuple[Release, AppConfig]], *, now: datetime, submit: Submit
    ) -> dict[str, ReadingOf]:
        """For every release of `due` whose check is due, its reading, asked for together with
        those of every other release on the same Prometheus (one read_many per batch, started
        with `submit` so that a hanging Prometheus holds only its own batch): release id -> a
        call that waits for the reading (raising MetricsUnavailable as `read` would)."""
        batches: dict[str, dict[str, AppConfig]] = defaultdict(dict)
        checked: list[tuple[Release, AppConfig]] = []
        for release, app in due:
            if self.due(release, app, now=now):
                batches[self._metrics.batch_of(app)][app.name] = app
                checked.append((release, app))
        answers = {
            batch: submit(self._metrics.read_many, list(apps.values()), at=now)
            for batch, apps in batches.items()
        }
        return {
            release.id: partial(_reading_of, answers[self._metrics.batch_of(app)], app.name)
            for release, app in checked
        }

    def run(
        self,
        release: Release,
        app: AppConfig,
        *,
        now: datetime,
        reading_of: ReadingOf | None = None,
    ) -> Event:
        """The check's event; `reading_of`: the reading prefetched for it (else it is read)."""
        try:
            reading = reading_of() if reading_of else self._metrics.read(app, at=now)
        except MetricsUnavailable as error:
            return ChecksInconclusive(reason=str(error))
        judgement = judge(reading, _limits(release, app), public_traffic=release.stage.weight > 0)
        summary = summary_line(judgement, reading)
        if judgement.verdict is Verdict.FAILED:
            failed = judgement.failed[0]
            assert failed.canary is not None and failed.threshold is not None  # judge's promise
            return ChecksFailed(
                metric=failed.metric.value.replace("_", " "),
                value=failed.canary,
                threshold=failed.threshold,
                unit=failed.unit,
                failure_limit=app.metrics.failure_limit,
                summary=summary,
            )
        if judgement.verdict is Verdict.INCONCLUSIVE:
            return ChecksInconclusive(reason=judgement.reason)
        snapshot = None
        if self._snapshot_due(release, app, now=now):
            snapshot = snapshot_text(judgement, reading, self._trend(app, now=now))
        return ChecksPassed(summary=summary, snapshot=snapshot)

    def _snapshot_due(self, release: Release, app: AppConfig, *, now: datetime) -> bool:
        last = release.last_snapshot_at
        if last is None or (release.stage_started_at and last < release.stage_started_at):
            return True
        return now - last >= timedelta(seconds=app.metrics.snapshot_interval_s)

    def _trend(self, app: AppConfig, *, now: datetime) -> Trend | None:
        try:
            return self._metrics.trend(app, at=now, points=TREND_POINTS)
        except MetricsUnavailable as error:
            log.warning("trend_unavailable", app=app.name, error=str(error))
            return None


def _reading_of(answer: Future[dict[str, Reading | MetricsUnavailable]], app: str) -> Reading:
    found = answer.result()[app]
    if isinstance(found, MetricsUnavailable):
        raise found
    return found


def _limits(release: Release, app: AppConfig) -> MetricsConfig:
    """At 100 % stable serves nobody, so limits relative to stable have nothing to compare."""
    limits = app.metrics
    if release.stage.weight < 100:
        return limits
    error_rate = limits.error_rate.model_copy(update={"max_above_stable": None})
    latency = limits.p99_latency_ms
    if latency is not None:
        latency = (
            None if latency.max is None else latency.model_copy(update={"max_above_stable": None})
        )
    return limits.model_copy(update={"error_rate": error_rate, "p99_latency_ms": latency})
