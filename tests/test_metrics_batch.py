"""Batched metric checks (PrometheusMetrics.read_many, CanaryChecks.prefetch) against the real
Prometheus scraping the test exporter: the readings of many apps asked in one query per metric
are exactly the ones each app's own queries give, so every judgement and every check's event is
the same, for both presets; and the queries do not grow with the number of apps."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.application.checks import CanaryChecks, sides_of
from bot.core.analysis import BY_TRACK, Sides, judge
from bot.core.apps import AppConfig, AuthorizationConfig, ChannelRef, MetricsConfig, ReplicasRouter
from bot.core.machine import CanaryReady
from bot.core.plan import DEFAULT_PLAN
from bot.core.release import Release, ReleaseKind
from bot.metrics import prometheus as prometheus_adapter
from bot.metrics.prometheus import PrometheusMetrics
from tests.infra.exporter import MetricsExporter
from tests.infra.prometheus_server import PrometheusServer
from tests.releases import start

WINDOW_S = 10
EU, US = "batch-eu", "batch-us"
# (app name, namespace, workload, stable qps, canary qps or None, canary error ratio)
APPS = (
    ("cart", EU, "cart", 80, 20, 0.10),  # a bad canary
    ("shop", EU, "shop", 60, 15, 0.0),  # a good one
    ("shop-us", US, "shop", 40, 10, 0.02),  # the same workload name in another namespace
    ("lone", US, "lone", 50, None, 0.0),  # a canary that never served: no series at all
)
# Blue-green: green's pods copy blue's labels (track: stable too), only the version differs.
# (app name, namespace, workload, blue qps, green qps, green error ratio)
BLUE_GREEN = (("ledger", EU, "ledger", 60, 30, 0.2), ("vault", US, "vault", 40, 20, 0.0))
GREEN_AGAINST_BLUE = Sides(canary_version="v7", stable_version="v1")


def app_config(name: str, namespace: str, workload: str, provider: str, url: str) -> AppConfig:
    metrics = MetricsConfig.model_validate(
        {"provider": provider, "window": f"{WINDOW_S}s", "prometheus_url": url, "min_requests": 5}
    )
    return AppConfig(
        name=name, namespace=namespace, workload=workload, container=None,
        router=ReplicasRouter(provider="replicas"), slack_channel=ChannelRef("C0DEPLOYS"),
        plan=DEFAULT_PLAN, metrics=metrics, alert_mention="", authorization=AuthorizationConfig(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def serving(prometheus_server: PrometheusServer, metrics_exporter: MetricsExporter) -> datetime:
    """Every app's traffic, and Prometheus holding a full window of it; the time to read at."""
    metrics_exporter.reset()
    for _, namespace, workload, stable_qps, canary_qps, errors in APPS:
        metrics_exporter.set_traffic(
            namespace=namespace, app=workload, version="v1", track="stable", qps=stable_qps
        )
        if canary_qps is not None:
            metrics_exporter.set_traffic(
                namespace=namespace, app=workload, version="v2", track="canary", qps=canary_qps,
                error_ratio=errors, p99_s=0.2,
            )  # fmt: skip
    for _, namespace, workload, blue_qps, green_qps, errors in BLUE_GREEN:
        for version, qps, error_ratio in (("v1", blue_qps, 0.0), ("v7", green_qps, errors)):
            metrics_exporter.set_traffic(
                namespace=namespace, app=workload, version=version, track="stable", qps=qps,
                error_ratio=error_ratio,
            )  # fmt: skip
    for namespace in (EU, US):
        selector = f'http_requests_total{{namespace="{namespace}",track="stable"}}'
        prometheus_server.wait_for_samples(selector, window_s=WINDOW_S)
    return datetime.now(UTC)


