"""Metric checks of running canaries: when one is due, the state-machine event it yields, and
the chart that goes with its message.

Called by the release service on every scheduler pass. It reads canary and stable side by side
through a MetricsPort (Prometheus), judges them with bot.core.analysis, and turns the judgement into
ChecksPassed, ChecksFailed or ChecksInconclusive. A check that fails its thresholds yields its event
without any further query, so nothing stands between the decision and the rollback. Only when
the thresholds pass does an app's statistical judge (bot.core.judge) run, on per-interval
samples of its lookback: a fail rolls back, marginal or missing data pauses, a pass passes.
At the start of a pass, `prefetch` asks for the readings of every release whose check is due,
one batch per Prometheus (MetricsPort.read_many), so the queries of a pass do not grow with the
number of releases.

Charts (bot.core.chart, drawn by a ChartRendererPort) are made when a message is delivered,
after the transition is saved and the cluster reconciled: an upload never delays a rollback.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog

from bot.core.analysis import (
    BY_TRACK,
    Judgement,
    MetricsUnavailable,
    Reading,
    Sides,
    Trend,
    Verdict,
    display,
    escape,
    judge,
    label,
    snapshot_text,
    summary_line,
    unit,
)
from bot.core.apps import AppConfig, JudgeConfig, MetricsConfig
from bot.core.chart import ChartImage, chart_of, chart_span_s, plain
from bot.core.errors import ReleaseBotError
from bot.core.images import parse_version
from bot.core.judge import JudgeResult, Outcome, Overall, judge_statistically
from bot.core.machine import ChecksFailed, ChecksInconclusive, ChecksPassed, Event, Notify
from bot.core.ports import ChartRendererPort, MetricsPort
from bot.core.release import NoticeKind, Release, ReleaseKind, desired_traffic
from bot.core.schedule import checks_run

log = structlog.get_logger(__name__)

TREND_POINTS = 12
CHART_POINTS_MAX = 60
CHART_SPAN_MAX_S = 6 * 3600
"""A chart shows the release from its first stage, at most this far back."""
_CHARTED_NOTICES = (NoticeKind.SNAPSHOT, NoticeKind.AUTO_ROLLBACK)
_UNSAFE_IN_FILENAMES = re.compile(r"[^A-Za-z0-9._-]+")

ReadingOf = Callable[[], Reading]
Submit = Callable[..., Future[Any]]
"""ThreadPoolExecutor.submit: runs a batch's read_many on a thread of its own."""


