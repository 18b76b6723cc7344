"""Canary analysis: what a metrics check reads, and the judgement of canary against stable.

The types here are shared by the Prometheus adapter (bot.metrics.prometheus, which fills in a
Reading), the metric checks (bot.application.checks, which call `judge` at every check interval
and turn the Judgement into a state-machine event) and the Slack cards (bot.slack.cards, which
show `summary_line` on the release card and `snapshot_text` in the thread). Pure: no I/O.

Judgement rules (Argo Rollouts' and Flagger's, plus a stable baseline):
- Error rate is always checked (max, and optionally max_above_stable); p99 latency when the app
  sets p99_latency_ms; QPS (a floor) when it sets qps, and only in stages with public traffic.
- Fewer canary requests than min_requests: error rate and p99 are inconclusive, never passed;
  except in a stage with no public traffic (0 %, header-routed), where nothing public is at stake
  and they pass unjudged. With enough requests, a bad canary fails in any stage.
- A missing value where a limit applies is inconclusive, and so is a relative limit when stable
  has no data, unless an absolute limit already fails.
- A value equal to its limit passes. Any failed check fails the judgement; else any inconclusive
  check makes it inconclusive; else it passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.core.apps import MetricsConfig
from bot.core.durations import format_duration
from bot.core.errors import TemporaryError
from bot.core.text import number


class Metric(StrEnum):
    QPS = "qps"
    ERROR_RATE = "error_rate"
    P99_LATENCY = "p99_latency"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackReading:
    """One track's (canary's or stable's) traffic over the window; None where there is no data."""

    requests: float | None
    """Requests answered in the window."""
    qps: float | None
    error_rate: float | None
    """Failed (5xx) share of requests, a fraction: 0.05 is 5 %."""
    p99_ms: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    canary: TrackReading
    stable: TrackReading
    window_s: int
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Trend:
    """Recent values per metric, oldest first, evenly spaced over the window (None: no data)."""

    canary: dict[Metric, tuple[float | None, ...]]
    stable: dict[Metric, tuple[float | None, ...]]


@dataclass(frozen=True, slots=True)
class Sides:
    """Which pods a reading compares. By track label (the default): a canary's pods
    (`track: canary`) against stable's. By version: the pods whose version label is
    `canary_version` (blue-green's green) against those with `stable_version` (blue), whatever
    Deployment slot they run in."""

    canary_version: str | None = None
    stable_version: str | None = None

    @property
    def by_version(self) -> bool:
        return self.canary_version is not None


BY_TRACK = Sides()


class MetricsUnavailable(TemporaryError):
    """Prometheus could not answer (unreachable, timed out, query error): checks are
    inconclusive, never passed."""


# ---------------------------------------------------------------- the judgement


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricCheck:
    """One metric of one check, canary against stable, in display units."""

    metric: Metric
    canary: float | None
    """In display units: error rate in %, p99 in ms, QPS in req/s."""
    stable: float | None
    threshold: float | None
    """The limit that applied, in display units; None when none applied."""
    unit: str
    """'%', 'ms' or 'req/s'."""
    verdict: Verdict
    reason: str
    """One line for people, e.g. "error rate 12.4 % > max 5 %" (plain text, not mrkdwn)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    verdict: Verdict
    checks: tuple[MetricCheck, ...]
    """One per Metric, in Metric's order; empty when Prometheus could not answer."""
    reason: str
    """The first failed check's reason, or why it is inconclusive, or a pass line (plain text)."""

    @property
    def failed(self) -> tuple[MetricCheck, ...]:
        return tuple(check for check in self.checks if check.verdict is Verdict.FAILED)


@dataclass(frozen=True, slots=True)
class _Shown:
    """How a metric is named and displayed; `scale` turns reading units into display units."""

    label: str
    unit: str
    scale: float


_SHOWN = {
    Metric.QPS: _Shown("QPS", "req/s", 1),
    Metric.ERROR_RATE: _Shown("error rate", "%", 100),
    Metric.P99_LATENCY: _Shown("p99 latency", "ms", 1),
}


