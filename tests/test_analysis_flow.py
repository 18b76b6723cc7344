"""Metric analysis end to end: a real `release-bot serve` checks its canary against the real
Prometheus, which scrapes the tests' exporter every second; the traffic router is Istio on the
real apiserver. Checks run every 2 s over a 4 s window, stages last 5 s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bot.charts.render import HEIGHT_PX, LIMIT, WIDTH_PX
from bot.core.release import Phase
from bot.kube.routers import TrafficSplit
from tests.infra.exporter import MetricsExporter
from tests.infra.png import distinct_colours, open_png, pixels_near
from tests.infra.processes import wait_until
from tests.infra.prometheus_server import PrometheusServer
from tests.infra.release_world import APP, STABLE_IMAGE, World
from tests.infra.slack_requests import RELEASES

INTERVAL_S = 2
WINDOW_S = 4
PLAN = "    - {weight: 10, duration: 5s}\n    - {weight: 50, duration: 5s}\n"
METRICS = (
    f"{{provider: generic, interval: {INTERVAL_S}s, window: {WINDOW_S}s, min_requests: 10, "
    "failure_limit: 0, snapshot_interval: 1m}"
)


@pytest.fixture
def analysed(
    world_for: Any, prometheus_server: PrometheusServer, clean_exporter: MetricsExporter
) -> Any:
    def build() -> tuple[World, MetricsExporter]:
        world: World = world_for(
            "istio", PLAN, metrics=METRICS, prometheus_url=prometheus_server.url
        )
        return world, clean_exporter

    return build


def serve_healthy(exporter: MetricsExporter, prometheus: PrometheusServer, namespace: str) -> None:
    """Both tracks serving, and Prometheus holding a full window of them before the release."""
    serve(exporter, namespace)
    selector = f'http_requests_total{{namespace="{namespace}",code="200"}}'
    prometheus.wait_for_samples(selector, window_s=WINDOW_S)


def serve(exporter: MetricsExporter, namespace: str, *, canary_errors: float = 0.0) -> None:
    exporter.set_traffic(
        app=APP, version="v1", track="stable", qps=60, p99_s=0.1, namespace=namespace
    )
    exporter.set_traffic(
        app=APP,
        version="v2",
        track="canary",
        qps=20,
        error_ratio=canary_errors,
        p99_s=0.12,
        namespace=namespace,
    )


JUDGE = (
    "judge: {kind: mann-whitney, lookback: 12s, samples: 6, min_samples: 4,"
    " metrics: {error_rate: {allowed_effect: 0.005}}}"
)
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "build" / "sample-charts"


def channel_alerts(world: World) -> list[str]:
    return [m["text"] for m in world.slack.messages(RELEASES.id)[1:]]


def charts(world: World, *, thread_ts: str | None) -> list[dict[str, Any]]:
    """The charts shared into the thread `thread_ts` (None: into the channel itself), checked
    to be real PNGs of the renderer's size, not blank, with a limit in the limit colour."""
    shared = [
        file
        for file in world.slack.shared_files()
        if file["channel"] == RELEASES.id and file["thread_ts"] == thread_ts
    ]
    for file in shared:
        image = open_png(file["content"])
        assert image.size == (WIDTH_PX, HEIGHT_PX)
        assert distinct_colours(image) > 50
        assert pixels_near(image, LIMIT) > 500
        assert file["name"].endswith(".png") and file["alt_txt"].startswith("Chart of shop-api v2")
    return shared


def test_a_healthy_canary_advances_through_its_timed_stages(
    analysed: Any, prometheus_server: PrometheusServer
) -> None:
    world, exporter = analysed()
    serve_healthy(exporter, prometheus_server, world.cluster.namespace)

    world.command(f"canary {APP} v2")
    done = world.wait_for(Phase.SUCCEEDED)

    assert world.image(APP) == "registry.example/shop/api:v2"
    actions = [entry.action for entry in world.store.history(APP, limit=200)]
    assert actions.count("ChecksPassed") >= 3
    assert "ChecksFailed" not in actions and "ChecksInconclusive" not in actions
    snapshots = [text for text in world.thread_texts() if text.startswith("📊")]
    assert len(snapshots) >= 2  # one per public stage at least
    assert all("canary" in text and "stable" in text for text in snapshots)
    assert done.latest_metrics and "error rate" in done.latest_metrics.lower()
    assert channel_alerts(world) == []
    wait_until(
        lambda: len(charts(world, thread_ts=done.thread_ts)) >= len(snapshots),
        timeout_s=10,
        what="a chart under every snapshot",
    )
    shared = charts(world, thread_ts=done.thread_ts)
    assert all("Verdict: Passed" in file["alt_txt"] for file in shared)
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    (SAMPLE_DIR / "healthy-snapshot.png").write_bytes(shared[-1]["content"])


