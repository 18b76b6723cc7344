"""Draws a release's chart (bot.core.chart.Chart) as a PNG: the ChartRendererPort the metric
checks (bot.application.checks) render with before the Slack announcer uploads the image.

Decisions:
- matplotlib's object API on the Agg canvas (bot/charts/drawing.py): a Figure per chart and no
  pyplot, so no global state is shared between threads or charts. It is imported at the first
  chart, so the bot's start-up (and a replacement replica's) does not wait for matplotlib.
- Made for a phone: 1200 x 900 px, three stacked panels (error rate, p99 latency, QPS) on one
  time axis, fonts of 20 px and more, a legend once at the top.
- Dark mode and light mode alike: the image brings its own dark slate background (an opaque
  card reads the same on Slack's white and on its dark theme), light text, canary in orange
  (solid, thick) against stable in blue (dashed): told apart by colour and by line style.
- Limits in red (dotted), stage changes as grey vertical lines labelled with their traffic,
  the rollback instant as a red vertical line.
"""

from __future__ import annotations

from bot.core.chart import Chart
from bot.core.errors import PermanentError

WIDTH_PX = 1200
HEIGHT_PX = 900
DPI = 100

BACKGROUND = "#1e2530"
PANEL = "#262f3d"
TEXT = "#e8ecf1"
GRID = "#3b4658"
CANARY = "#ff9f1c"
STABLE = "#4cc9f0"
LIMIT = "#ff4d6d"
STAGE = "#9aa5b8"
PASSED = "#52d68a"

LABEL_FLIP_AT = 0.88
"""A stage label this far along the time axis goes left of its line."""
SECONDS_SHOWN_UP_TO_S = 900
"""Time labels show seconds on charts up to this long."""

TITLE_PT = 24
LABEL_PT = 20
TICK_PT = 17


class ChartRenderingFailed(PermanentError):
    """matplotlib could not draw the chart; the message goes out without it."""


class MatplotlibCharts:
    """Renders charts to PNG bytes (ChartRendererPort)."""

    def render(self, chart: Chart) -> bytes:
        from bot.charts.drawing import png  # matplotlib loads at the first chart, not at start-up

        try:
            return png(chart)
        except (ValueError, RuntimeError, OverflowError, OSError) as error:
            raise ChartRenderingFailed(f"the chart could not be drawn: {error}") from error
