"""The drawing behind bot.charts.render.MatplotlibCharts: one chart on matplotlib's Agg canvas
(a Figure per chart, no pyplot, so no global state). Imported at the first chart, so the bot's
start-up does not wait for matplotlib."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import datetime

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.charts.render import (
    BACKGROUND,
    CANARY,
    DPI,
    GRID,
    HEIGHT_PX,
    LABEL_FLIP_AT,
    LABEL_PT,
    LIMIT,
    PANEL,
    PASSED,
    SECONDS_SHOWN_UP_TO_S,
    STABLE,
    STAGE,
    TEXT,
    TICK_PT,
    TITLE_PT,
    WIDTH_PX,
)
from bot.core.analysis import Metric, label, unit
from bot.core.chart import CHARTED, Chart


def png(chart: Chart) -> bytes:
    """The chart as PNG bytes, WIDTH_PX x HEIGHT_PX."""
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor=BACKGROUND)
    FigureCanvasAgg(figure)
    panels = figure.subplots(len(CHARTED), 1, sharex=True)
    for axes, metric in zip(panels, CHARTED, strict=True):
        _panel(axes, chart, metric)
    _time_axis(panels[-1], chart)
    figure.suptitle(
        chart.title, color=LIMIT if chart.failed else PASSED, fontsize=TITLE_PT, fontweight="bold"
    )
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.94),
        ncol=len(labels) or 1,
        frameon=False,
        fontsize=LABEL_PT,
        labelcolor=TEXT,
    )
    figure.subplots_adjust(left=0.13, right=0.97, top=0.86, bottom=0.08, hspace=0.28)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, facecolor=BACKGROUND)
    return out.getvalue()


def _panel(axes: Axes, chart: Chart, metric: Metric) -> None:
    axes.set_facecolor(PANEL)
    times = mdates.date2num(list(chart.times))
    axes.plot(times, _gaps(chart.stable[metric]), color=STABLE, lw=3, ls="--", label="stable")
    axes.plot(times, _gaps(chart.canary[metric]), color=CANARY, lw=4, label="canary")
    for limit in chart.limits.get(metric, ()):
        axes.plot(times, _gaps(limit.values), color=LIMIT, lw=2.5, ls=":", label="_limit")
        first = next((i for i, value in enumerate(limit.values) if value is not None), None)
        if first is not None and first < len(times):  # labelled at its left end: news is right
            axes.annotate(
                limit.text,
                (times[first], limit.values[first]),
                xytext=(6, 6),
                textcoords="offset points",
                ha="left",
                color=LIMIT,
                fontsize=TICK_PT,
            )
    for mark in chart.stage_marks:
        text = mark.text if metric is CHARTED[0] else None
        _vertical(axes, mark.at, STAGE, text, left=_near_the_end(chart, mark.at))
    if chart.rollback_at is not None:
        text = "rollback" if metric is CHARTED[0] else None
        _vertical(axes, chart.rollback_at, LIMIT, text, left=True, solid=True)
    axes.set_ylabel(f"{label(metric)}\n{unit(metric)}", color=TEXT, fontsize=LABEL_PT)
    axes.set_ylim(bottom=0)
    axes.tick_params(colors=TEXT, labelsize=TICK_PT)
    axes.grid(color=GRID, lw=1)
    for spine in axes.spines.values():
        spine.set_color(GRID)


def _near_the_end(chart: Chart, at: datetime) -> bool:
    """Whether a label right of `at` would run off the chart."""
    if len(chart.times) < 2:
        return False
    first, last = chart.times[0], chart.times[-1]
    return (at - first) / (last - first) > LABEL_FLIP_AT


def _vertical(
    axes: Axes,
    at: datetime,
    color: str,
    text: str | None,
    *,
    left: bool = False,
    solid: bool = False,
) -> None:
    """A vertical line at `at`, its label at the top, right of it (`left`: left of it)."""
    axes.axvline(mdates.date2num(at), color=color, lw=2.5, ls="-" if solid else "--")
    if text:
        axes.annotate(
            text,
            (mdates.date2num(at), 1),
            xycoords=("data", "axes fraction"),
            xytext=(-4 if left else 4, -4),
            textcoords="offset points",
            va="top",
            ha="right" if left else "left",
            color=color,
            fontsize=TICK_PT,
            fontweight="bold",
        )


def _time_axis(axes: Axes, chart: Chart) -> None:
    span_s = (chart.times[-1] - chart.times[0]).total_seconds() if chart.times else 0
    axes.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=6))
    axes.xaxis.set_major_formatter(
        mdates.DateFormatter("%H:%M" if span_s > SECONDS_SHOWN_UP_TO_S else "%H:%M:%S")
    )
    axes.set_xlabel("time (UTC)", color=TEXT, fontsize=LABEL_PT)


def _gaps(values: Sequence[float | None]) -> list[float]:
    """None as NaN, which matplotlib leaves as a gap in the line."""
    return [math.nan if value is None else value for value in values]