@dataclass(frozen=True, slots=True)
class _Ceiling:
    """Upper limits in reading units: absolute, and above stable's value."""

    max: float | None
    above_stable: float | None


@dataclass(frozen=True, slots=True)
class _Bound:
    value: float
    """In reading units."""
    text: str
    """How people read it, e.g. "max 5 %" or "1.4 % (stable 0.4 % + 1 point)"."""


def judge(reading: Reading, limits: MetricsConfig, *, public_traffic: bool) -> Judgement:
    """Canary against stable under the app's limits.

    `public_traffic` is False in a stage that sends the canary no public traffic (0 %,
    header-routed): too few requests there passes unjudged, and QPS is not checked.
    """
    shortage = _request_shortage(reading, limits.min_requests)
    latency = limits.p99_latency_ms
    ceilings = {
        Metric.ERROR_RATE: _Ceiling(
            max=limits.error_rate.max, above_stable=limits.error_rate.max_above_stable
        ),
        Metric.P99_LATENCY: (
            _Ceiling(max=latency.max, above_stable=latency.max_above_stable) if latency else None
        ),
    }
    checks = (
        _qps_check(reading, None if limits.qps is None else limits.qps.min, public_traffic),
        *(
            _ceiling_check(metric, reading, ceiling, shortage, public_traffic=public_traffic)
            for metric, ceiling in ceilings.items()
        ),
    )
    if shortage is not None and not public_traffic:
        passed = _not_judged(shortage)
    else:
        passed = "all checks passed"
    return _combine(checks, passed_reason=passed)


def _combine(checks: tuple[MetricCheck, ...], *, passed_reason: str) -> Judgement:
    failed = [check for check in checks if check.verdict is Verdict.FAILED]
    if failed:
        return Judgement(verdict=Verdict.FAILED, checks=checks, reason=failed[0].reason)
    unsure = [check.reason for check in checks if check.verdict is Verdict.INCONCLUSIVE]
    if unsure:
        reason = "; ".join(dict.fromkeys(unsure))  # error rate and p99 often share one
        return Judgement(verdict=Verdict.INCONCLUSIVE, checks=checks, reason=reason)
    return Judgement(verdict=Verdict.PASSED, checks=checks, reason=passed_reason)


def _not_judged(shortage: str) -> str:
    return f"not judged: {shortage}, and the canary takes no public traffic"


def _request_shortage(reading: Reading, min_requests: int) -> str | None:
    """Why the canary served too few requests to judge, or None when it served enough."""
    served = reading.canary.requests or 0.0  # no data: no requests seen
    if served >= min_requests:
        return None
    window = format_duration(reading.window_s)
    if served < 1:
        return f"no canary requests in {window}, need {min_requests:,}"
    return f"only {int(served):,} canary requests in {window}, need {min_requests:,}"


def _raw(track: TrackReading, metric: Metric) -> float | None:
    match metric:
        case Metric.QPS:
            return track.qps
        case Metric.ERROR_RATE:
            return track.error_rate
        case Metric.P99_LATENCY:
            return track.p99_ms


def _display(value: float | None, metric: Metric) -> float | None:
    return None if value is None else value * _SHOWN[metric].scale


def _check(
    metric: Metric,
    reading: Reading,
    *,
    verdict: Verdict,
    reason: str,
    threshold: float | None = None,
) -> MetricCheck:
    """A check of `metric` with the reading's values; `threshold` in reading units."""
    return MetricCheck(
        metric=metric,
        canary=_display(_raw(reading.canary, metric), metric),
        stable=_display(_raw(reading.stable, metric), metric),
        threshold=_display(threshold, metric),
        unit=_SHOWN[metric].unit,
        verdict=verdict,
        reason=reason,
    )


