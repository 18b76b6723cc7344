"""Prometheus adapter: canary and stable traffic of an app (requests, QPS, error rate, p99).

Implements bot.core.analysis.MetricsPort for the release service, which reads it at every check
interval and for snapshots; the server builds one at start-up with PROMETHEUS_URL as
`default_url`.

Decisions:
- Queries are PromQL templates per metrics provider (PRESETS), filled with the app's namespace,
  workload and window: another provider is one more entry. Each query answers for both tracks
  at once, so a reading costs three queries (requests, 5xx requests, p99 latency).
- Checks of many apps on one Prometheus are batched (read_many): the same three queries for all
  of them, grouped by the labels that tell apps apart, then split per app; each app's reading is
  the one `read` gives (the same series summed the same way), so queries per check interval do
  not grow with the number of releases.
- What a reading compares is the caller's `Sides`: by track (a canary's `track: canary` pods
  against stable's: PRESETS) or by version (blue-green's green against blue, whichever
  Deployment slot each runs in: BY_VERSION, the same queries grouped by the version label).
- QPS and error rate are computed here from the request counts (qps = requests / window,
  error rate = 5xx / all): no requests gives None, where PromQL would give NaN or nothing.
- One read() or trend() shares one deadline of `timeout_s` among its queries, and the client
  never retries: a slow or down Prometheus costs a caller at most `timeout_s`. Prometheus gets
  the same deadline (its `timeout` parameter), so it stops evaluating what nobody waits for.
- Failures are read from the HTTP answer itself (status, Retry-After, Prometheus's JSON error
  body), never from an exception's text, and translated in one place (_Call._result): no answer
  or a 5xx is Prometheus being unavailable, a 4xx with Prometheus's error names the broken
  query, a 429 or 503 with Retry-After sets MetricsUnavailable.retry_after_s. Queries go through
  the session PrometheusConnect configured (no retries), so the whole answer is at hand.
- Each trend point covers its own slice of the window (rate over one step), so a change shows
  where it happened; a slice without two scrapes in it gives None.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from string import Template
from typing import Any, Literal, TypeVar

import requests
import urllib3
from prometheus_api_client import PrometheusConnect
from requests import exceptions as http_errors

from bot.core.analysis import (
    BY_TRACK,
    Metric,
    MetricsUnavailable,
    Reading,
    Sides,
    TrackReading,
    Trend,
)
from bot.core.apps import AppConfig
from bot.metrics.telemetry import PROMETHEUS_QUERY_ERRORS, PROMETHEUS_QUERY_SECONDS

Track = Literal["canary", "stable"]
TRACKS: tuple[Track, ...] = ("canary", "stable")
QueryKind = Literal["requests", "errors", "p99_ms"]
Value = TypeVar("Value")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryPreset:
    """PromQL for one metrics provider, as string.Template text.

    Placeholders: $namespace, $workload (the stable Deployment), $workload_re (the same, as a
    regular expression) and $range (a PromQL duration: the window, or one trend step). Every
    query returns one series per track; `track_label` tells them apart, its value on each
    track's series being the `canary` and `stable` templates.
    """

    track_label: str
    canary: str
    stable: str
    requests: str
    """Requests answered over $range, all status codes."""
    errors: str
    """Requests answered with a 5xx over $range."""
    p99_ms: str
    """99th percentile latency over $range, in milliseconds."""
    namespace_label: str
    workload_label: str | None
    """With the namespace (and the track), which app a series of a batched query is; None when
    the track label's value names the workload itself."""
    batch: dict[QueryKind, str]
    """The same queries for many apps at once: $namespaces and $workloads are regular
    expressions of the apps' namespaces and workloads (the workload label's values, or the track
    label's), and each series keeps the labels that tell the apps apart."""