def test_a_canary_with_10_percent_errors_is_rolled_back_and_the_channel_alerted(
    analysed: Any, prometheus_server: PrometheusServer
) -> None:
    world, exporter = analysed()
    namespace = world.cluster.namespace
    serve_healthy(exporter, prometheus_server, namespace)
    world.command(f"canary {APP} v2")
    wait_until(
        lambda: world.release().phase is Phase.RUNNING and world.release().checks_passed >= 1,
        timeout_s=30,
        what="a first passing check",
    )

    serve(exporter, namespace, canary_errors=0.10)
    errors = f'sum(http_requests_total{{namespace="{namespace}",track="canary",code=~"5.."}})'
    client = prometheus_server.client()
    first_bad = time.monotonic() + wait_until(
        lambda: bool(client.custom_query(errors)),
        timeout_s=10,
        what="canary errors",
        interval_s=0.05,
    )
    back_on_stable = alerted = None
    deadline = first_bad + 30
    while (back_on_stable is None or alerted is None) and time.monotonic() < deadline:
        now = time.monotonic()
        if back_on_stable is None and world.split() == TrafficSplit(100, 0, header_routed=False):
            back_on_stable = now - first_bad
        if alerted is None and channel_alerts(world):
            alerted = now - first_bad
        time.sleep(0.05)
    print(
        f"first bad sample in Prometheus -> stable 100 %: {back_on_stable:.2f} s, "
        f"-> channel alert: {alerted:.2f} s (check interval {INTERVAL_S} s)"
    )
    assert back_on_stable is not None and back_on_stable <= 2 * INTERVAL_S + 1
    assert alerted is not None and alerted <= 2 * INTERVAL_S + 2

    done = world.wait_for(Phase.ROLLED_BACK)
    assert world.image(APP) == STABLE_IMAGE
    assert world.image("shop-api-canary") is None
    alert = channel_alerts(world)[0]
    assert "<!here>" in alert
    assert "error rate is" in alert and "against a threshold of 5 %" in alert
    assert "stage 1/3 (10 %)" in alert
    assert done.outcome_reason and done.outcome_reason.startswith("checks failed: error rate is")
    wait_until(lambda: charts(world, thread_ts=None), timeout_s=10, what="the alert's chart")
    (chart,) = charts(world, thread_ts=None)
    assert "Verdict:" in chart["alt_txt"] and "is rolling back automatically" in chart["alt_txt"]
    assert "Rolled back at" in chart["alt_txt"]
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    (SAMPLE_DIR / "rollback-alert.png").write_bytes(chart["content"])


def test_the_judge_rolls_back_a_canary_whose_errors_moved_but_stay_under_the_threshold(
    world_for: Any, prometheus_server: PrometheusServer, clean_exporter: MetricsExporter
) -> None:
    metrics = METRICS[:-1] + ", " + JUDGE + "}"
    world: World = world_for("istio", PLAN, metrics=metrics, prometheus_url=prometheus_server.url)
    namespace = world.cluster.namespace
    serve(clean_exporter, namespace, canary_errors=0.02)  # 2 %: under the 5 % threshold
    selector = f'http_requests_total{{namespace="{namespace}",code="500"}}'
    prometheus_server.wait_for_samples(selector, window_s=12)

    world.command(f"canary {APP} v2")
    done = world.wait_for(Phase.ROLLED_BACK)

    actions = [entry.action for entry in world.store.history(APP, limit=200)]
    assert "ChecksFailed" in actions and "ChecksPassed" not in actions
    assert done.outcome_reason is not None
    assert "the median error rate (statistical judge) is 2 %" in done.outcome_reason
    assert "against a threshold of 0.5 %" in done.outcome_reason
    assert done.latest_metrics is not None
    assert "error rate 2 % vs 0 %" in done.latest_metrics  # the thresholds' view: it passed
    assert "statistical judge: fail" in done.latest_metrics
    assert "significant at 95 % confidence" in done.latest_metrics
    assert "moved up by 2 points, more than the 0.5 points allowed" in done.latest_metrics
    assert world.image(APP) == STABLE_IMAGE
    (alert,) = channel_alerts(world)
    assert "statistical judge" in alert