def _qps_check(reading: Reading, floor: float | None, public_traffic: bool) -> MetricCheck:
    metric = Metric.QPS
    if floor is None:
        return _check(metric, reading, verdict=Verdict.PASSED, reason="no minimum set")
    if not public_traffic:
        reason = "minimum not checked: the canary takes no public traffic"
        return _check(metric, reading, verdict=Verdict.PASSED, reason=reason)
    canary, stable = reading.canary.qps, reading.stable.qps
    if canary is None:
        reason = "no QPS data for the canary"
        return _check(metric, reading, verdict=Verdict.INCONCLUSIVE, reason=reason, threshold=floor)
    compared = f"QPS {_amount(canary, metric)} {{}} min {_amount(floor, metric)}"
    if canary >= floor or _same(canary, floor):
        passed = compared.format("≥")
        return _check(metric, reading, verdict=Verdict.PASSED, reason=passed, threshold=floor)
    if not stable:  # no traffic on either track: the canary is not the one starved of it
        # Worded without "<": an inconclusive reason travels into notices as mrkdwn.
        idle = f"{compared.format('is below')}, but stable serves no traffic either"
        return _check(metric, reading, verdict=Verdict.INCONCLUSIVE, reason=idle, threshold=floor)
    failed = compared.format("<")
    return _check(metric, reading, verdict=Verdict.FAILED, reason=failed, threshold=floor)


def _ceiling_check(
    metric: Metric,
    reading: Reading,
    ceiling: _Ceiling | None,
    shortage: str | None,
    *,
    public_traffic: bool,
) -> MetricCheck:
    if ceiling is None:
        return _check(metric, reading, verdict=Verdict.PASSED, reason="no limit set")
    label = _SHOWN[metric].label
    canary, stable = _raw(reading.canary, metric), _raw(reading.stable, metric)
    bounds = _bounds(metric, ceiling, stable)
    tightest = min(bounds, key=lambda bound: bound.value) if bounds else None
    threshold = tightest.value if tightest else None
    if shortage is not None and not public_traffic:
        return _check(metric, reading, verdict=Verdict.PASSED, reason=_not_judged(shortage))
    if shortage is not None:
        return _check(
            metric, reading, verdict=Verdict.INCONCLUSIVE, reason=shortage, threshold=threshold
        )
    if canary is None:
        reason = f"no {label} data for the canary"
        return _check(
            metric, reading, verdict=Verdict.INCONCLUSIVE, reason=reason, threshold=threshold
        )
    shown = _amount(canary, metric)
    # The absolute limit first: when both break, the alert names the rule people know ("5 %").
    broken = next(
        (bound for bound in bounds if not (canary <= bound.value or _same(canary, bound.value))),
        None,
    )
    if broken is not None:
        reason = f"{label} {shown} > {broken.text}"
        return _check(
            metric, reading, verdict=Verdict.FAILED, reason=reason, threshold=broken.value
        )
    if ceiling.above_stable is not None and stable is None:
        reason = f"no {label} data for stable, which max_above_stable compares against"
        return _check(
            metric, reading, verdict=Verdict.INCONCLUSIVE, reason=reason, threshold=threshold
        )
    assert tightest is not None  # a ceiling has at least one limit, and stable's is known here
    reason = f"{label} {shown} ≤ {tightest.text}"
    return _check(metric, reading, verdict=Verdict.PASSED, reason=reason, threshold=threshold)


def _bounds(metric: Metric, ceiling: _Ceiling, stable: float | None) -> list[_Bound]:
    """The limits that can be applied, absolute first; the relative one only if stable is known."""
    bounds = []
    if ceiling.max is not None:
        bounds.append(_Bound(ceiling.max, f"max {_amount(ceiling.max, metric)}"))
    if ceiling.above_stable is not None and stable is not None:
        limit = stable + ceiling.above_stable
        relative = f"stable {_amount(stable, metric)} + {_margin(ceiling.above_stable, metric)}"
        bounds.append(_Bound(limit, f"{_amount(limit, metric)} ({relative})"))
    return bounds


def _same(value: float, limit: float) -> bool:
    """Equal but for float rounding (stable 0.1 + margin 0.2 is 0.30000000000000004)."""
    return math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def _margin(margin: float, metric: Metric) -> str:
    """A relative limit's allowance: error rates in percentage points, others in their unit."""
    if metric is Metric.ERROR_RATE:
        points = number(margin * 100)
        return f"{points} point" + ("" if points == "1" else "s")
    return _amount(margin, metric)


