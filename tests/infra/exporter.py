"""A metrics exporter the tests steer: request metrics of stable and canary workloads.

Called by tests/infra/prometheus_server.py (fixtures `metrics_exporter`, `clean_exporter`) and by
tests that need traffic with a known request rate, error ratio and p99 latency.

It serves two metric families from its own CollectorRegistry over HTTP on a loopback port:
the generic app ones (`http_requests_total`, `http_request_duration_seconds`) and Istio's
standard ones (`istio_requests_total`, `istio_request_duration_milliseconds`).

Traffic is a fluid model, not random draws: whenever the metrics are read (or a profile
changes), every profile's counters advance by exactly qps x elapsed seconds, split into 5xx
and 2xx by the error ratio, and every histogram bucket by the share of those requests its
latency distribution puts at or under the bucket bound. So `rate()` equals the configured
qps, the 5xx share is exact, and `histogram_quantile(0.99, ...)` returns the configured p99.
A code's series appears with its first request, as in a real app: a track with no errors
has no 5xx series.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

TRACKS = ("stable", "canary")
# prometheus_client's default buckets, which most instrumented apps keep.
APP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# Envoy's default histogram buckets, which Istio's istio_request_duration_milliseconds uses.
ISTIO_BUCKETS_MS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
    30000, 60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip
MIN_P99_S = 0.01
MAX_P99_S = 5.0
SUCCESS_CODE = "200"
ERROR_CODE = "500"


@dataclass(frozen=True, slots=True)
class LatencyDistribution:
    """Piecewise-uniform latencies: `knots` are (seconds, share of requests at or under) points.

    histogram_quantile interpolates linearly inside a bucket, so the distribution is uniform
    across the bucket that holds p99 in both families; it then reports p99 exactly.
    """

    knots: tuple[tuple[float, float], ...]

    @classmethod
    def with_p99(cls, p99_s: float) -> LatencyDistribution:
        low, high = _bucket_holding(p99_s)
        position = (p99_s - low) / (high - low)
        # No sampling noise here, so the split only shapes the curve: most requests well under
        # p99, at most 10 % inside its bucket, and no more than 1 % above p99.
        in_bucket = 0.1 if position >= 0.9 else 0.01 / (1 - position)
        below = 0.99 - in_bucket * position
        knots = ((0.0, 0.0), (low, below), (high, below + in_bucket), (2 * high, 1.0))
        return cls(knots=knots)

    def share_at_most(self, latency_s: float) -> float:
        for (x0, y0), (x1, y1) in zip(self.knots, self.knots[1:], strict=False):
            if latency_s <= x1:
                return y0 if x1 == x0 else y0 + (y1 - y0) * (latency_s - x0) / (x1 - x0)
        return 1.0

    @property
    def mean_s(self) -> float:
        pairs = zip(self.knots, self.knots[1:], strict=False)
        return sum((y1 - y0) * (x0 + x1) / 2 for (x0, y0), (x1, y1) in pairs)


def _bucket_holding(p99_s: float) -> tuple[float, float]:
    """The widest (low, high] that contains p99 and covers its bucket in both families."""
    families = (APP_BUCKETS_S, tuple(ms / 1000 for ms in ISTIO_BUCKETS_MS))
    low = min(max((b for b in bounds if b < p99_s), default=0.0) for bounds in families)
    high = max(min(b for b in bounds if b >= p99_s) for bounds in families)
    return low, high


@dataclass(frozen=True, slots=True, order=True)
class TrafficKey:
    namespace: str
    app: str
    version: str
    track: str

    @property
    def workload(self) -> str:
        """The Deployment name Istio reports as destination_workload."""
        return self.app if self.track == "stable" else f"{self.app}-{self.track}"


@dataclass(frozen=True, slots=True)
class TrafficProfile:
    qps: float
    error_ratio: float
    latency: LatencyDistribution


@dataclass
class ServedRequests:
    """What one workload has answered with one status code so far (fractional counts)."""

    count: float = 0.0
    latency_sum_s: float = 0.0
    app_buckets: list[float] = field(default_factory=lambda: [0.0] * len(APP_BUCKETS_S))
    istio_buckets: list[float] = field(default_factory=lambda: [0.0] * len(ISTIO_BUCKETS_MS))

    def add_all(self, other: ServedRequests) -> None:
        self.count += other.count
        self.latency_sum_s += other.latency_sum_s
        self.app_buckets = [a + b for a, b in zip(self.app_buckets, other.app_buckets, strict=True)]
        self.istio_buckets = [
            a + b for a, b in zip(self.istio_buckets, other.istio_buckets, strict=True)
        ]

    def add(self, requests: float, latency: LatencyDistribution) -> None:
        self.count += requests
        self.latency_sum_s += requests * latency.mean_s
        for index, bound_s in enumerate(APP_BUCKETS_S):
            self.app_buckets[index] += requests * latency.share_at_most(bound_s)
        for index, bound_ms in enumerate(ISTIO_BUCKETS_MS):
            self.istio_buckets[index] += requests * latency.share_at_most(bound_ms / 1000)


Served: TypeAlias = Sequence[tuple[TrafficKey, str, ServedRequests]]


class MetricsExporter(Collector):
    """Serves synthetic request metrics; `set_traffic` and friends steer them while it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._profiles: dict[TrafficKey, TrafficProfile] = {}
        self._served: dict[TrafficKey, dict[str, ServedRequests]] = {}
        self._advanced_at = time.monotonic()
        self._registry = CollectorRegistry()
        self._registry.register(self)
        self._server: WSGIServer | None = None
        self._server_thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the metrics exporter is not serving: call start() first")
        return int(self._server.server_port)

    @property
    def target(self) -> str:
        """host:port, as a Prometheus scrape config names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def start(self) -> MetricsExporter:
        """Serve /metrics on a free loopback port from a background thread."""
        self._server, self._server_thread = start_http_server(
            0, addr="127.0.0.1", registry=self._registry
        )
        return self

    def stop(self) -> None:
        if self._server is None or self._server_thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server_thread.join()
        self._server = self._server_thread = None

    def set_traffic(
        self,
        *,
        app: str,
        version: str,
        track: str,
        qps: float,
        error_ratio: float = 0.0,
        p99_s: float = 0.1,
        namespace: str = "default",
    ) -> None:
        """Start, or change, the traffic one version of an app serves on one track.

        A change keeps the series and their totals: from now on they grow at the new rates.
        """
        change = {"app": app, "version": version, "track": track, "qps": qps,
                  "error_ratio": error_ratio, "p99_s": p99_s, "namespace": namespace}  # fmt: skip
        self.set_traffics([change])

    def set_traffics(self, changes: Iterable[Mapping[str, Any]]) -> None:
        """set_traffic for each set of its keywords, all at the same instant (one step of the
        exporter's clock): many apps' canaries can turn bad at once, and setting the traffic of
        hundreds of apps does not wait for a scrape between any two of them."""
        profiles = []
        for change in changes:
            key = _traffic_key(
                namespace=change.get("namespace", "default"), app=change["app"],
                version=change["version"], track=change["track"],
            )  # fmt: skip
            profile = _traffic_profile(
                qps=change["qps"], error_ratio=change.get("error_ratio", 0.0),
                p99_s=change.get("p99_s", 0.1),
            )  # fmt: skip
            profiles.append((key, profile))
        with self._lock:
            self._advance()
            for key, profile in profiles:
                self._profiles[key] = profile
                self._served.setdefault(key, {})

    def stop_traffic(
        self, *, app: str, version: str, track: str, namespace: str = "default"
    ) -> None:
        """No more requests: the series stay, frozen at their totals, so rate() falls to 0."""
        key = _traffic_key(namespace=namespace, app=app, version=version, track=track)
        with self._lock:
            if key not in self._profiles:
                serving = ", ".join(sorted(map(str, self._profiles))) or "none"
                raise ValueError(f"no traffic for {key}; serving: {serving}")
            self._advance()
            del self._profiles[key]

    def reset(self) -> None:
        """Forget every profile and series: Prometheus sees them all disappear."""
        with self._lock:
            self._advance()
            self._profiles.clear()
            self._served.clear()

    def collect(self) -> list[Metric]:
        with self._lock:
            self._advance()
            served = sorted(
                (key, code, requests)
                for key, by_code in self._served.items()
                for code, requests in by_code.items()
            )
            return [*_app_families(served), *_istio_families(served)]

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed_s = now - self._advanced_at
        self._advanced_at = now
        for key, profile in self._profiles.items():
            requests = profile.qps * elapsed_s
            errors = requests * profile.error_ratio
            for code, count in ((ERROR_CODE, errors), (SUCCESS_CODE, requests - errors)):
                if count > 0:
                    self._served[key].setdefault(code, ServedRequests()).add(count, profile.latency)


def _traffic_key(*, namespace: str, app: str, version: str, track: str) -> TrafficKey:
    for name, value in (("namespace", namespace), ("app", app), ("version", version)):
        if not value.strip():
            raise ValueError(f"{name} must be a non-empty label value, got {value!r}")
    if track not in TRACKS:
        raise ValueError(f"track must be one of {', '.join(TRACKS)}, got {track!r}")
    return TrafficKey(namespace=namespace, app=app, version=version, track=track)


def _traffic_profile(*, qps: float, error_ratio: float, p99_s: float) -> TrafficProfile:
    if not (math.isfinite(qps) and qps >= 0):
        raise ValueError(f"qps must be a finite number >= 0, got {qps!r}")
    if not (math.isfinite(error_ratio) and 0 <= error_ratio <= 1):
        raise ValueError(f"error_ratio is the share of 5xx responses, 0..1, got {error_ratio!r}")
    if not (math.isfinite(p99_s) and MIN_P99_S <= p99_s <= MAX_P99_S):
        raise ValueError(f"p99_s must be between {MIN_P99_S} and {MAX_P99_S} s, got {p99_s!r}")
    latency = LatencyDistribution.with_p99(p99_s)
    return TrafficProfile(qps=qps, error_ratio=error_ratio, latency=latency)


def _cumulative_buckets(
    bounds: Sequence[float], counts: Sequence[float], total: float
) -> list[tuple[str, float]]:
    return [(str(float(bound)), count) for bound, count in zip(bounds, counts, strict=True)] + [
        ("+Inf", total)
    ]


def _app_families(served: Served) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "http_requests_total",
        "HTTP requests answered, by status code.",
        labels=["namespace", "app", "version", "track", "code"],
    )
    durations = HistogramMetricFamily(
        "http_request_duration_seconds",
        "HTTP request latency.",
        labels=["namespace", "app", "version", "track"],
    )
    by_workload: dict[TrafficKey, ServedRequests] = {}
    for key, code, answered in served:
        labels = [key.namespace, key.app, key.version, key.track]
        requests.add_metric([*labels, code], answered.count)
        by_workload.setdefault(key, ServedRequests()).add_all(answered)
    for key, total in by_workload.items():
        buckets = _cumulative_buckets(APP_BUCKETS_S, total.app_buckets, total.count)
        durations.add_metric(
            [key.namespace, key.app, key.version, key.track], buckets, total.latency_sum_s
        )
    yield requests
    yield durations


def _istio_families(served: Served) -> Iterator[Metric]:
    label_names = [
        "reporter", "destination_workload_namespace", "destination_workload",
        "destination_app", "destination_service_name", "destination_version", "response_code",
    ]  # fmt: skip
    requests = CounterMetricFamily(
        "istio_requests_total", "Requests seen by the Envoy sidecar.", labels=label_names
    )
    durations = HistogramMetricFamily(
        "istio_request_duration_milliseconds",
        "Request latency seen by the Envoy sidecar.",
        labels=label_names,
    )
    for key, code, answered in served:
        labels = ["destination", key.namespace, key.workload, key.app, key.app, key.version, code]
        requests.add_metric(labels, answered.count)
        buckets = _cumulative_buckets(ISTIO_BUCKETS_MS, answered.istio_buckets, answered.count)
        durations.add_metric(labels, buckets, answered.latency_sum_s * 1000)
    yield requests
    yield durations
