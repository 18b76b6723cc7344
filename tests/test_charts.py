"""Release charts: the chart data (bot.core.chart) and its PNG (bot.charts.render), decoded.

A release is driven through the real state machine (tests/releases.py) to its 5 % stage; its
chart is drawn from a synthetic Trend whose canary error rate climbs past 5 %. The PNG is
opened with Pillow: size, not blank, the limit, canary and stable drawn in their colours. Each
run writes the sample to build/sample-charts/ (see SAMPLE_DIR) for people to look at."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.application.apps_file import load_config
from bot.charts.render import CANARY, HEIGHT_PX, LIMIT, STABLE, WIDTH_PX, MatplotlibCharts
from bot.core.analysis import Metric, Trend
from bot.core.apps import AppConfig
from bot.core.chart import ALT_TEXT_MAX, Chart, chart_of, chart_span_s, plain
from bot.core.machine import CanaryReady, StageTimerElapsed
from tests.infra.png import distinct_colours, open_png, pixels_near
from tests.releases import MINUTE, Run, start

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "build" / "sample-charts"
POINTS = 40


def app_config(tmp_path: Path) -> AppConfig:
    path = tmp_path / "apps.yaml"
    path.write_text(
        """\
apps:
  shop-api:
    namespace: shop
    workload: shop-api
    slack_channel: C0DEPLOYS
    router: {provider: istio, virtual_service: shop-api, destination_rule: shop-api,
             host: shop-api}
    metrics: {p99_latency_ms: {max: 300, max_above_stable: 50}, qps: {min: 2}}
"""
    )
    return load_config(path).app("shop-api")


def at_five_percent() -> Run:
    run = start()
    run.accept(CanaryReady(), after=MINUTE)
    run.accept(StageTimerElapsed(), after=timedelta(hours=1))  # 5 % from here
    run.now += timedelta(minutes=30)
    return run


def climbing_errors() -> Trend:
    """Stable steady; the canary takes traffic from point 20 on, its errors climb from 30."""

    def canary_errors(index: int) -> float | None:
        if index < 20:
            return None
        return 0.004 if index < 30 else 0.004 + (index - 29) * 0.006

    return Trend(
        canary={
            Metric.ERROR_RATE: tuple(canary_errors(i) for i in range(POINTS)),
            Metric.P99_LATENCY: tuple(None if i < 20 else 130.0 for i in range(POINTS)),
            Metric.QPS: tuple(0.0 if i < 20 else 10.0 for i in range(POINTS)),
        },
        stable={
            Metric.ERROR_RATE: (0.003,) * POINTS,
            Metric.P99_LATENCY: (110.0,) * POINTS,
            Metric.QPS: (190.0,) * POINTS,
        },
    )


@pytest.fixture
def rollback_chart(tmp_path: Path) -> Chart:
    run = at_five_percent()
    span = chart_span_s(run.release, at=run.now, window_s=300, most_s=6 * 3600)
    return chart_of(
        run.release,
        app_config(tmp_path),
        climbing_errors(),
        at=run.now,
        span_s=span,
        verdict="shop-api v2.4.1 is rolling back automatically: error rate is 6.4 % against a "
        "threshold of 5 %",
        failed=True,
    )


def test_the_chart_spans_the_release_from_its_first_stage() -> None:
    run = at_five_percent()
    span = chart_span_s(run.release, at=run.now, window_s=300, most_s=6 * 3600)

    assert span == 300 + int((run.now - run.release.stage_starts[0]).total_seconds())
    assert chart_span_s(run.release, at=run.now, window_s=300, most_s=3600) == 3600


def test_the_chart_data_holds_limits_stages_and_the_rollback(rollback_chart: Chart) -> None:
    chart = rollback_chart

    assert len(chart.times) == POINTS and chart.times == tuple(sorted(chart.times))
    assert chart.canary[Metric.ERROR_RATE][-1] == pytest.approx(6.4)  # display units: %
    error_limits = chart.limits[Metric.ERROR_RATE]
    assert [limit.text for limit in error_limits] == ["max 5 %"]
    assert set(error_limits[0].values) == {5.0}
    latency = {limit.text: limit.values for limit in chart.limits[Metric.P99_LATENCY]}
    assert latency["max 300 ms"][0] == 300 and latency["stable + 50 ms"][0] == 160
    (floor,) = chart.limits[Metric.QPS]
    assert floor.floor and floor.text == "min 2 req/s"
    assert [mark.text for mark in chart.stage_marks] == ["0 %", "5 %"]
    assert chart.rollback_at == chart.times[-1]


def test_the_alt_text_says_the_verdict_and_the_numbers_in_words(rollback_chart: Chart) -> None:
    alt = rollback_chart.alt_text

    assert alt.startswith("Chart of shop-api v2.4.1, canary against stable over")
    assert "Verdict: shop-api v2.4.1 is rolling back automatically: error rate is 6.4 %" in alt
    assert "error rate: canary 6.4 %, stable 0.3 % (max 5 %)." in alt
    assert "Stages: 0 % at 10:01:00 UTC, 5 % at 11:01:00 UTC." in alt
    assert "Rolled back at 11:31:00 UTC." in alt
    assert len(alt) <= ALT_TEXT_MAX


def test_plain_drops_markup_and_the_opening_emoji() -> None:
    assert plain("✅ *Passed*: all checks passed\n• more") == "Passed: all checks passed"
    assert plain("<@U0ANA> &lt;5 % `x`") == "U0ANA <5 % x"


def test_the_png_is_a_phone_sized_image_with_the_limits_drawn(rollback_chart: Chart) -> None:
    png = MatplotlibCharts().render(rollback_chart)
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    (SAMPLE_DIR / "rollback.png").write_bytes(png)

    image = open_png(png)

    assert image.size == (WIDTH_PX, HEIGHT_PX) == (1200, 900)
    assert distinct_colours(image) > 50  # not blank
    assert pixels_near(image, LIMIT) > 2000  # limits, the rollback line, the title
    assert pixels_near(image, CANARY) > 1000
    assert pixels_near(image, STABLE) > 1000


def test_a_chart_without_limits_draws_no_limit_colour(tmp_path: Path) -> None:
    run = at_five_percent()
    app = app_config(tmp_path)
    calm = Trend(
        canary={metric: (0.0,) * POINTS for metric in Metric},
        stable={metric: (0.0,) * POINTS for metric in Metric},
    )
    chart = chart_of(run.release, app, calm, at=run.now, span_s=600, verdict="passed", failed=False)
    chart = replace(chart, limits={metric: () for metric in Metric})

    image = open_png(MatplotlibCharts().render(chart))

    assert pixels_near(image, LIMIT, tolerance=10) == 0  # no limit, no rollback, a green title