def _amount(value: float, metric: Metric) -> str:
    """A reading-unit value as people read it: 0.124 error rate -> "12.4 %"."""
    shown = _SHOWN[metric]
    return f"{number(value * shown.scale)} {shown.unit}"


def label(metric: Metric) -> str:
    """How people call a metric: "error rate", "p99 latency", "QPS"."""
    return _SHOWN[metric].label


def amount(value: float, metric: Metric) -> str:
    """A reading-unit value as people read it (the judge and the charts say it the same way)."""
    return _amount(value, metric)


def margin(value: float, metric: Metric) -> str:
    """A difference as people read it: error rates in percentage points, others in their unit."""
    return _margin(value, metric)


def display(value: float | None, metric: Metric) -> float | None:
    """A reading-unit value in display units: an error rate of 0.05 is 5 (%)."""
    return _display(value, metric)


def unit(metric: Metric) -> str:
    return _SHOWN[metric].unit


# ---------------------------------------------------------------- Slack texts (mrkdwn)

_MARKS = {Verdict.PASSED: "✅", Verdict.FAILED: "❌", Verdict.INCONCLUSIVE: "❔"}
_NO_DATA = "—"
_SPARK_LEVELS = "▁▂▃▄▅▆▇█"
_SPARK_GAP = "·"
"""Stands for a point with no data in a sparkline."""
_SPARK_MAX_POINTS = 30
"""Longer series are squeezed to this many points, keeping each bucket's highest value."""
_REASON_MAX = 500
"""A judgement's reason is cut to this many characters in Slack texts (an error may be long)."""
# Canary and stable share one scale where their values compare (a canary error spike shows
# against a flat stable); QPS follows the traffic split, so each track gets its own scale.
_SHARED_SCALE = {Metric.ERROR_RATE, Metric.P99_LATENCY}


def summary_line(judgement: Judgement, reading: Reading) -> str:
    """One mrkdwn line for the release card: the verdict, why, and the numbers side by side."""
    head = f"{_MARKS[judgement.verdict]} *{judgement.verdict}*: {_reason_text(judgement)}"
    checks = {check.metric: check for check in judgement.checks}
    parts = [
        _summary_part(metric, reading, checks.get(metric))
        for metric in Metric
        if _raw(reading.canary, metric) is not None or _raw(reading.stable, metric) is not None
    ]
    if not parts:
        return head
    window = format_duration(reading.window_s)
    return f"{head} · canary vs stable over {window}: {', '.join(parts)}"


def _summary_part(metric: Metric, reading: Reading, check: MetricCheck | None) -> str:
    canary, stable = _track_values(metric, reading)
    text = f"{_SHOWN[metric].label} {canary} vs {stable}"
    if check is not None and check.verdict is not Verdict.PASSED:
        text += f" {_MARKS[check.verdict]}"
    return text


def snapshot_text(judgement: Judgement, reading: Reading, trend: Trend | None) -> str:
    """A snapshot for the release's thread (mrkdwn): the verdict and why, then one line per
    metric with canary vs stable, its verdict, its limit and the trend as sparklines.

    With a judgement that has no checks, metrics with no data at all are left out.
    """
    checks = {check.metric: check for check in judgement.checks}
    rows = [
        _snapshot_row(metric, reading, judgement, trend)
        for metric in Metric
        if metric in checks or _has_data(metric, reading, trend)
    ]
    headline = (
        f"{_MARKS[judgement.verdict]} *{judgement.verdict.capitalize()}*: {_reason_text(judgement)}"
    )
    return "\n".join([headline, *rows, _snapshot_footer(reading, trend)])


def _has_data(metric: Metric, reading: Reading, trend: Trend | None) -> bool:
    values = [_raw(reading.canary, metric), _raw(reading.stable, metric)]
    if trend is not None:
        values += [*trend.canary.get(metric, ()), *trend.stable.get(metric, ())]
    return any(value is not None for value in values)