class CanaryChecks:
    def __init__(self, *, metrics: MetricsPort, charts: ChartRendererPort | None = None) -> None:
        """`charts` None: messages go without charts."""
        self._metrics = metrics
        self._charts = charts

    def covers(self, app: AppConfig) -> bool:
        return self._metrics.covers(app)

    def due(self, release: Release, app: AppConfig, *, now: datetime) -> bool:
        """Every `interval` while a stage runs or waits, and while a verification Job holds its
        gate (and while paused by missing metrics, to notice they are back); at once when the
        stage timer is up without a passing check."""
        if not checks_run(release):
            return False
        last = release.last_check_at
        interval_s = release.stage.check_interval_s or app.metrics.interval_s
        if last is None or now - last >= timedelta(seconds=interval_s):
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
        batches: dict[str, dict[str, tuple[AppConfig, Sides]]] = defaultdict(dict)
        checked: list[tuple[Release, str, str]] = []
        for release, app in due:
            if self.due(release, app, now=now):
                sides = sides_of(release)
                batch = self._metrics.batch_of(app, sides)
                batches[batch][app.name] = (app, sides)
                checked.append((release, batch, app.name))
        answers = {
            batch: submit(self._metrics.read_many, list(apps.values()), at=now)
            for batch, apps in batches.items()
        }
        return {
            release.id: partial(_reading_of, answers[batch], name)
            for release, batch, name in checked
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
            sides = sides_of(release)
            reading = reading_of() if reading_of else self._metrics.read(app, at=now, sides=sides)
        except MetricsUnavailable as error:
            return ChecksInconclusive(reason=str(error))
        weight = desired_traffic(release).canary_weight  # at a gate: the weight it holds
        judgement = judge(reading, _limits(release, app), public_traffic=weight > 0)
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
        config = app.metrics.judge
        if config is None or not 0 < weight < 100:
            return self._passed(release, app, judgement, reading, summary, now=now)
        try:
            verdict = self._judge_statistically(app, config, now=now)
        except MetricsUnavailable as error:
            return ChecksInconclusive(reason=f"statistical judge: {error}")
        if verdict.overall is Overall.FAIL:
            return _judge_failed(verdict, app, summary=summary)
        if verdict.overall is not Overall.PASS:
            return ChecksInconclusive(reason=_inconclusive_reason(verdict))
        summary = f"{summary} · {escape(verdict.reason)}"
        return self._passed(release, app, judgement, reading, summary, now=now, verdict=verdict)

    def chart(self, release: Release, app: AppConfig, notice: Notify) -> ChartImage | None:
        """The chart of a snapshot or an automatic rollback, as of the check that made it: the
        release from its first stage to that check. None for other notices, without a renderer,
        or when the chart cannot be made (logged): the message goes out without it."""
        at = release.last_check_at
        if self._charts is None or notice.kind not in _CHARTED_NOTICES or at is None:
            return None
        metrics = app.metrics
        span_s = chart_span_s(release, at=at, window_s=metrics.window_s, most_s=CHART_SPAN_MAX_S)
        points = max(2, min(CHART_POINTS_MAX, span_s // metrics.interval_s))
        failed = notice.kind is NoticeKind.AUTO_ROLLBACK
        try:
            trend = self._metrics.trend(
                _looking_back(app, span_s), at=at, points=points, sides=sides_of(release)
            )
            drawn = chart_of(
                release, app, trend, at=at, span_s=span_s, verdict=plain(notice.text), failed=failed
            )
            png = self._charts.render(drawn)
        except ReleaseBotError as error:
            log.warning("chart_skipped", app=app.name, notice=notice.kind, error=str(error))
            return None
        name = _UNSAFE_IN_FILENAMES.sub("-", f"{release.app}-{release.version}")
        return ChartImage(
            png=png,
            title=drawn.title,
            alt_text=drawn.alt_text,
            filename=f"{name}-{at.strftime('%Y%m%dT%H%M%SZ')}.png",
        )

    def _passed(
        self,
        release: Release,
        app: AppConfig,
        judgement: Judgement,
        reading: Reading,
        summary: str,
        *,
        now: datetime,
        verdict: JudgeResult | None = None,
    ) -> ChecksPassed:
        if not self._snapshot_due(release, app, now=now):
            return ChecksPassed(summary=summary)
        snapshot = snapshot_text(judgement, reading, self._trend(app, sides_of(release), now=now))
        if verdict is not None:
            snapshot += "\n🧮 " + escape(verdict.explanation)
        return ChecksPassed(summary=summary, snapshot=snapshot)

    def _judge_statistically(
        self, app: AppConfig, config: JudgeConfig, *, now: datetime
    ) -> JudgeResult:
        """Per-interval samples of both tracks over the judge's lookback, judged."""
        looking_back = _looking_back(app, config.lookback_s)
        trend = self._metrics.trend(looking_back, at=now, points=config.samples)
        return judge_statistically(trend, config)

    def _snapshot_due(self, release: Release, app: AppConfig, *, now: datetime) -> bool:
        last = release.last_snapshot_at
        if last is None or (release.stage_started_at and last < release.stage_started_at):
            return True
        return now - last >= timedelta(seconds=app.metrics.snapshot_interval_s)

    def _trend(self, app: AppConfig, sides: Sides, *, now: datetime) -> Trend | None:
        try:
            return self._metrics.trend(app, at=now, points=TREND_POINTS, sides=sides)
        except MetricsUnavailable as error:
            log.warning("trend_unavailable", app=app.name, error=str(error))
            return None


_COMPARED_BY_VERSION = frozenset(
    {ReleaseKind.BLUE_GREEN, ReleaseKind.ARGO_CANARY, ReleaseKind.ARGO_BLUE_GREEN}
)


def sides_of(release: Release) -> Sides:
    """What a release's checks compare: blue-green's green (pods labelled with the release's
    version) against blue (the version it replaces), whatever slot each runs in, and an Argo
    Rollout's new ReplicaSet against its stable one the same way (their pods differ by version
    label only); a canary's and a hybrid's green (`track: canary`, a canary Deployment) against
    stable by track."""
    if release.kind not in _COMPARED_BY_VERSION or release.previous_version is None:
        return BY_TRACK
    green = parse_version(release.version).label
    return Sides(canary_version=green, stable_version=release.previous_version)


def _looking_back(app: AppConfig, span_s: int) -> AppConfig:
    """`app` with a window of `span_s`: MetricsPort.trend spreads its points over the window."""
    metrics = app.metrics.model_copy(update={"window_s": span_s})
    return app.model_copy(update={"metrics": metrics})


def _judge_failed(verdict: JudgeResult, app: AppConfig, *, summary: str) -> ChecksFailed:
    """The judge's failure as the machine's ChecksFailed: the deciding metric's median against
    stable's median moved by the allowed effect."""
    blamed = verdict.deciding
    assert blamed is not None and blamed.canary_median is not None  # a FAIL has one, with data
    assert blamed.limit is not None
    return ChecksFailed(
        metric=f"the median {label(blamed.metric)} (statistical judge)",
        value=display(blamed.canary_median, blamed.metric) or 0.0,
        threshold=display(blamed.limit, blamed.metric) or 0.0,
        unit=unit(blamed.metric),
        failure_limit=app.metrics.failure_limit,
        summary=f"{summary} · {escape(verdict.reason)}: {escape(blamed.why)}",
    )


def _inconclusive_reason(verdict: JudgeResult) -> str:
    """Marginal or missing data: the verdict and what made it so, on one line."""
    doubtful = [m for m in verdict.metrics if m.outcome is not Outcome.PASS]
    lines = [verdict.reason, *(f"{label(m.metric)}: {m.why}" for m in doubtful)]
    return escape("; ".join(lines))


def _reading_of(answer: Future[dict[str, Reading | MetricsUnavailable]], app: str) -> Reading:
    found = answer.result()[app]
    if isinstance(found, MetricsUnavailable):
        raise found
    return found


def _limits(release: Release, app: AppConfig) -> MetricsConfig:
    """At 100 % stable serves nobody, so limits relative to stable have nothing to compare."""
    limits = app.metrics
    if desired_traffic(release).canary_weight < 100:
        return limits
    error_rate = limits.error_rate.model_copy(update={"max_above_stable": None})
    latency = limits.p99_latency_ms
    if latency is not None:
        latency = (
            None if latency.max is None else latency.model_copy(update={"max_above_stable": None})
        )
    return limits.model_copy(update={"error_rate": error_rate, "p99_latency_ms": latency})