class CountedQueries:
    """Counts the instant queries the adapter sends (a check's; a snapshot's trend, every
    snapshot interval, is a range query of its own release)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = prometheus_adapter._Client.get

        def counted(client: Any, path: str, **kwargs: Any) -> Any:
            self.count += path == "/api/v1/query"
            return original(client, path, **kwargs)

        monkeypatch.setattr(prometheus_adapter._Client, "get", counted)


@pytest.mark.parametrize("provider", ["generic", "istio"])
def test_a_batched_reading_is_each_apps_own_reading(
    provider: str,
    serving: datetime,
    prometheus_server: PrometheusServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apps = [app_config(*row[:3], provider, prometheus_server.url) for row in APPS]
    metrics = PrometheusMetrics(default_url=None)
    queries = CountedQueries(monkeypatch)

    alone = {app.name: metrics.read(app, at=serving) for app in apps}
    assert queries.count == 3 * len(apps)
    together = metrics.read_many([(app, BY_TRACK) for app in apps], at=serving)
    assert queries.count == 3 * len(apps) + 3  # one query per metric for all of them

    assert together == alone
    for app in apps:
        assert judge(together[app.name], app.metrics, public_traffic=True) == judge(  # type: ignore[arg-type]
            alone[app.name], app.metrics, public_traffic=True
        )
    cart = alone["cart"]
    assert cart.canary.error_rate is not None and cart.canary.error_rate > 0.05  # real data
    assert alone["lone"].canary.requests is None and alone["lone"].stable.requests


def test_prefetched_checks_decide_what_each_release_own_check_decides(
    serving: datetime, prometheus_server: PrometheusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    apps = {row[0]: app_config(*row[:3], "generic", prometheus_server.url) for row in APPS}
    releases = [running(name) for name in apps]
    checks = CanaryChecks(metrics=PrometheusMetrics(default_url=None))
    queries = CountedQueries(monkeypatch)
    with ThreadPoolExecutor(max_workers=2) as pool:
        prefetched = checks.prefetch(
            [(release, apps[release.app]) for release in releases], now=serving,
            submit=pool.submit,
        )  # fmt: skip
        batched = {
            release.app: checks.run(
                release, apps[release.app], now=serving, reading_of=prefetched[release.id]
            )
            for release in releases
        }
    assert queries.count == 3
    own = {release.app: checks.run(release, apps[release.app], now=serving) for release in releases}
    assert batched == own
    assert type(own["cart"]).__name__ == "ChecksFailed"
    assert type(own["shop"]).__name__ == "ChecksPassed"


def test_apps_of_different_prometheus_or_windows_are_not_read_together(
    prometheus_server: PrometheusServer,
) -> None:
    metrics = PrometheusMetrics(default_url=None)
    base = app_config("cart", EU, "cart", "generic", prometheus_server.url)
    other = app_config("shop", EU, "shop", "generic", "http://127.0.0.1:1")
    assert metrics.batch_of(base) != metrics.batch_of(other)
    with pytest.raises(ValueError, match="one batch"):
        metrics.read_many([(base, BY_TRACK), (other, BY_TRACK)], at=datetime.now(UTC))
    assert metrics.batch_of(base) != metrics.batch_of(base, GREEN_AGAINST_BLUE)


@pytest.mark.parametrize("provider", ["generic", "istio"])
def test_blue_green_compares_green_with_blue_by_version_batched_or_not(
    provider: str,
    serving: datetime,
    prometheus_server: PrometheusServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apps = [app_config(*row[:3], provider, prometheus_server.url) for row in BLUE_GREEN]
    metrics = PrometheusMetrics(default_url=None)
    queries = CountedQueries(monkeypatch)

    alone = {app.name: metrics.read(app, at=serving, sides=GREEN_AGAINST_BLUE) for app in apps}
    together = metrics.read_many([(app, GREEN_AGAINST_BLUE) for app in apps], at=serving)
    assert queries.count == 3 * len(apps) + 3
    assert together == alone

    ledger = alone["ledger"]
    assert ledger.canary.error_rate == pytest.approx(0.2, abs=0.05)  # green's own errors
    assert ledger.stable.error_rate == 0.0
    assert ledger.canary.qps == pytest.approx(30, rel=0.25)
    assert ledger.stable.qps == pytest.approx(60, rel=0.25)
    by_track = metrics.read(apps[0], at=serving)  # what the track queries saw: no green at all
    assert by_track.canary.requests is None


def test_a_blue_green_release_is_checked_green_against_blue_by_version() -> None:
    release = start().release.model_copy(
        update={"kind": ReleaseKind.BLUE_GREEN, "version": "v7", "previous_version": "v1"}
    )
    assert sides_of(release) == GREEN_AGAINST_BLUE
    digest = "registry.local/ledger@sha256:" + "ab" * 32
    pinned = release.model_copy(update={"version": digest})
    assert sides_of(pinned).canary_version == "sha256-abababababab"  # the pods' label value
    for kind in (ReleaseKind.CANARY, ReleaseKind.HYBRID):  # green carries track: canary there
        assert sides_of(release.model_copy(update={"kind": kind})) == BY_TRACK


def running(app: str) -> Release:
    run = start()
    run.accept(CanaryReady())
    return run.release.evolve(id=f"rel-{app}", app=app, analysis_enabled=True)