def test_the_judge_passes_a_canary_like_stable_and_explains_it_in_the_snapshot(
    world_for: Any, prometheus_server: PrometheusServer, clean_exporter: MetricsExporter
) -> None:
    metrics = METRICS[:-1] + ", " + JUDGE + "}"
    world: World = world_for("istio", PLAN, metrics=metrics, prometheus_url=prometheus_server.url)
    namespace = world.cluster.namespace
    serve(clean_exporter, namespace)
    prometheus_server.wait_for_samples(
        f'http_requests_total{{namespace="{namespace}",code="200"}}', window_s=12
    )

    world.command(f"canary {APP} v2")
    world.wait_for(Phase.SUCCEEDED)

    snapshots = [text for text in world.thread_texts() if text.startswith("📊")]
    judged = [text for text in snapshots if "🧮 statistical judge: pass, score 100" in text]
    assert judged, snapshots
    assert "• error rate: canary median 0 % vs stable 0 %" in judged[0]
    assert "passes: no harmful move beyond the 0.5 points allowed" in judged[0]


def test_no_canary_traffic_is_inconclusive_pauses_and_never_promotes(analysed: Any) -> None:
    world, exporter = analysed()
    exporter.set_traffic(
        app=APP, version="v1", track="stable", qps=60, namespace=world.cluster.namespace
    )

    world.command(f"canary {APP} v2")
    paused = world.wait_for(Phase.PAUSED)
    assert paused.pause is not None and "canary requests" in paused.pause.reason
    time.sleep(3 * INTERVAL_S)
    still = world.release()
    assert (still.phase, still.stage_index) == (Phase.PAUSED, 0)
    assert world.image(APP) == STABLE_IMAGE
    assert any("paused itself" in text for text in channel_alerts(world))


def test_prometheus_down_pauses_with_the_reason_and_the_release_resumes_when_it_is_back(
    analysed: Any, prometheus_server: PrometheusServer
) -> None:
    world, exporter = analysed()
    serve_healthy(exporter, prometheus_server, world.cluster.namespace)
    world.command(f"canary {APP} v2")
    wait_until(
        lambda: world.release().checks_passed >= 1, timeout_s=30, what="a first passing check"
    )

    prometheus_server.stop()
    try:
        paused = world.wait_for(Phase.PAUSED)
        assert paused.pause is not None and "Prometheus" in paused.pause.reason
        time.sleep(2 * INTERVAL_S)
        assert world.release().phase is Phase.PAUSED
        assert world.image(APP) == STABLE_IMAGE
    finally:
        prometheus_server.start()

    world.wait_for(Phase.SUCCEEDED)
    assert world.image(APP) == "registry.example/shop/api:v2"
    assert any("conclusive again" in text for text in world.thread_texts())


def test_a_chart_that_cannot_be_uploaded_leaves_the_snapshots_and_the_release_on_time(
    analysed: Any, prometheus_server: PrometheusServer
) -> None:
    world, exporter = analysed()
    serve_healthy(exporter, prometheus_server, world.cluster.namespace)
    world.slack.fail_next("files.completeUploadExternal", error="not_in_channel", times=50)

    started = time.monotonic()
    world.command(f"canary {APP} v2")
    done = world.wait_for(Phase.SUCCEEDED)
    took_s = time.monotonic() - started

    snapshots = [text for text in world.thread_texts() if text.startswith("📊")]
    assert len(snapshots) >= 2
    assert world.slack.shared_files() == []
    assert len(world.slack.calls("files.completeUploadExternal")) >= len(snapshots)
    print(f"release with every chart upload refused: {took_s:.1f} s (two 5 s stages)")
    assert took_s < 2 * 5 + 10  # the stages' time, plus the canary coming up
    assert done.outcome_reason is not None