def _generic(*, side_label: str, canary: str, stable: str) -> QueryPreset:
    """The `generic` provider's queries, telling the sides apart by the pod label `side_label`."""
    return QueryPreset(
        track_label=side_label,
        canary=canary,
        stable=stable,
        requests=f"sum by ({side_label}) (increase(http_requests_total{{"
        'namespace="$namespace", app="$workload"}[$range]))',
        errors=f"sum by ({side_label}) (increase(http_requests_total{{"
        'namespace="$namespace", app="$workload", code=~"5.."}[$range]))',
        p99_ms=f"1000 * histogram_quantile(0.99, sum by ({side_label}, le) (rate("
        'http_request_duration_seconds_bucket{namespace="$namespace", app="$workload"}'
        "[$range])))",
        namespace_label="namespace",
        workload_label="app",
        batch={
            "requests": f"sum by (namespace, app, {side_label}) (increase(http_requests_total{{"
            'namespace=~"$namespaces", app=~"$workloads"}[$range]))',
            "errors": f"sum by (namespace, app, {side_label}) (increase(http_requests_total{{"
            'namespace=~"$namespaces", app=~"$workloads", code=~"5.."}[$range]))',
            "p99_ms": f"1000 * histogram_quantile(0.99, sum by (namespace, app, {side_label}, le)"
            ' (rate(http_request_duration_seconds_bucket{namespace=~"$namespaces",'
            ' app=~"$workloads"}[$range])))',
        },
    )


PRESETS: dict[str, QueryPreset] = {
    # An app instrumented like prometheus_client's defaults, pods labelled track=canary|stable.
    "generic": _generic(side_label="track", canary="canary", stable="stable"),
    # Istio's standard metrics as the server-side sidecar reports them, per Deployment.
    "istio": QueryPreset(
        track_label="destination_workload",
        canary="$workload-canary",
        stable="$workload",
        requests="sum by (destination_workload) (increase(istio_requests_total{"
        'reporter="destination", destination_workload_namespace="$namespace",'
        ' destination_workload=~"$workload_re|$workload_re-canary"}[$range]))',
        errors="sum by (destination_workload) (increase(istio_requests_total{"
        'reporter="destination", destination_workload_namespace="$namespace",'
        ' destination_workload=~"$workload_re|$workload_re-canary", response_code=~"5.."}'
        "[$range]))",
        p99_ms="histogram_quantile(0.99, sum by (destination_workload, le) (rate("
        'istio_request_duration_milliseconds_bucket{reporter="destination",'
        ' destination_workload_namespace="$namespace",'
        ' destination_workload=~"$workload_re|$workload_re-canary"}[$range])))',
        namespace_label="destination_workload_namespace",
        workload_label=None,
        batch={
            "requests": "sum by (destination_workload_namespace, destination_workload) ("
            'increase(istio_requests_total{reporter="destination",'
            ' destination_workload_namespace=~"$namespaces", destination_workload=~"$workloads"}'
            "[$range]))",
            "errors": "sum by (destination_workload_namespace, destination_workload) ("
            'increase(istio_requests_total{reporter="destination",'
            ' destination_workload_namespace=~"$namespaces", destination_workload=~"$workloads",'
            ' response_code=~"5.."}[$range]))',
            "p99_ms": "histogram_quantile(0.99, sum by (destination_workload_namespace,"
            " destination_workload, le) (rate(istio_request_duration_milliseconds_bucket{"
            'reporter="destination", destination_workload_namespace=~"$namespaces",'
            ' destination_workload=~"$workloads"}[$range])))',
        },
    ),
}

# Blue-green's green against blue (Sides.by_version): the same three queries grouped by the
# version label instead of the track, for the app's pods in whichever Deployment slot they run;
# $canary_version and $stable_version are the two label values.
BY_VERSION: dict[str, QueryPreset] = {
    "generic": _generic(side_label="version", canary="$canary_version", stable="$stable_version"),
    # Istio's destination_version is the pods' version label; destination_app their app label.
    "istio": QueryPreset(
        track_label="destination_version",
        canary="$canary_version",
        stable="$stable_version",
        requests="sum by (destination_version) (increase(istio_requests_total{"
        'reporter="destination", destination_workload_namespace="$namespace",'
        ' destination_app="$workload"}[$range]))',
        errors="sum by (destination_version) (increase(istio_requests_total{"
        'reporter="destination", destination_workload_namespace="$namespace",'
        ' destination_app="$workload", response_code=~"5.."}[$range]))',
        p99_ms="histogram_quantile(0.99, sum by (destination_version, le) (rate("
        'istio_request_duration_milliseconds_bucket{reporter="destination",'
        ' destination_workload_namespace="$namespace", destination_app="$workload"}'
        "[$range])))",
        namespace_label="destination_workload_namespace",
        workload_label="destination_app",
        batch={
            "requests": "sum by (destination_workload_namespace, destination_app,"
            ' destination_version) (increase(istio_requests_total{reporter="destination",'
            ' destination_workload_namespace=~"$namespaces", destination_app=~"$workloads"}'
            "[$range]))",
            "errors": "sum by (destination_workload_namespace, destination_app,"
            ' destination_version) (increase(istio_requests_total{reporter="destination",'
            ' destination_workload_namespace=~"$namespaces", destination_app=~"$workloads",'
            ' response_code=~"5.."}[$range]))',
            "p99_ms": "histogram_quantile(0.99, sum by (destination_workload_namespace,"
            " destination_app, destination_version, le) (rate("
            'istio_request_duration_milliseconds_bucket{reporter="destination",'
            ' destination_workload_namespace=~"$namespaces", destination_app=~"$workloads"}'
            "[$range])))",
        },
    ),
}


