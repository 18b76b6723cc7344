"""The Prometheus the tests use is Debian's prometheus, scraping an exporter the tests steer.

Run by pytest. Timings are logged by tests.infra.prometheus_server (start) and by this module
(how long until a rate window is full): `pytest --log-cli-level=INFO` shows them.
"""

from __future__ import annotations

import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_client.parser import text_string_to_metric_families

from tests.infra.exporter import MetricsExporter
from tests.infra.prometheus_server import EXPORTER_JOB, PrometheusServer

NAMESPACE = "shop"
APP = "shop-api"


@dataclass(frozen=True)
class Traffic:
    track: str
    version: str
    qps: float
    error_ratio: float
    p99_s: float

    def start(self, exporter: MetricsExporter) -> None:
        exporter.set_traffic(
            namespace=NAMESPACE, app=APP, track=self.track, version=self.version,
            qps=self.qps, error_ratio=self.error_ratio, p99_s=self.p99_s,
        )  # fmt: skip


STABLE = Traffic(track="stable", version="v2.4.0", qps=360, error_ratio=0.0, p99_s=0.12)
CANARY = Traffic(track="canary", version="v2.4.1", qps=40, error_ratio=0.10, p99_s=0.30)
WINDOW_S = 5
APP_SELECTOR = f'namespace="{NAMESPACE}",app="{APP}"'
ISTIO_SELECTOR = (
    f'reporter="destination",destination_workload_namespace="{NAMESPACE}",destination_app="{APP}"'
)
# The exporter's counters grow exactly with its clock, but Prometheus stamps a sample when the
# scrape starts and the exporter reads its clock a few ms later; that jitter over the ~5 s a
# window spans stays under 1 % (measured: 0.025 % at worst on an idle machine).
QPS_TOLERANCE = 0.01
# Error and total counters come from the same read and share their sample timestamps, so window
# edges and extrapolation cancel in the ratio: only float rounding is left.
RATIO_TOLERANCE = 1e-6
# All buckets come from the same read too, and latencies are uniform across p99's bucket, which
# is exactly what histogram_quantile's linear interpolation assumes: only float rounding is left.
P99_TOLERANCE = 1e-6
log = logging.getLogger(__name__)


def values_by(prometheus: PrometheusConnect, query: str, label: str) -> dict[str, float]:
    return {
        series["metric"][label]: float(series["value"][1])
        for series in prometheus.custom_query(query)
    }


def single_value(prometheus: PrometheusConnect, query: str, *, at: float | None = None) -> float:
    params = None if at is None else {"time": at}
    [series] = prometheus.custom_query(query, params=params)
    return float(series["value"][1])


def assert_close(
    measured: dict[str, float], expected: dict[str, float], *, tolerance: float
) -> None:
    assert measured.keys() == expected.keys(), (measured, expected)
    for key, value in expected.items():
        assert math.isclose(measured[key], value, rel_tol=tolerance, abs_tol=tolerance), (
            key,
            measured,
        )


def error_ratio_query(metric: str, selector: str, code_label: str, by: str) -> str:
    """Share of 5xx per `by`; `or ... * 0` gives 0 where no 5xx series exists yet."""
    errors = f'sum by ({by}) (rate({metric}{{{selector},{code_label}=~"5.."}}[{WINDOW_S}s]))'
    total = f"sum by ({by}) (rate({metric}{{{selector}}}[{WINDOW_S}s]))"
    return f"({errors} / {total}) or ({total} * 0)"


@pytest.fixture(scope="module")
def steady_traffic(
    metrics_exporter: MetricsExporter, prometheus_server: PrometheusServer
) -> Iterator[None]:
    """Stable and canary serve steadily until Prometheus holds a full rate window of both."""
    metrics_exporter.reset()
    STABLE.start(metrics_exporter)
    CANARY.start(metrics_exporter)
    waited_s = prometheus_server.wait_for_samples(
        f"http_requests_total{{{APP_SELECTOR}}}", window_s=WINDOW_S
    )
    log.info("a full %d s rate window of fresh series after %.2f s", WINDOW_S, waited_s)
    yield
    metrics_exporter.reset()


@pytest.mark.usefixtures("steady_traffic")
def test_app_metrics_give_the_configured_rate_error_ratio_and_p99(
    prometheus_server: PrometheusServer,
) -> None:
    prometheus = prometheus_server.client()
    requests = f"http_requests_total{{{APP_SELECTOR}}}"
    rates = values_by(prometheus, f"sum by (version) (rate({requests}[{WINDOW_S}s]))", "version")
    assert_close(
        rates, {STABLE.version: STABLE.qps, CANARY.version: CANARY.qps}, tolerance=QPS_TOLERANCE
    )

    ratios = values_by(
        prometheus, error_ratio_query("http_requests_total", APP_SELECTOR, "code", "track"), "track"
    )
    assert_close(ratios, {"stable": 0.0, "canary": CANARY.error_ratio}, tolerance=RATIO_TOLERANCE)
    # As with a real app, a track that never failed has no 5xx series at all.
    five_xx_series = f'count by (track) (http_requests_total{{{APP_SELECTOR},code=~"5.."}})'
    assert values_by(prometheus, five_xx_series, "track") == {"canary": 1}

    buckets = f"rate(http_request_duration_seconds_bucket{{{APP_SELECTOR}}}[{WINDOW_S}s])"
    p99 = values_by(
        prometheus, f"histogram_quantile(0.99, sum by (track, le) ({buckets}))", "track"
    )
    assert_close(p99, {"stable": STABLE.p99_s, "canary": CANARY.p99_s}, tolerance=P99_TOLERANCE)


