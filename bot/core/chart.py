"""What a release's chart shows: canary against stable per metric on one time axis, the limits,
the stage changes and the rollback instant, and the alt text that says it in words.

Built by the metric checks (bot.application.checks) from a Trend over the release so far; drawn
by a ChartRendererPort (bot.charts, matplotlib); the PNG is uploaded by the Slack announcer
under a snapshot or an automatic-rollback alert. Pure data, in display units (error rate in %).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.core.analysis import Metric, Trend, amount, display, label, unit
from bot.core.apps import AppConfig
from bot.core.durations import format_duration
from bot.core.release import Release
from bot.core.text import number, percent

ALT_TEXT_MAX = 1000
"""Slack's limit on a file's alt text (files.getUploadURLExternal alt_txt)."""
CHARTED = (Metric.ERROR_RATE, Metric.P99_LATENCY, Metric.QPS)
"""The panels, top to bottom."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """A threshold as drawn: one value per time (a relative limit follows stable), display units."""

    text: str
    """E.g. "max 5 %" or "stable + 1 point"."""
    values: tuple[float | None, ...]
    floor: bool = False
    """A minimum (QPS) rather than a maximum."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    at: datetime
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    title: str
    times: tuple[datetime, ...]
    """When each point's interval ends, oldest first (UTC)."""
    canary: dict[Metric, tuple[float | None, ...]]
    stable: dict[Metric, tuple[float | None, ...]]
    limits: dict[Metric, tuple[Limit, ...]]
    stage_marks: tuple[Mark, ...]
    rollback_at: datetime | None
    failed: bool
    """The verdict drawn in the title: a failed (rolled back) or a passing check."""
    alt_text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChartImage:
    """A rendered chart, ready to upload."""

    png: bytes
    title: str
    alt_text: str
    filename: str


def chart_span_s(release: Release, *, at: datetime, window_s: int, most_s: int) -> int:
    """From the release's first stage (its start before then) to `at`, between one analysis
    window and `most_s`."""
    since = release.stage_starts[0] if release.stage_starts else release.started_at
    span = int((at - since).total_seconds()) + window_s  # the window before the first stage too
    return max(window_s, min(span, most_s))


def chart_of(
    release: Release,
    app: AppConfig,
    trend: Trend,
    *,
    at: datetime,
    span_s: int,
    verdict: str,
    failed: bool,
) -> Chart:
    """The chart of `trend` (evenly spaced points over `span_s` ending at `at`); `verdict` is
    the check's verdict in words, `failed` marks `at` as the rollback instant."""
    points = max(
        (len(values) for values in (*trend.canary.values(), *trend.stable.values())), default=0
    )
    step = timedelta(milliseconds=span_s * 1000 // max(points, 1))
    times = tuple(at.astimezone(UTC) - step * (points - 1 - index) for index in range(points))
    canary = {metric: _shown(trend.canary.get(metric, ()), metric, points) for metric in CHARTED}
    stable = {metric: _shown(trend.stable.get(metric, ()), metric, points) for metric in CHARTED}
    limits = _limits(app, stable, points)
    marks = tuple(
        Mark(at=started.astimezone(UTC), text=percent(release.plan.stages[index].weight))
        for index, started in enumerate(release.stage_starts)
        if not times or times[0] - step <= started <= at
    )
    rollback_at = at.astimezone(UTC) if failed else None
    outcome = "failed, rolling back" if failed else "passed"
    chart = Chart(
        title=f"{release.app} {release.version}: canary vs stable, {outcome}",
        times=times,
        canary=canary,
        stable=stable,
        limits=limits,
        stage_marks=marks,
        rollback_at=rollback_at,
        failed=failed,
        alt_text="",
    )
    return replace(chart, alt_text=_alt_text(release, chart, span_s=span_s, verdict=verdict))


def _shown(
    values: tuple[float | None, ...], metric: Metric, points: int
) -> tuple[float | None, ...]:
    padded = (*values, *([None] * (points - len(values))))
    return tuple(display(value, metric) for value in padded)


def _limits(
    app: AppConfig, stable: dict[Metric, tuple[float | None, ...]], points: int
) -> dict[Metric, tuple[Limit, ...]]:
    """The app's limits in display units; a relative one is stable's line plus its margin."""
    config = app.metrics
    latency = config.p99_latency_ms
    ceilings = {
        Metric.ERROR_RATE: (config.error_rate.max, config.error_rate.max_above_stable),
        Metric.P99_LATENCY: (latency.max, latency.max_above_stable) if latency else (None, None),
    }
    limits: dict[Metric, tuple[Limit, ...]] = {}
    for metric, (ceiling, above) in ceilings.items():
        drawn = []
        if ceiling is not None:
            shown = display(ceiling, metric)
            drawn.append(Limit(text=f"max {amount(ceiling, metric)}", values=(shown,) * points))
        if above is not None:
            margin = display(above, metric) or 0.0
            relative = tuple(None if value is None else value + margin for value in stable[metric])
            drawn.append(Limit(text=f"stable + {number(margin)} {unit(metric)}", values=relative))
        limits[metric] = tuple(drawn)
    qps = config.qps
    limits[Metric.QPS] = (
        (Limit(text=f"min {amount(qps.min, Metric.QPS)}", values=(qps.min,) * points, floor=True),)
        if qps
        else ()
    )
    return limits


def _alt_text(release: Release, chart: Chart, *, span_s: int, verdict: str) -> str:
    """The chart in words, verdict first: what a screen reader (or a failed image) says."""
    parts = [
        f"Chart of {release.app} {release.version}, canary against stable over "
        f"{format_duration(span_s)}. Verdict: {plain(verdict)}."
    ]
    for metric in CHARTED:
        now = f"{label(metric)}: canary {_latest(chart.canary[metric], metric)}, "
        now += f"stable {_latest(chart.stable[metric], metric)}"
        if chart.limits[metric]:
            now += f" ({', '.join(limit.text for limit in chart.limits[metric])})"
        parts.append(now + ".")
    if chart.stage_marks:
        changes = ", ".join(f"{mark.text} at {_clock(mark.at)}" for mark in chart.stage_marks)
        parts.append(f"Stages: {changes}.")
    if chart.rollback_at is not None:
        parts.append(f"Rolled back at {_clock(chart.rollback_at)}.")
    text = " ".join(parts)
    return text if len(text) <= ALT_TEXT_MAX else text[: ALT_TEXT_MAX - 1].rstrip() + "…"


def _latest(values: tuple[float | None, ...], metric: Metric) -> str:
    value = next((value for value in reversed(values) if value is not None), None)
    return "no data" if value is None else f"{number(value)} {unit(metric)}"


def _clock(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%H:%M:%S UTC")


_MARKUP = re.compile(r"[*_`]")
_LEADING_SYMBOLS = re.compile(r"^[^\w(]+")
"""An emoji or a mark opening the line (✅, ❌, 📊): the words say it."""
_TOKEN = re.compile(r"<[^|>]*\|([^>]*)>|<[@#!]([^>]*)>")


def plain(mrkdwn: str) -> str:
    """The first line of a Slack mrkdwn text without its markup (emoji codes stay)."""
    line = mrkdwn.strip().splitlines()[0] if mrkdwn.strip() else ""
    line = _TOKEN.sub(lambda match: match[1] or match[2], line)
    line = _LEADING_SYMBOLS.sub("", _MARKUP.sub("", line))
    return line.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()