def preset_for(provider: str, sides: Sides) -> QueryPreset:
    """The queries of `provider` that tell `sides` apart."""
    return (BY_VERSION if sides.by_version else PRESETS)[provider]


# The trend's points are whole milliseconds apart, as Prometheus keeps time.
_MS_PER_S = 1000
_SHOWN_BODY_CHARS = 200
_TOO_MANY_REQUESTS = 429
_SERVICE_UNAVAILABLE = 503


class PrometheusMetrics:
    """Reads an app's canary and stable traffic from its Prometheus (MetricsPort)."""

    def __init__(self, *, default_url: str | None, timeout_s: float = 5.0) -> None:
        self._default_url = default_url
        self._timeout_s = timeout_s
        self._clients: dict[str, _Client] = {}

    def read(self, app: AppConfig, *, at: datetime, sides: Sides = BY_TRACK) -> Reading:
        window_s = app.metrics.window_s
        queries = _QueryFiller(app, sides, range_ms=window_s * _MS_PER_S)
        call = self._call(app)
        values = {kind: queries.by_track(call.instant(q, at=at)) for kind, q in queries.all()}
        return _reading(values, window_s=window_s, at=at)

    def batch_of(self, app: AppConfig, sides: Sides = BY_TRACK) -> str:
        """Apps with the same batch are read by one read_many: the same Prometheus, provider,
        window, and way of telling the sides apart (by track, by version)."""
        by = "version" if sides.by_version else "track"
        return f"{self._url(app)} {app.metrics.provider} {app.metrics.window_s}s {by}"

    def read_many(
        self, apps: Sequence[tuple[AppConfig, Sides]], *, at: datetime
    ) -> dict[str, Reading | MetricsUnavailable]:
        """`read` of every app of one batch (see batch_of), with one query per metric for all of
        them; each app's reading is what `read` would give. A failed query fails every app's."""
        if not apps:
            return {}
        if len({self.batch_of(app, sides) for app, sides in apps}) != 1:
            raise ValueError("read_many reads the apps of one batch (batch_of) at a time")
        window_s = apps[0][0].metrics.window_s
        queries = _BatchFiller(apps, range_ms=window_s * _MS_PER_S)
        try:
            call = self._call(apps[0][0])
            values = {kind: queries.by_app(call.instant(q, at=at)) for kind, q in queries.all()}
        except MetricsUnavailable as error:
            return {app.name: error for app, _ in apps}
        return {
            app.name: _reading(
                {kind: found.get(app.name, {}) for kind, found in values.items()},
                window_s=window_s,
                at=at,
            )
            for app, _ in apps
        }

    def trend(self, app: AppConfig, *, at: datetime, points: int, sides: Sides = BY_TRACK) -> Trend:
        if points < 1:
            raise ValueError(f"a trend needs at least one point, got {points}")
        step_ms = max(app.metrics.window_s * _MS_PER_S // points, 1)
        queries = _QueryFiller(app, sides, range_ms=step_ms)
        steps = _Steps(end_ms=round(at.timestamp() * _MS_PER_S), step_ms=step_ms, points=points)
        call = self._call(app)
        values = {kind: queries.by_track(call.ranged(q, steps=steps)) for kind, q in queries.all()}
        tracks = {
            track: _track_trend(
                requests=values["requests"].get(track),
                errors=values["errors"].get(track),
                p99_ms=values["p99_ms"].get(track),
                step_s=step_ms / _MS_PER_S,
                points=points,
            )
            for track in TRACKS
        }
        return Trend(canary=tracks["canary"], stable=tracks["stable"])

    def covers(self, app: AppConfig) -> bool:
        """Whether there is a Prometheus to ask about `app` (its own URL or the default)."""
        return self._url(app) is not None

    def _url(self, app: AppConfig) -> str | None:
        url = app.metrics.prometheus_url or self._default_url
        return url.rstrip("/") if url else None

    def _call(self, app: AppConfig) -> _Call:
        url = self._url(app)
        if url is None:
            raise MetricsUnavailable(
                f"no Prometheus to read {app.name}'s metrics from: PROMETHEUS_URL is not set "
                "and the app names no metrics.prometheus_url; set one of them"
            )
        if url not in self._clients:
            self._clients[url] = _Client.to(url)
        deadline = time.monotonic() + self._timeout_s
        return _Call(self._clients[url], url=url, timeout_s=self._timeout_s, deadline=deadline)


# ---------------------------------------------------------------- queries


class _QueryFiller:
    """An app's preset filled in: the queries, and which track each answered series is."""

    def __init__(self, app: AppConfig, sides: Sides, *, range_ms: int) -> None:
        self._preset = preset_for(app.metrics.provider, sides)
        self._values = {
            "namespace": _promql_string(app.namespace),
            "workload": _promql_string(app.workload),
            "workload_re": _promql_string(re.escape(app.workload)),
            "range": _promql_duration(range_ms),
        }
        names = {
            "workload": app.workload,
            "canary_version": sides.canary_version or "",
            "stable_version": sides.stable_version or "",
        }
        canary = Template(self._preset.canary).substitute(names)
        stable = Template(self._preset.stable).substitute(names)
        self.tracks: dict[str, Track] = {canary: "canary", stable: "stable"}
        """Which track a series is, by its track label's value."""

    def all(self) -> list[tuple[QueryKind, str]]:
        kinds: tuple[QueryKind, ...] = ("requests", "errors", "p99_ms")
        return [(kind, self._fill(getattr(self._preset, kind))) for kind in kinds]

    def by_track(self, series: Sequence[tuple[dict[str, str], Value]]) -> dict[Track, Value]:
        """Each track's value among the answered series; a track without a series is left out."""
        found: dict[Track, Value] = {}
        for labels, value in series:
            track = self.tracks.get(labels.get(self._preset.track_label, ""))
            if track is not None:
                found[track] = value
        return found

    def _fill(self, template: str) -> str:
        return Template(template).substitute(self._values)


class _BatchFiller:
    """The batched queries of several apps that share a preset and a window, and which app and
    track each answered series is."""

    def __init__(self, apps: Sequence[tuple[AppConfig, Sides]], *, range_ms: int) -> None:
        self._preset = preset = preset_for(apps[0][0].metrics.provider, apps[0][1])
        self._series: dict[tuple[str, str, str], tuple[str, Track]] = {}
        workloads = set()
        for app, sides in apps:
            for value, track in _QueryFiller(app, sides, range_ms=range_ms).tracks.items():
                workload = app.workload if preset.workload_label else ""
                self._series[(app.namespace, workload, value)] = (app.name, track)
                workloads.add(app.workload if preset.workload_label else value)
        namespaces = {app.namespace for app, _ in apps}
        self._values = {
            "namespaces": _promql_string(_alternatives(namespaces)),
            "workloads": _promql_string(_alternatives(workloads)),
            "range": _promql_duration(range_ms),
        }

    def all(self) -> list[tuple[QueryKind, str]]:
        return [
            (kind, Template(template).substitute(self._values))
            for kind, template in self._preset.batch.items()
        ]

    def by_app(
        self, series: Sequence[tuple[dict[str, str], Value]]
    ) -> dict[str, dict[Track, Value]]:
        """Each app's tracks' values among the answered series (series of no app left out)."""
        preset = self._preset
        found: dict[str, dict[Track, Value]] = {}
        for labels, value in series:
            key = (
                labels.get(preset.namespace_label, ""),
                labels.get(preset.workload_label, "") if preset.workload_label else "",
                labels.get(preset.track_label, ""),
            )
            if (owner := self._series.get(key)) is not None:
                app, track = owner
                found.setdefault(app, {})[track] = value
        return found


def _alternatives(values: set[str]) -> str:
    """A regular expression matching exactly these values (PromQL anchors it)."""
    return "|".join(re.escape(value) for value in sorted(values))


def _promql_string(text: str) -> str:
    """`text` as the inside of a double-quoted PromQL string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _promql_duration(milliseconds: int) -> str:
    seconds, rest = divmod(milliseconds, _MS_PER_S)
    return f"{milliseconds}ms" if rest else f"{seconds}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Steps:
    """The trend's evaluation times: `points` steps ending at `end_ms`, oldest first."""

    end_ms: int
    step_ms: int
    points: int

    @property
    def start_ms(self) -> int:
        return self.end_ms - self.step_ms * (self.points - 1)

    def index(self, timestamp_s: float) -> int | None:
        """Which point a sample's timestamp is, or None when it is none of them."""
        offset_ms = timestamp_s * _MS_PER_S - self.start_ms
        index = round(offset_ms / self.step_ms)
        return index if 0 <= index < self.points else None


# ---------------------------------------------------------------- HTTP calls


@dataclass(frozen=True, slots=True)
class _Client:
    """A PrometheusConnect and the requests session it configured, which queries go through.

    The session is ours, handed to PrometheusConnect (which mounts its adapter, here without
    retries: a retry with backoff would outlast the deadline), so that a query's whole answer
    (status, headers, body) can be read rather than the text of the exception it would raise.
    """

    prometheus: PrometheusConnect
    session: requests.Session

    @classmethod
    def to(cls, url: str) -> _Client:
        session = requests.Session()
        prometheus = PrometheusConnect(url, retry=urllib3.Retry(total=0), session=session)
        return cls(prometheus, session)

    def get(self, path: str, *, params: dict[str, str], timeout_s: float) -> requests.Response:
        """GET `path` of the Prometheus API, as PrometheusConnect's custom_query would."""
        # A total, not per socket operation: requests hands a urllib3 Timeout on as it is.
        deadline: Any = urllib3.Timeout(total=timeout_s)
        return self.session.get(
            f"{self.prometheus.url}{path}",
            params=params,
            headers=self.prometheus.headers,
            auth=self.prometheus.auth,
            timeout=deadline,
        )


@dataclass(frozen=True, slots=True)
class _Call:
    """Queries for one read() or trend(): one Prometheus, one deadline shared by all of them."""

    client: _Client
    url: str
    timeout_s: float
    deadline: float

    def instant(self, query: str, *, at: datetime) -> list[tuple[dict[str, str], float | None]]:
        """Each series' labels and value at `at`."""
        result = self._result("/api/v1/query", query, {"time": _seconds(at.timestamp())})
        with self._parsing():
            return [(labels, _sample(series["value"])[1]) for labels, series in _series(result)]

    def ranged(
        self, query: str, *, steps: _Steps
    ) -> list[tuple[dict[str, str], list[float | None]]]:
        """Each series' labels and values at every step, oldest first (None: no sample)."""
        params = {
            "start": _seconds(steps.start_ms / _MS_PER_S),
            "end": _seconds(steps.end_ms / _MS_PER_S),
            "step": _seconds(steps.step_ms / _MS_PER_S),
        }
        result = self._result("/api/v1/query_range", query, params)
        with self._parsing():
            return [
                (labels, _step_values(series["values"], steps))
                for labels, series in _series(result)
            ]

    def _result(self, path: str, query: str, params: dict[str, str]) -> object:
        """The `data.result` of Prometheus's answer to `query`, within what is left of the
        deadline. The one place where a failed query becomes MetricsUnavailable: no answer,
        a refusal (read from the HTTP status, headers and Prometheus's JSON error) or a body
        that is not JSON. Each query is timed, each failure counted (bot.metrics.telemetry)."""
        kind = "range" if path.endswith("_range") else "instant"
        started = time.perf_counter()
        try:
            return self._answer(path, query, params)
        except MetricsUnavailable as error:
            error_class = "permanent" if isinstance(error, _QueryRejected) else "temporary"
            PROMETHEUS_QUERY_ERRORS.labels(kind=kind, error_class=error_class).inc()
            raise
        finally:
            PROMETHEUS_QUERY_SECONDS.labels(kind=kind).observe(time.perf_counter() - started)

    def _answer(self, path: str, query: str, params: dict[str, str]) -> object:
        remaining_s = self.deadline - time.monotonic()
        if remaining_s <= 0:
            raise MetricsUnavailable(self._too_slow())
        params = {"query": query, **params, "timeout": _seconds(remaining_s)}
        try:
            response = self.client.get(path, params=params, timeout_s=remaining_s)
        except http_errors.RequestException as error:
            raise MetricsUnavailable(self._unreachable(error)) from None
        if response.status_code != 200:
            rejected = _rejects_the_query(response)
            raise (_QueryRejected if rejected else MetricsUnavailable)(
                self._refused(response, query), retry_after_s=_retry_after_s(response)
            )
        try:
            answer = response.json()
        except http_errors.InvalidJSONError as error:
            raise MetricsUnavailable(self._malformed(f"not JSON: {error}")) from None
        with self._parsing():
            return answer["data"]["result"]

    @contextmanager
    def _parsing(self) -> Iterator[None]:
        """An answer that is JSON but not a query result becomes MetricsUnavailable."""
        try:
            yield
        except _NotAQueryResult as error:
            raise MetricsUnavailable(self._malformed(str(error))) from None
        except (ValueError, KeyError, TypeError) as error:
            raise MetricsUnavailable(self._malformed(f"{type(error).__name__}: {error}")) from None

    def _too_slow(self) -> str:
        return f"Prometheus at {self.url} did not answer within {self.timeout_s:g} s"

    def _unreachable(self, error: http_errors.RequestException) -> str:
        reason = _urllib3_reason(error)
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            cause = reason.__cause__
            why = cause.strerror if isinstance(cause, OSError) and cause.strerror else reason
            return f"Prometheus at {self.url} cannot be reached: {str(why).lower()}"
        if isinstance(reason, urllib3.exceptions.TimeoutError) or isinstance(
            error, http_errors.Timeout
        ):
            return self._too_slow()
        return f"Prometheus at {self.url} cannot be reached: {reason}"

    def _refused(self, response: requests.Response, query: str) -> str:
        """Why Prometheus answered `query` with an HTTP error, for people."""
        status = response.status_code
        problem = _prometheus_error(response)
        if status == _TOO_MANY_REQUESTS:
            wait = _retry_after_s(response)
            when = f"retry in {wait:g} s" if wait is not None else "no Retry-After given"
            detail = f" ({problem})" if problem else ""
            return f"Prometheus at {self.url} is rate limiting queries (HTTP 429{detail}): {when}"
        if problem is not None and status < 500:
            # Prometheus's own verdict on the query: bad_data is a broken PromQL expression.
            return f"Prometheus at {self.url} rejected a query ({problem}): {query}"
        if problem is not None:
            return f"Prometheus at {self.url} failed a query, HTTP {status} ({problem}): {query}"
        shown = response.text.strip()[:_SHOWN_BODY_CHARS]
        return f"Prometheus at {self.url} answered HTTP {status}: {shown or '(empty body)'}"

    def _malformed(self, detail: str) -> str:
        return f"Prometheus at {self.url} sent an answer that is not a query result ({detail})"


def _seconds(value: float) -> str:
    """Seconds as Prometheus's API takes them, to the millisecond it keeps."""
    return f"{value:.3f}"


def _urllib3_reason(error: http_errors.RequestException) -> object:
    """What urllib3 gave up on: requests wraps it in a MaxRetryError when retries are off."""
    cause = error.args[0] if error.args else error
    return cause.reason if isinstance(cause, urllib3.exceptions.MaxRetryError) else cause


def _prometheus_error(response: requests.Response) -> str | None:
    """'errorType: error' from Prometheus's JSON error answer; None when the body is not one."""
    try:
        answer = response.json()
    except http_errors.InvalidJSONError:
        return None
    if not isinstance(answer, dict) or answer.get("status") != "error":
        return None
    return f"{answer.get('errorType', 'error')}: {answer.get('error', 'no details')}"


def _retry_after_s(response: requests.Response) -> float | None:
    """A 429's or 503's Retry-After in seconds (delay or HTTP date); None without a usable one."""
    value = response.headers.get("Retry-After", "").strip()
    if response.status_code not in (_TOO_MANY_REQUESTS, _SERVICE_UNAVAILABLE) or not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class _QueryRejected(MetricsUnavailable):
    """Prometheus refused the query itself (e.g. bad PromQL): asking again cannot help."""


def _rejects_the_query(response: requests.Response) -> bool:
    """A 4xx but 429 with Prometheus's JSON error: its verdict on the query, not its health."""
    status = response.status_code
    if not 400 <= status < 500 or status == _TOO_MANY_REQUESTS:
        return False
    return _prometheus_error(response) is not None


# ---------------------------------------------------------------- answers


class _NotAQueryResult(Exception):
    """The answer is JSON, but not shaped like Prometheus's query results."""


def _list(answer: object) -> list[object]:
    if not isinstance(answer, list):
        raise _NotAQueryResult(f"a {type(answer).__name__} where a list was due: {_shown(answer)}")
    return answer


def _series(answer: object) -> list[tuple[dict[str, str], dict[str, object]]]:
    """Each series of a query result with its labels."""
    found = []
    for series in _list(answer):
        if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
            raise _NotAQueryResult(f"a series without labels: {_shown(series)}")
        labels = {str(name): str(value) for name, value in series["metric"].items()}
        found.append((labels, series))
    return found


def _shown(value: object) -> str:
    return str(value)[:_SHOWN_BODY_CHARS]


def _sample(sample: object) -> tuple[float, float | None]:
    """A [timestamp, "value"] pair as numbers; NaN (e.g. the p99 of no requests) is None."""
    if not isinstance(sample, list) or len(sample) != 2:
        raise _NotAQueryResult(f"a sample is not a [time, value] pair: {_shown(sample)}")
    value = float(sample[1])
    return float(sample[0]), None if math.isnan(value) else value


def _step_values(samples: object, steps: _Steps) -> list[float | None]:
    values: list[float | None] = [None] * steps.points
    for timestamp_s, value in map(_sample, _list(samples)):
        index = steps.index(timestamp_s)
        if index is not None:
            values[index] = value
    return values


def _reading(
    values: dict[QueryKind, dict[Track, float | None]], *, window_s: int, at: datetime
) -> Reading:
    tracks = {
        track: _track_reading(
            requests=values["requests"].get(track),
            errors=values["errors"].get(track),
            p99_ms=values["p99_ms"].get(track),
            seconds=window_s,
        )
        for track in TRACKS
    }
    return Reading(canary=tracks["canary"], stable=tracks["stable"], window_s=window_s, at=at)


def _track_reading(
    *, requests: float | None, errors: float | None, p99_ms: float | None, seconds: float
) -> TrackReading:
    return TrackReading(
        requests=requests,
        qps=None if requests is None else requests / seconds,
        error_rate=_error_rate(requests=requests, errors=errors),
        p99_ms=p99_ms,
    )


def _track_trend(
    *,
    requests: list[float | None] | None,
    errors: list[float | None] | None,
    p99_ms: list[float | None] | None,
    step_s: float,
    points: int,
) -> dict[Metric, tuple[float | None, ...]]:
    gaps: list[float | None] = [None] * points
    requests, errors = requests or gaps, errors or gaps
    return {
        Metric.QPS: tuple(None if count is None else count / step_s for count in requests),
        Metric.ERROR_RATE: tuple(
            _error_rate(requests=count, errors=failed)
            for count, failed in zip(requests, errors, strict=True)
        ),
        Metric.P99_LATENCY: tuple(p99_ms or gaps),
    }


def _error_rate(*, requests: float | None, errors: float | None) -> float | None:
    """5xx share of requests; a track that never failed has no 5xx series, so None errors is 0."""
    if not requests:
        return None
    return (errors or 0.0) / requests