@pytest.mark.usefixtures("steady_traffic")
def test_istio_metrics_give_the_same_per_deployment(prometheus_server: PrometheusServer) -> None:
    prometheus = prometheus_server.client()
    workload = "destination_workload"
    rates = values_by(
        prometheus,
        f"sum by ({workload}) (rate(istio_requests_total{{{ISTIO_SELECTOR}}}[{WINDOW_S}s]))",
        workload,
    )
    assert_close(rates, {APP: STABLE.qps, f"{APP}-canary": CANARY.qps}, tolerance=QPS_TOLERANCE)

    ratio_query = error_ratio_query(
        "istio_requests_total", ISTIO_SELECTOR, "response_code", workload
    )
    ratios = values_by(prometheus, ratio_query, workload)
    assert_close(ratios, {APP: 0.0, f"{APP}-canary": CANARY.error_ratio}, tolerance=RATIO_TOLERANCE)

    buckets = f"rate(istio_request_duration_milliseconds_bucket{{{ISTIO_SELECTOR}}}[{WINDOW_S}s])"
    p99_ms = values_by(
        prometheus, f"histogram_quantile(0.99, sum by ({workload}, le) ({buckets}))", workload
    )
    expected_ms = {APP: STABLE.p99_s * 1000, f"{APP}-canary": CANARY.p99_s * 1000}
    assert_close(p99_ms, expected_ms, tolerance=P99_TOLERANCE)

    version_query = f"count by (destination_version) (istio_requests_total{{{ISTIO_SELECTOR}}})"
    versions = values_by(prometheus, version_query, "destination_version")
    assert versions == {STABLE.version: 1, CANARY.version: 2}  # the canary answers 200 and 500


@pytest.fixture
def own_exporter() -> Iterator[MetricsExporter]:
    """An exporter of its own, so these checks leave the session's traffic alone."""
    exporter = MetricsExporter().start()
    yield exporter
    exporter.stop()


def exporter_samples(exporter: MetricsExporter, name: str, track: str) -> dict[str, float]:
    """The exporter's own /metrics, read over HTTP: `name` samples of one track, by status code."""
    with urllib.request.urlopen(exporter.url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.labels["code"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("track") == track
    }


def assert_canary_serving(exporter: MetricsExporter) -> None:
    before = exporter_samples(exporter, "http_requests_total", "canary")
    after = exporter_samples(exporter, "http_requests_total", "canary")
    assert sum(after.values()) > sum(before.values()) > 0
    assert math.isclose(
        after["500"] / sum(after.values()), CANARY.error_ratio, rel_tol=RATIO_TOLERANCE
    )


def test_stopped_traffic_freezes_its_series_and_reset_drops_them(
    own_exporter: MetricsExporter,
) -> None:
    CANARY.start(own_exporter)
    assert_canary_serving(own_exporter)

    own_exporter.stop_traffic(namespace=NAMESPACE, app=APP, version=CANARY.version, track="canary")
    frozen = exporter_samples(own_exporter, "http_requests_total", "canary")
    assert frozen.keys() == {"200", "500"}
    assert exporter_samples(own_exporter, "http_requests_total", "canary") == frozen
    with pytest.raises(ValueError, match="no traffic for"):
        own_exporter.stop_traffic(
            namespace=NAMESPACE, app=APP, version=CANARY.version, track="canary"
        )

    own_exporter.reset()
    assert exporter_samples(own_exporter, "http_requests_total", "canary") == {}


@pytest.mark.parametrize(
    ("field", "bad_value", "message"),
    [
        ("error_ratio", 1.5, "error_ratio is the share of 5xx responses, 0..1"),
        ("error_ratio", -0.1, "error_ratio is the share of 5xx responses, 0..1"),
        ("qps", -1.0, "qps must be a finite number >= 0"),
        ("qps", math.nan, "qps must be a finite number >= 0"),
        ("p99_s", 0.0, "p99_s must be between"),
        ("p99_s", 60.0, "p99_s must be between"),
        ("track", "blue", "track must be one of stable, canary"),
        ("app", " ", "app must be a non-empty label value"),
    ],
)
def test_bad_traffic_is_refused_and_running_traffic_is_kept(
    own_exporter: MetricsExporter, field: str, bad_value: object, message: str
) -> None:
    CANARY.start(own_exporter)
    settings: dict[str, object] = {
        "namespace": NAMESPACE, "app": APP, "track": "canary", "version": CANARY.version,
        "qps": 1.0, "error_ratio": 0.5, "p99_s": 1.0, field: bad_value,
    }  # fmt: skip
    with pytest.raises(ValueError, match=message):
        own_exporter.set_traffic(**settings)  # type: ignore[arg-type]
    assert_canary_serving(own_exporter)


@pytest.mark.usefixtures("steady_traffic")
def test_prometheus_comes_back_on_the_same_port_with_its_data(
    prometheus_server: PrometheusServer,
) -> None:
    canary_requests = f'sum(http_requests_total{{{APP_SELECTOR},track="canary"}})'
    before_stop = time.time()
    served_before_stop = single_value(prometheus_server.client(), canary_requests, at=before_stop)
    port = prometheus_server.port

    prometheus_server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{prometheus_server.url}/-/ready", timeout=2)
    prometheus_server.start()

    assert prometheus_server.port == port
    prometheus = prometheus_server.client()
    assert single_value(prometheus, canary_requests, at=before_stop) == served_before_stop
    assert single_value(prometheus, canary_requests) > served_before_stop
    assert single_value(prometheus, f'up{{job="{EXPORTER_JOB}"}}') == 1
