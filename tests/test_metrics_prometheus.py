"""The Prometheus adapter (bot.metrics.prometheus) against the real Prometheus and stand-ins.

Run by pytest. Readings and trends come from Debian's prometheus scraping the test exporter
(fixtures of tests/infra/prometheus_server.py), which serves the generic and the Istio metric
families for the same traffic, so both presets must read the same numbers. Failures (closed
port, a server that never answers, a slow one, error and malformed answers) come from plain
sockets and a small HTTP stand-in defined here.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from bot.core.analysis import Metric, MetricsUnavailable, TrackReading, Trend
from bot.core.apps import AppConfig, AuthorizationConfig, ChannelRef, MetricsConfig, ReplicasRouter
from bot.core.plan import DEFAULT_PLAN
from bot.metrics import prometheus as prometheus_adapter
from bot.metrics.prometheus import PrometheusMetrics
from tests.infra.exporter import MetricsExporter
from tests.infra.processes import free_port
from tests.infra.prometheus_server import SCRAPE_INTERVAL_S, PrometheusServer

NAMESPACE = "metrics-test"
PRESETS = ("generic", "istio")
WINDOW_S = 10
# Counters grow exactly with the exporter's clock; only scrape-time jitter is left (see
# tests/test_infra_prometheus.py), well under these.
QPS_TOLERANCE = 0.02
RATIO_TOLERANCE = 1e-6
P99_TOLERANCE = 1e-6
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Traffic:
    app: str
    track: str
    qps: float
    error_ratio: float = 0.0
    p99_s: float = 0.1

    def start(self, exporter: MetricsExporter, **changes: float) -> None:
        exporter.set_traffic(
            namespace=NAMESPACE, app=self.app, version=f"{self.app}-{self.track}",
            track=self.track, **{**self.profile, **changes},
        )  # fmt: skip

    def stop(self, exporter: MetricsExporter) -> None:
        exporter.stop_traffic(
            namespace=NAMESPACE, app=self.app, version=f"{self.app}-{self.track}", track=self.track
        )

    @property
    def profile(self) -> dict[str, float]:
        return {"qps": self.qps, "error_ratio": self.error_ratio, "p99_s": self.p99_s}


CANARY = Traffic(app="shop-api", track="canary", qps=20, error_ratio=0.10, p99_s=0.3)
STABLE = Traffic(app="shop-api", track="stable", qps=80, error_ratio=0.0, p99_s=0.12)
# An app whose canary never served: it has no series at all.
LONE_STABLE = Traffic(app="lone-api", track="stable", qps=50)
# An app whose canary served a moment, then stopped: its series stay, frozen.
STOPPED_CANARY = Traffic(app="halted-api", track="canary", qps=30, error_ratio=0.5)
STOPPED_WINDOW_S = 5
NO_DATA = TrackReading(requests=None, qps=None, error_rate=None, p99_ms=None)


def app_config(
    workload: str,
    *,
    provider: str = "generic",
    window_s: int = WINDOW_S,
    prometheus_url: str | None = None,
) -> AppConfig:
    metrics = MetricsConfig.model_validate(
        {"provider": provider, "window": f"{window_s}s", "prometheus_url": prometheus_url}
    )
    return AppConfig(
        name=workload,
        namespace=NAMESPACE,
        workload=workload,
        container=None,
        router=ReplicasRouter(provider="replicas"),
        slack_channel=ChannelRef("C0DEPLOYS"),
        plan=DEFAULT_PLAN,
        metrics=metrics,
        alert_mention="",
        authorization=AuthorizationConfig(),
    )


def now() -> datetime:
    return datetime.now(UTC)


def assert_track(reading: TrackReading, traffic: Traffic) -> None:
    assert reading.qps is not None and reading.requests is not None, reading
    assert math.isclose(reading.qps, traffic.qps, rel_tol=QPS_TOLERANCE), reading
    assert math.isclose(reading.requests, traffic.qps * WINDOW_S, rel_tol=QPS_TOLERANCE), reading
    assert reading.error_rate is not None, reading
    assert math.isclose(reading.error_rate, traffic.error_ratio, abs_tol=RATIO_TOLERANCE), reading
    assert reading.p99_ms is not None, reading
    assert math.isclose(reading.p99_ms, traffic.p99_s * 1000, rel_tol=P99_TOLERANCE), reading


# ---------------------------------------------------------------- readings from real Prometheus


@pytest.fixture(scope="module")
def steady_traffic(
    metrics_exporter: MetricsExporter, prometheus_server: PrometheusServer
) -> Iterator[None]:
    """Every app's traffic, served until Prometheus holds a full window of it."""
    metrics_exporter.reset()
    STOPPED_CANARY.start(metrics_exporter)
    prometheus_server.wait_for_samples(
        f'http_requests_total{{app="{STOPPED_CANARY.app}"}}', window_s=SCRAPE_INTERVAL_S
    )
    STOPPED_CANARY.stop(metrics_exporter)
    for traffic in (CANARY, STABLE, LONE_STABLE):
        traffic.start(metrics_exporter)
    # The stopped canary's last increase is now older than its window (STOPPED_WINDOW_S) too.
    prometheus_server.wait_for_samples(
        f'http_requests_total{{namespace="{NAMESPACE}"}}', window_s=WINDOW_S
    )
    yield
    metrics_exporter.reset()