def _snapshot_row(
    metric: Metric, reading: Reading, judgement: Judgement, trend: Trend | None
) -> str:
    check = next((check for check in judgement.checks if check.metric is metric), None)
    canary, stable = _track_values(metric, reading, missing="no data")
    verdict = check.verdict if check is not None else Verdict.INCONCLUSIVE
    if verdict is Verdict.FAILED:
        canary = f"*{canary}*"
    parts = [f"{_MARKS[verdict]} *{_SHOWN[metric].label}*: canary {canary} · stable {stable}"]
    if check is not None and check.threshold is not None:
        floor_or_ceiling = "min" if metric is Metric.QPS else "max"
        parts.append(f"{floor_or_ceiling} {number(check.threshold)} {check.unit}")
    if (
        check is not None
        and (check.threshold is None or verdict is Verdict.INCONCLUSIVE)
        and check.reason not in judgement.reason  # said once, in the headline
    ):
        parts.append(escape(check.reason))
    scale = _SHOWN[metric].scale
    limit = None if check is None or check.threshold is None else check.threshold / scale
    if trend is not None and (sparklines := _sparklines(metric, trend, limit=limit)):
        parts.append(sparklines)
    return " · ".join(parts)


def _snapshot_footer(reading: Reading, trend: Trend | None) -> str:
    parts = [f"canary vs stable over the last {format_duration(reading.window_s)}"]
    canary, stable = reading.canary.requests, reading.stable.requests
    if canary is not None or stable is not None:
        parts[0] += f": {_count(canary)} vs {_count(stable)} requests"
    if trend is not None:
        parts.append("trends oldest → newest")
    return f"_{' · '.join(parts)}_"


def _track_values(metric: Metric, reading: Reading, *, missing: str = _NO_DATA) -> tuple[str, str]:
    canary, stable = _raw(reading.canary, metric), _raw(reading.stable, metric)
    return (
        missing if canary is None else _amount(canary, metric),
        missing if stable is None else _amount(stable, metric),
    )


def _count(requests: float | None) -> str:
    return _NO_DATA if requests is None else f"{int(requests):,}"


def _reason_text(judgement: Judgement) -> str:
    reason = judgement.reason
    if len(reason) > _REASON_MAX:
        reason = reason[: _REASON_MAX - 1].rstrip() + "…"
    return escape(reason)


def escape(text: str) -> str:
    """Plain text made safe for mrkdwn: Slack reads <, > and & as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sparklines(metric: Metric, trend: Trend, *, limit: float | None) -> str:
    """`limit` (reading units) tops the shared scale when it is higher than every value, so a
    healthy series far below its threshold draws low bars instead of filling the line."""
    canary = _squeezed(trend.canary.get(metric, ()))
    stable = _squeezed(trend.stable.get(metric, ()))
    if not canary and not stable:
        return ""
    top = None
    if metric in _SHARED_SCALE:
        top = max(_top([*canary, *stable]), limit or 0.0)
    shown = [
        f"{name} `{_sparkline(series, top=top if top is not None else _top(series))}`"
        for name, series in (("canary", canary), ("stable", stable))
        if series
    ]
    return "trend " + " ".join(shown)


def _squeezed(values: Sequence[float | None]) -> list[float | None]:
    count = len(values)
    if count <= _SPARK_MAX_POINTS:
        return list(values)
    squeezed: list[float | None] = []
    for index in range(_SPARK_MAX_POINTS):
        bucket = values[
            index * count // _SPARK_MAX_POINTS : (index + 1) * count // _SPARK_MAX_POINTS
        ]
        present = [value for value in bucket if value is not None]
        squeezed.append(max(present) if present else None)
    return squeezed


def _top(values: Sequence[float | None]) -> float:
    return max((value for value in values if value is not None), default=0.0)


def _sparkline(values: Sequence[float | None], *, top: float) -> str:
    """Bars from zero (▁) to `top` (█): heights compare with the peak, so noise stays small."""
    highest = len(_SPARK_LEVELS) - 1
    return "".join(
        _SPARK_GAP
        if value is None
        else _SPARK_LEVELS[min(highest, max(0, round(value / top * highest))) if top > 0 else 0]
        for value in values
    )