@pytest.mark.usefixtures("steady_traffic")
@pytest.mark.parametrize("provider", PRESETS)
def test_reads_canary_and_stable_side_by_side(
    prometheus_server: PrometheusServer, provider: str
) -> None:
    metrics = PrometheusMetrics(default_url=prometheus_server.url)
    at = now()
    started = time.monotonic()
    reading = metrics.read(app_config(CANARY.app, provider=provider), at=at)
    log_duration("read", started)

    assert (reading.at, reading.window_s) == (at, WINDOW_S)
    assert_track(reading.canary, CANARY)
    assert_track(reading.stable, STABLE)


@pytest.mark.usefixtures("steady_traffic")
@pytest.mark.parametrize("provider", PRESETS)
def test_a_track_without_traffic_reads_none(
    prometheus_server: PrometheusServer, provider: str
) -> None:
    metrics = PrometheusMetrics(default_url=prometheus_server.url)

    never_served = metrics.read(app_config(LONE_STABLE.app, provider=provider), at=now())
    assert never_served.canary == NO_DATA
    assert_track(never_served.stable, LONE_STABLE)

    # Series that stopped growing: no requests in the window, so no rate and no p99, not NaN.
    stopped_app = app_config(STOPPED_CANARY.app, provider=provider, window_s=STOPPED_WINDOW_S)
    stopped = metrics.read(stopped_app, at=now())
    assert stopped.canary == TrackReading(requests=0.0, qps=0.0, error_rate=None, p99_ms=None)
    assert stopped.stable == NO_DATA


@pytest.mark.usefixtures("steady_traffic")
def test_the_apps_own_prometheus_url_wins_over_the_default(
    prometheus_server: PrometheusServer,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    metrics = PrometheusMetrics(default_url=closed)

    reading = metrics.read(app_config(CANARY.app, prometheus_url=prometheus_server.url), at=now())

    assert_track(reading.canary, CANARY)
    with pytest.raises(MetricsUnavailable, match=f"Prometheus at {closed} cannot be reached"):
        metrics.read(app_config(CANARY.app), at=now())


def test_a_query_prometheus_rejects_names_its_error(
    prometheus_server: PrometheusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    generic = prometheus_adapter.PRESETS["generic"]
    unbalanced = 'sum by (track) (increase(http_requests_total{app="$workload"}[$range])'
    monkeypatch.setitem(prometheus_adapter.PRESETS, "generic", replace(generic, errors=unbalanced))
    metrics = PrometheusMetrics(default_url=prometheus_server.url)

    with pytest.raises(MetricsUnavailable) as raised:
        metrics.read(app_config(CANARY.app), at=now())

    message = str(raised.value)
    assert message.startswith(f"Prometheus at {prometheus_server.url} rejected a query (bad_data:")
    assert "unclosed left parenthesis" in message
    assert message.endswith('increase(http_requests_total{app="shop-api"}[10s])')


def test_a_broken_query_answered_400_bad_data_carries_prometheus_own_error(
    prometheus_server: PrometheusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message quotes Prometheus's errorType and error as its HTTP answer gave them."""
    generic = prometheus_adapter.PRESETS["generic"]
    dangling = 'sum by (track) (increase(http_requests_total{app="$workload"}[$range])) /'
    monkeypatch.setitem(prometheus_adapter.PRESETS, "generic", replace(generic, requests=dangling))
    metrics = PrometheusMetrics(default_url=prometheus_server.url)
    at = now()
    # A 5-point trend of a 10 s window: range queries with 2 s steps.
    broken = 'sum by (track) (increase(http_requests_total{app="shop-api"}[2s])) /'
    direct = requests.get(
        f"{prometheus_server.url}/api/v1/query_range",
        params={"query": broken, "start": at.timestamp() - 8, "end": at.timestamp(), "step": 2},
        timeout=5,
    )
    assert direct.status_code == 400, direct.text
    assert direct.json()["errorType"] == "bad_data", direct.text

    with pytest.raises(MetricsUnavailable) as raised:
        metrics.trend(app_config(CANARY.app), at=at, points=5)

    assert str(raised.value) == (
        f"Prometheus at {prometheus_server.url} rejected a query "
        f"(bad_data: {direct.json()['error']}): {broken}"
    )
    assert raised.value.retry_after_s is None


# ---------------------------------------------------------------- trend from real Prometheus

TREND_WINDOW_S = 15
TREND_POINTS = 5
TREND_CANARY = Traffic(app="trend-api", track="canary", qps=20, p99_s=0.2)
TREND_STABLE = Traffic(app="trend-api", track="stable", qps=80, p99_s=0.12)
TREND_FAILING = {"error_ratio": 0.10, "p99_s": 0.6}


def test_a_trend_shows_errors_appearing_in_its_later_points(
    clean_exporter: MetricsExporter, prometheus_server: PrometheusServer
) -> None:
    TREND_CANARY.start(clean_exporter)
    TREND_STABLE.start(clean_exporter)
    prometheus_server.wait_for_samples(
        f'http_requests_total{{app="{TREND_CANARY.app}"}}', window_s=TREND_WINDOW_S // 2
    )
    switched = now()
    TREND_CANARY.start(clean_exporter, **TREND_FAILING)
    time.sleep(TREND_WINDOW_S // 2 + 1)
    metrics = PrometheusMetrics(default_url=prometheus_server.url)
    at = now()

    for provider in PRESETS:  # the exporter serves both families for the same traffic
        app = app_config(TREND_CANARY.app, provider=provider, window_s=TREND_WINDOW_S)
        started = time.monotonic()
        trend = metrics.trend(app, at=at, points=TREND_POINTS)
        log_duration(f"{provider} trend", started)
        assert_trend(trend, at=at, switched=switched)

        # A reading before the switch sees the canary healthy, one after it failing: `at` counts.
        half_window = TREND_WINDOW_S // 2 - 1
        before = metrics.read(app_config(app.workload, window_s=half_window), at=switched)
        after = metrics.read(app_config(app.workload, window_s=half_window), at=at)
        assert before.canary.error_rate == 0.0, before
        assert close(after.canary.error_rate, TREND_FAILING["error_ratio"]), after


def assert_trend(trend: Trend, *, at: datetime, switched: datetime) -> None:
    for track in (trend.canary, trend.stable):
        assert set(track) == set(Metric)
        assert all(len(values) == TREND_POINTS for values in track.values()), track
    step = timedelta(seconds=TREND_WINDOW_S / TREND_POINTS)
    slice_ends = [at - step * (TREND_POINTS - 1 - index) for index in range(TREND_POINTS)]
    # A slice is (end - step, end]; a scrape may land up to one interval after the switch.
    healthy = [i for i, end in enumerate(slice_ends) if end < switched]
    failing = [
        i for i, end in enumerate(slice_ends)
        if end - step > switched + timedelta(seconds=SCRAPE_INTERVAL_S)
    ]  # fmt: skip
    assert healthy and failing, (switched, slice_ends)
    canary_errors = trend.canary[Metric.ERROR_RATE]
    canary_p99 = trend.canary[Metric.P99_LATENCY]
    for i in healthy:
        assert canary_errors[i] == 0.0, canary_errors
        assert close(canary_p99[i], TREND_CANARY.p99_s * 1000), canary_p99
    for i in failing:
        assert close(canary_errors[i], TREND_FAILING["error_ratio"]), canary_errors
        assert close(canary_p99[i], TREND_FAILING["p99_s"] * 1000), canary_p99
    # Not the slice the 5xx series was born in: Prometheus extrapolates a new series' rate only
    # part of the way to the slice's start, so that slice's QPS comes out a few % low.
    canary_qps = trend.canary[Metric.QPS]
    assert all(close(canary_qps[i], TREND_CANARY.qps) for i in healthy + failing), canary_qps
    assert all(close(qps, TREND_STABLE.qps) for qps in trend.stable[Metric.QPS]), trend.stable
    assert trend.stable[Metric.ERROR_RATE] == (0.0,) * TREND_POINTS


def close(value: float | None, expected: float) -> bool:
    return value is not None and math.isclose(value, expected, rel_tol=QPS_TOLERANCE)


def log_duration(what: str, started: float) -> None:
    log.info("%s took %.0f ms", what, (time.monotonic() - started) * 1000)


# ---------------------------------------------------------------- failures


def test_no_prometheus_url_anywhere_is_unavailable_and_says_what_to_set() -> None:
    metrics = PrometheusMetrics(default_url=None)
    app = app_config("shop-api")

    assert not metrics.covers(app)
    assert metrics.covers(app_config("shop-api", prometheus_url="http://prometheus:9090"))
    with pytest.raises(MetricsUnavailable, match="PROMETHEUS_URL is not set"):
        metrics.read(app, at=now())
    with pytest.raises(MetricsUnavailable, match="PROMETHEUS_URL is not set"):
        metrics.trend(app, at=now(), points=3)


def test_a_closed_port_is_unavailable_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    metrics = PrometheusMetrics(default_url=url, timeout_s=5)

    for ask in (
        lambda: metrics.read(app_config("shop-api"), at=now()),
        lambda: metrics.trend(app_config("shop-api"), at=now(), points=4),
    ):
        started = time.monotonic()
        with pytest.raises(MetricsUnavailable) as raised:
            ask()
        assert time.monotonic() - started < 0.5
        assert str(raised.value) == f"Prometheus at {url} cannot be reached: connection refused"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that takes connections (the kernel's backlog) but never reads or answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("call", ["read", "trend"])
def test_a_server_that_never_answers_is_unavailable_after_the_timeout(
    silent_server: str, call: str
) -> None:
    metrics = PrometheusMetrics(default_url=silent_server, timeout_s=1)
    app = app_config("shop-api")

    started = time.monotonic()
    with pytest.raises(MetricsUnavailable) as raised:
        if call == "read":
            metrics.read(app, at=now())
        else:
            metrics.trend(app, at=now(), points=4)
    waited_s = time.monotonic() - started

    assert 0.9 <= waited_s < 1.3, waited_s
    assert str(raised.value) == f"Prometheus at {silent_server} did not answer within 1 s"


@dataclass
class CannedAnswer:
    status: int = 200
    body: bytes = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
    content_type: str = "application/json"
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class PrometheusStandIn:
    """An HTTP server giving every request the same canned answer and recording what it asked."""

    answer: CannedAnswer = field(default_factory=CannedAnswer)
    asked: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> PrometheusStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                stand_in.asked.append((path, dict(urllib.parse.parse_qsl(query))))
                answer = stand_in.answer
                time.sleep(answer.delay_s)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A client that gave up leaves a broken pipe behind; that is the point, not an error.
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def stand_in() -> Iterator[PrometheusStandIn]:
    server = PrometheusStandIn().start()
    yield server
    server.stop()


def test_a_reading_is_three_queries_at_the_asked_time_within_the_deadline(
    stand_in: PrometheusStandIn,
) -> None:
    metrics = PrometheusMetrics(default_url=stand_in.url, timeout_s=2)
    at = datetime(2025, 3, 3, 10, 0, 0, 250000, tzinfo=UTC)

    reading = metrics.read(app_config("shop-api", provider="istio"), at=at)

    assert reading.canary == reading.stable == NO_DATA
    assert [path for path, _ in stand_in.asked] == ["/api/v1/query"] * 3
    for _, params in stand_in.asked:
        assert params["time"] == f"{at.timestamp():.3f}"
        assert 0 < float(params["timeout"]) <= 2
        assert 'destination_workload=~"shop\\\\-api|shop\\\\-api-canary"' in params["query"]
        assert "[10s]" in params["query"]


def test_a_trend_is_three_range_queries_of_evenly_spaced_points(
    stand_in: PrometheusStandIn,
) -> None:
    metrics = PrometheusMetrics(default_url=stand_in.url)
    at = datetime(2025, 3, 3, 10, 0, 0, tzinfo=UTC)

    trend = metrics.trend(app_config("shop-api", window_s=300), at=at, points=12)

    assert trend.canary == trend.stable == {metric: (None,) * 12 for metric in Metric}
    assert [path for path, _ in stand_in.asked] == ["/api/v1/query_range"] * 3
    for _, params in stand_in.asked:
        assert params["step"] == "25.000"
        assert params["end"] == f"{at.timestamp():.3f}"
        assert params["start"] == f"{at.timestamp() - 11 * 25:.3f}"
        assert "[25s]" in params["query"]


def test_a_slow_prometheus_shares_one_deadline_among_the_queries(
    stand_in: PrometheusStandIn,
) -> None:
    """Three queries at 0.6 s each would take 1.8 s; the second one runs out of the 1 s."""
    stand_in.answer = CannedAnswer(delay_s=0.6)
    metrics = PrometheusMetrics(default_url=stand_in.url, timeout_s=1)

    started = time.monotonic()
    with pytest.raises(MetricsUnavailable, match="did not answer within 1 s"):
        metrics.read(app_config("shop-api"), at=now())

    assert time.monotonic() - started < 1.3
    assert len(stand_in.asked) == 2


PROMETHEUS_ERROR = {
    "status": "error",
    "errorType": "bad_data",
    "error": 'invalid parameter "query": 1:20: parse error: unexpected "}"',
}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            CannedAnswer(status=400, body=json.dumps(PROMETHEUS_ERROR).encode()),
            r"Prometheus at \S+ rejected a query \(bad_data: invalid parameter \"query\": 1:20: "
            r"parse error: unexpected \"}\"\): sum by \(track\) \(increase\(http_requests_total",
        ),
        (
            CannedAnswer(status=502, body=b"<html>Bad Gateway</html>", content_type="text/html"),
            r"Prometheus at \S+ answered HTTP 502: <html>Bad Gateway</html>$",
        ),
        (
            CannedAnswer(body=b"<html>login page</html>", content_type="text/html"),
            r"Prometheus at \S+ sent an answer that is not a query result \(not JSON: ",
        ),
        (
            CannedAnswer(body=b'{"status":"success","data":{"resultType":"vector"}}'),
            r"Prometheus at \S+ sent an answer that is not a query result \(KeyError: 'result'\)",
        ),
        (
            CannedAnswer(body=b'{"status":"success","data":{"result":{"a":1}}}'),
            r"not a query result \(a dict where a list was due: {'a': 1}\)",
        ),
        (
            CannedAnswer(body=b'{"status":"success","data":{"result":[{"value":[1,"2"]}]}}'),
            r"not a query result \(a series without labels: ",
        ),
        (
            CannedAnswer(body=b'{"status":"success","data":{"result":[{"metric":{},"value":3}]}}'),
            r"not a query result \(a sample is not a \[time, value\] pair: 3\)",
        ),
        (
            CannedAnswer(
                body=b'{"status":"success","data":{"result":[{"metric":{},"value":[1,"x"]}]}}'
            ),
            r"not a query result \(ValueError: could not convert string to float: 'x'\)",
        ),
    ],
    ids=[
        "prometheus-error",
        "http-502",
        "not-json",
        "no-result",
        "result-not-a-list",
        "series-without-labels",
        "sample-not-a-pair",
        "value-not-a-number",
    ],
)
def test_error_and_malformed_answers_are_unavailable_and_say_why(
    stand_in: PrometheusStandIn, answer: CannedAnswer, message: str
) -> None:
    stand_in.answer = answer
    metrics = PrometheusMetrics(default_url=stand_in.url)

    with pytest.raises(MetricsUnavailable, match=message) as raised:
        metrics.read(app_config("shop-api"), at=now())
    assert len(stand_in.asked) == 1  # no retries
    assert raised.value.retry_after_s is None


PROMETHEUS_TIMEOUT = {"status": "error", "errorType": "timeout", "error": "query timed out"}


@pytest.mark.parametrize(
    ("answer", "message", "retry_after_s"),
    [
        (
            CannedAnswer(status=429, body=b"slow down", headers={"Retry-After": "7"}),
            r"^Prometheus at \S+ is rate limiting queries \(HTTP 429\): retry in 7 s$",
            7.0,
        ),
        (
            CannedAnswer(status=429, body=b"", content_type="text/plain"),
            r"^Prometheus at \S+ is rate limiting queries \(HTTP 429\): no Retry-After given$",
            None,
        ),
        (
            CannedAnswer(
                status=503,
                body=json.dumps(PROMETHEUS_TIMEOUT).encode(),
                headers={"Retry-After": "2.5"},
            ),
            r"^Prometheus at \S+ failed a query, HTTP 503 \(timeout: query timed out\): sum by",
            2.5,
        ),
        (
            CannedAnswer(status=503, body=b"", headers={"Retry-After": "soon"}),
            r"^Prometheus at \S+ answered HTTP 503: \(empty body\)$",
            None,
        ),
    ],
    ids=["429-retry-after", "429-no-retry-after", "503-prometheus-error", "503-bad-retry-after"],
)
def test_a_prometheus_asking_to_wait_sets_the_retry_delay(
    stand_in: PrometheusStandIn, answer: CannedAnswer, message: str, retry_after_s: float | None
) -> None:
    stand_in.answer = answer
    metrics = PrometheusMetrics(default_url=stand_in.url)

    with pytest.raises(MetricsUnavailable, match=message) as raised:
        metrics.read(app_config("shop-api"), at=now())

    assert raised.value.retry_after_s == retry_after_s
    assert len(stand_in.asked) == 1  # no retries: waiting is the caller's call


def test_a_prometheus_that_comes_back_is_read_again(stand_in: PrometheusStandIn) -> None:
    """The adapter keeps one client per URL; a failure must not leave it broken."""
    metrics = PrometheusMetrics(default_url=stand_in.url)
    stand_in.answer = CannedAnswer(status=503, body=b"overloaded")
    with pytest.raises(MetricsUnavailable, match="answered HTTP 503: overloaded"):
        metrics.read(app_config("shop-api"), at=now())

    stand_in.answer = CannedAnswer(
        body=b'{"status":"success","data":{"resultType":"vector","result":'
        b'[{"metric":{"track":"canary"},"value":[1,"600"]}]}}'
    )
    reading = metrics.read(app_config("shop-api"), at=now())
    # The same answer for every query: 600 requests, 600 of them 5xx, p99 600 ms.
    assert reading.canary == TrackReading(requests=600, qps=60, error_rate=1.0, p99_ms=600)
    assert len(stand_in.asked) == 1 + 3
