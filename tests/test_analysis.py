"""The canary judgement and its Slack texts (bot.core.analysis): pure, so no service is started.

Run by pytest. Readings are built by hand (the Prometheus adapter's tests read real ones); limits
are the MetricsConfig objects the apps file loads into.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from bot.core.analysis import (
    Judgement,
    Metric,
    MetricCheck,
    Reading,
    TrackReading,
    Trend,
    Verdict,
    judge,
    snapshot_text,
    summary_line,
)
from bot.core.apps import ErrorRateLimits, LatencyLimits, MetricsConfig, QpsLimits

AT = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
PASSED, FAILED, INCONCLUSIVE = Verdict.PASSED, Verdict.FAILED, Verdict.INCONCLUSIVE


def track(
    *,
    requests: float | None = 1000,
    qps: float | None = 3.3,
    error_rate: float | None = 0.01,
    p99_ms: float | None = 120,
) -> TrackReading:
    return TrackReading(requests=requests, qps=qps, error_rate=error_rate, p99_ms=p99_ms)


def reading(
    canary: TrackReading | None = None, stable: TrackReading | None = None, *, window_s: int = 300
) -> Reading:
    return Reading(canary=canary or track(), stable=stable or track(), window_s=window_s, at=AT)


NO_DATA = TrackReading(requests=None, qps=None, error_rate=None, p99_ms=None)


def limits(
    *,
    max_error: float = 0.05,
    error_above_stable: float | None = None,
    p99: LatencyLimits | None = None,
    qps_min: float | None = None,
    min_requests: int = 50,
) -> MetricsConfig:
    return MetricsConfig(
        error_rate=ErrorRateLimits(max=max_error, max_above_stable=error_above_stable),
        p99_latency_ms=p99,
        qps=None if qps_min is None else QpsLimits(min=qps_min),
        min_requests=min_requests,
    )


def check_of(judgement: Judgement, metric: Metric) -> MetricCheck:
    (check,) = [check for check in judgement.checks if check.metric is metric]
    return check


@dataclass(frozen=True)
class Case:
    """One metric's check: the reading's values, the limits, and what the check must say."""

    verdict: Verdict
    threshold: float | None
    reason: str
    canary: dict[str, float | None] = field(default_factory=dict)
    stable: dict[str, float | None] = field(default_factory=dict)
    limits: MetricsConfig = field(default_factory=limits)
    public_traffic: bool = True


def judged(case: Case) -> Judgement:
    return judge(
        reading(track(**case.canary), track(**case.stable)),
        case.limits,
        public_traffic=case.public_traffic,
    )


# ---------------------------------------------------------------- error rate

ERROR_RATE_CASES = {
    "well below max": Case(PASSED, 5, "error rate 1 % ≤ max 5 %"),
    "exactly at max passes": Case(PASSED, 5, "error rate 5 % ≤ max 5 %", {"error_rate": 0.05}),
    "just above max": Case(FAILED, 5, "error rate 5.01 % > max 5 %", {"error_rate": 0.0501}),
    "far above max": Case(FAILED, 5, "error rate 12.4 % > max 5 %", {"error_rate": 0.124}),
    "every request failing": Case(FAILED, 5, "error rate 100 % > max 5 %", {"error_rate": 1.0}),
    "max 0 with no errors": Case(
        PASSED, 0, "error rate 0 % ≤ max 0 %", {"error_rate": 0.0}, limits=limits(max_error=0)
    ),
    "max 0 with one error in a thousand": Case(
        FAILED, 0, "error rate 0.1 % > max 0 %", {"error_rate": 0.001}, limits=limits(max_error=0)
    ),
    "relative limit tighter than max, within it": Case(
        PASSED,
        2,
        "error rate 1.5 % ≤ 2 % (stable 1 % + 1 point)",
        {"error_rate": 0.015},
        limits=limits(error_above_stable=0.01),
    ),
    "exactly at stable plus the margin passes": Case(
        PASSED,
        2,
        "error rate 2 % ≤ 2 % (stable 1 % + 1 point)",
        {"error_rate": 0.02},
        limits=limits(error_above_stable=0.01),
    ),
    "stable plus margin with float rounding (0.1 + 0.2) passes": Case(
        PASSED,
        30,
        "error rate 30 % ≤ 30 % (stable 10 % + 20 points)",
        {"error_rate": 0.3},
        {"error_rate": 0.1},
        limits=limits(max_error=0.5, error_above_stable=0.2),
    ),
    "above the relative limit only": Case(
        FAILED,
        2,
        "error rate 2.5 % > 2 % (stable 1 % + 1 point)",
        {"error_rate": 0.025},
        limits=limits(error_above_stable=0.01),
    ),
    "half a point margin": Case(
        FAILED,
        1.5,
        "error rate 1.6 % > 1.5 % (stable 1 % + 0.5 points)",
        {"error_rate": 0.016},
        limits=limits(error_above_stable=0.005),
    ),
    "above both limits: the absolute one is named": Case(
        FAILED,
        5,
        "error rate 8 % > max 5 %",
        {"error_rate": 0.08},
        limits=limits(error_above_stable=0.01),
    ),
    "relative limit looser than max: max is the threshold": Case(
        PASSED,
        5,
        "error rate 5 % ≤ max 5 %",
        {"error_rate": 0.05},
        {"error_rate": 0.045},
        limits=limits(error_above_stable=0.01),
    ),
    "canary without data": Case(
        INCONCLUSIVE, 5, "no error rate data for the canary", {"error_rate": None}
    ),
    "stable without data, relative limit set": Case(
        INCONCLUSIVE,
        5,
        "no error rate data for stable, which max_above_stable compares against",
        stable={"error_rate": None},
        limits=limits(error_above_stable=0.01),
    ),
    "stable without data, but the absolute limit already fails": Case(
        FAILED,
        5,
        "error rate 9 % > max 5 %",
        {"error_rate": 0.09},
        {"error_rate": None},
        limits=limits(error_above_stable=0.01),
    ),
    "stable without data and no relative limit": Case(
        PASSED, 5, "error rate 1 % ≤ max 5 %", stable={"error_rate": None}
    ),
}


@pytest.mark.parametrize("case", ERROR_RATE_CASES.values(), ids=ERROR_RATE_CASES.keys())
def test_error_rate(case: Case) -> None:
    check = check_of(judged(case), Metric.ERROR_RATE)
    assert (check.verdict, check.reason) == (case.verdict, case.reason)
    assert check.threshold == pytest.approx(case.threshold)
    assert check.unit == "%"


# ---------------------------------------------------------------- p99 latency

BOTH = LatencyLimits(max=800, max_above_stable=200)
P99_CASES = {
    "no limit set: passes and still shows the values": Case(
        PASSED, None, "no limit set", {"p99_ms": 5000}
    ),
    "no limit set and no data": Case(PASSED, None, "no limit set", {"p99_ms": None}),
    "below max": Case(
        PASSED, 800, "p99 latency 120 ms ≤ max 800 ms", limits=limits(p99=LatencyLimits(max=800))
    ),
    "exactly at max passes": Case(
        PASSED,
        800,
        "p99 latency 800 ms ≤ max 800 ms",
        {"p99_ms": 800},
        limits=limits(p99=LatencyLimits(max=800)),
    ),
    "half a millisecond above max": Case(
        FAILED,
        800,
        "p99 latency 800.5 ms > max 800 ms",
        {"p99_ms": 800.5},
        limits=limits(p99=LatencyLimits(max=800)),
    ),
    "exactly at stable plus the margin passes": Case(
        PASSED,
        700,
        "p99 latency 700 ms ≤ 700 ms (stable 500 ms + 200 ms)",
        {"p99_ms": 700},
        {"p99_ms": 500},
        limits=limits(p99=BOTH),
    ),
    "above stable plus the margin": Case(
        FAILED,
        700,
        "p99 latency 701 ms > 700 ms (stable 500 ms + 200 ms)",
        {"p99_ms": 701},
        {"p99_ms": 500},
        limits=limits(p99=BOTH),
    ),
    "above both: the absolute limit is named": Case(
        FAILED,
        800,
        "p99 latency 950 ms > max 800 ms",
        {"p99_ms": 950},
        {"p99_ms": 500},
        limits=limits(p99=BOTH),
    ),
    "canary without data": Case(
        INCONCLUSIVE,
        320,
        "no p99 latency data for the canary",
        {"p99_ms": None},
        limits=limits(p99=BOTH),
    ),
    "only a relative limit and stable without data": Case(
        INCONCLUSIVE,
        None,
        "no p99 latency data for stable, which max_above_stable compares against",
        stable={"p99_ms": None},
        limits=limits(p99=LatencyLimits(max_above_stable=200)),
    ),
}


@pytest.mark.parametrize("case", P99_CASES.values(), ids=P99_CASES.keys())
def test_p99_latency(case: Case) -> None:
    check = check_of(judged(case), Metric.P99_LATENCY)
    assert (check.verdict, check.reason) == (case.verdict, case.reason)
    assert check.threshold == pytest.approx(case.threshold)
    assert check.unit == "ms"


# ---------------------------------------------------------------- QPS

QPS_CASES = {
    "no minimum set: passes and still shows the values": Case(
        PASSED, None, "no minimum set", {"qps": 0.01}
    ),
    "above the minimum": Case(PASSED, 2, "QPS 3.3 req/s ≥ min 2 req/s", limits=limits(qps_min=2)),
    "exactly at the minimum passes": Case(
        PASSED, 2, "QPS 2 req/s ≥ min 2 req/s", {"qps": 2.0}, limits=limits(qps_min=2)
    ),
    "below the minimum while stable serves traffic": Case(
        FAILED, 2, "QPS 1.99 req/s < min 2 req/s", {"qps": 1.99}, limits=limits(qps_min=2)
    ),
    "below the minimum while stable serves nothing either": Case(
        INCONCLUSIVE,
        2,
        "QPS 0.5 req/s is below min 2 req/s, but stable serves no traffic either",
        {"qps": 0.5},
        {"qps": 0.0},
        limits=limits(qps_min=2),
    ),
    "below the minimum and no stable data": Case(
        INCONCLUSIVE,
        2,
        "QPS 0.5 req/s is below min 2 req/s, but stable serves no traffic either",
        {"qps": 0.5},
        {"qps": None},
        limits=limits(qps_min=2),
    ),
    "canary without data": Case(
        INCONCLUSIVE, 2, "no QPS data for the canary", {"qps": None}, limits=limits(qps_min=2)
    ),
    "no public traffic: the minimum is not checked": Case(
        PASSED,
        None,
        "minimum not checked: the canary takes no public traffic",
        {"qps": 0.01},
        limits=limits(qps_min=2),
        public_traffic=False,
    ),
}


@pytest.mark.parametrize("case", QPS_CASES.values(), ids=QPS_CASES.keys())
def test_qps(case: Case) -> None:
    check = check_of(judged(case), Metric.QPS)
    assert (check.verdict, check.reason) == (case.verdict, case.reason)
    assert check.threshold == pytest.approx(case.threshold)
    assert check.unit == "req/s"


ALL_CASES = [*ERROR_RATE_CASES.values(), *P99_CASES.values(), *QPS_CASES.values()]


@pytest.mark.parametrize("case", ALL_CASES)
def test_a_failed_check_always_names_its_value_and_threshold(case: Case) -> None:
    for check in judged(case).failed:
        assert check.canary is not None
        assert check.threshold is not None


# ---------------------------------------------------------------- too few requests

FEW_REQUEST_CASES = {
    # name: (canary requests, min_requests, window_s, the reason)
    "a few": (12, 50, 300, "only 12 canary requests in 5m, need 50"),
    "one short, fractional (increase() is a float)": (
        49.9,
        50,
        300,
        "only 49 canary requests in 5m, need 50",
    ),
    "thousands": (1234, 5000, 3600, "only 1,234 canary requests in 1h, need 5,000"),
    "none": (0, 50, 300, "no canary requests in 5m, need 50"),
    "no data counts as none": (None, 50, 300, "no canary requests in 5m, need 50"),
}


@pytest.mark.parametrize(
    "requests, min_requests, window_s, reason",
    FEW_REQUEST_CASES.values(),
    ids=FEW_REQUEST_CASES.keys(),
)
def test_too_few_canary_requests_is_inconclusive_in_a_public_stage(
    requests: float | None, min_requests: int, window_s: int, reason: str
) -> None:
    few = reading(track(requests=requests, error_rate=0.5), window_s=window_s)
    judgement = judge(
        few, limits(min_requests=min_requests, p99=LatencyLimits(max=800)), public_traffic=True
    )
    assert judgement.verdict is INCONCLUSIVE  # even at 50 % errors: too few to call it
    assert judgement.reason == reason  # said once, though two checks give it
    assert [(c.metric, c.verdict) for c in judgement.checks] == [
        (Metric.QPS, PASSED),
        (Metric.ERROR_RATE, INCONCLUSIVE),
        (Metric.P99_LATENCY, INCONCLUSIVE),
    ]
    assert check_of(judgement, Metric.ERROR_RATE).threshold == 5  # the limit still shows


def test_exactly_min_requests_is_enough_to_judge() -> None:
    judgement = judge(reading(track(requests=50)), limits(min_requests=50), public_traffic=True)
    assert judgement.verdict is PASSED
    assert judgement.reason == "all checks passed"


def test_min_requests_zero_judges_even_without_a_request_count() -> None:
    no_count = reading(track(requests=None, error_rate=0.2))
    judgement = judge(no_count, limits(min_requests=0), public_traffic=True)
    assert judgement.verdict is FAILED
    assert judgement.reason == "error rate 20 % > max 5 %"


def test_too_few_requests_without_public_traffic_passes_unjudged() -> None:
    few = reading(track(requests=3, error_rate=1.0, p99_ms=9000, qps=0.01))
    strict = limits(p99=LatencyLimits(max=800), qps_min=2)
    judgement = judge(few, strict, public_traffic=False)
    note = (
        "not judged: only 3 canary requests in 5m, need 50, and the canary takes no public traffic"
    )
    assert judgement.verdict is PASSED
    assert judgement.reason == note
    assert [(c.verdict, c.threshold) for c in judgement.checks] == [(PASSED, None)] * 3
    assert check_of(judgement, Metric.ERROR_RATE).reason == note
    assert check_of(judgement, Metric.ERROR_RATE).canary == 100  # the values are still shown


def test_enough_requests_without_public_traffic_still_fail_a_bad_canary() -> None:
    bad = reading(track(requests=400, error_rate=0.2, qps=0.01))
    judgement = judge(bad, limits(qps_min=2), public_traffic=False)
    assert judgement.verdict is FAILED
    assert judgement.reason == "error rate 20 % > max 5 %"
    assert [check.metric for check in judgement.failed] == [Metric.ERROR_RATE]


def test_enough_requests_without_public_traffic_pass_a_good_canary() -> None:
    judgement = judge(reading(), limits(qps_min=2), public_traffic=False)
    assert judgement.verdict is PASSED
    assert judgement.reason == "all checks passed"


def test_too_few_requests_do_not_hide_a_starved_canary() -> None:
    """The QPS floor is about traffic itself: a canary getting almost none, while stable is
    busy, fails even though its error rate cannot be judged."""
    starved = reading(track(requests=6, qps=0.02), track(qps=300))
    judgement = judge(starved, limits(qps_min=2), public_traffic=True)
    assert judgement.verdict is FAILED
    assert judgement.reason == "QPS 0.02 req/s < min 2 req/s"


# ---------------------------------------------------------------- combining the checks


def test_failure_wins_over_inconclusive_and_the_first_failure_is_the_reason() -> None:
    bad = reading(track(qps=0.5, error_rate=0.3, p99_ms=None), track(qps=200))
    judgement = judge(bad, limits(qps_min=2, p99=LatencyLimits(max=800)), public_traffic=True)
    assert judgement.verdict is FAILED
    assert [check.metric for check in judgement.failed] == [Metric.QPS, Metric.ERROR_RATE]
    assert judgement.reason == "QPS 0.5 req/s < min 2 req/s"
    assert check_of(judgement, Metric.P99_LATENCY).verdict is INCONCLUSIVE


def test_inconclusive_wins_over_passed_and_names_every_distinct_reason() -> None:
    unsure = reading(track(qps=None, p99_ms=None))
    judgement = judge(unsure, limits(qps_min=2, p99=LatencyLimits(max=800)), public_traffic=True)
    assert judgement.verdict is INCONCLUSIVE
    assert judgement.reason == "no QPS data for the canary; no p99 latency data for the canary"
    assert judgement.failed == ()


def test_a_judgement_has_one_check_per_metric_in_order_in_display_units() -> None:
    values = reading(
        track(qps=12.5, error_rate=0.124, p99_ms=310), track(qps=230, error_rate=0.003, p99_ms=95)
    )
    judgement = judge(values, limits(), public_traffic=True)
    shown = [(c.metric, c.canary, c.stable, c.unit) for c in judgement.checks]
    assert shown == [
        (Metric.QPS, 12.5, 230, "req/s"),
        (Metric.ERROR_RATE, pytest.approx(12.4), pytest.approx(0.3), "%"),
        (Metric.P99_LATENCY, 310, 95, "ms"),
    ]


def no_checks(reason: str) -> Judgement:
    """A judgement with no checks at all, as when nothing could be read."""
    return Judgement(verdict=INCONCLUSIVE, checks=(), reason=reason)


# ---------------------------------------------------------------- the card's summary line

BAD = reading(
    track(requests=3120, qps=10.4, error_rate=0.124, p99_ms=310),
    track(requests=61000, qps=203.3, error_rate=0.003, p99_ms=120),
)


def test_summary_line_of_a_pass() -> None:
    good = reading(
        track(qps=10.4, error_rate=0.004, p99_ms=130), track(qps=203.3, error_rate=0.003)
    )
    line = summary_line(judge(good, limits(), public_traffic=True), good)
    assert line == (
        "✅ *passed*: all checks passed · canary vs stable over 5m: QPS 10.4 req/s vs 203.3 req/s, "
        "error rate 0.4 % vs 0.3 %, p99 latency 130 ms vs 120 ms"
    )


def test_summary_line_of_a_failure_marks_the_metric_and_escapes_the_reason() -> None:
    line = summary_line(judge(BAD, limits(), public_traffic=True), BAD)
    assert line == (
        "❌ *failed*: error rate 12.4 % &gt; max 5 % · canary vs stable over 5m: "
        "QPS 10.4 req/s vs 203.3 req/s, error rate 12.4 % vs 0.3 % ❌, p99 latency 310 ms vs 120 ms"
    )
    assert "\n" not in line


def test_summary_line_shows_missing_values_and_leaves_out_metrics_without_any() -> None:
    partial = reading(track(p99_ms=None), track(p99_ms=None, qps=None))
    line = summary_line(judge(partial, limits(), public_traffic=True), partial)
    assert line.endswith(": QPS 3.3 req/s vs —, error rate 1 % vs 1 %")


def test_summary_line_of_an_unavailable_prometheus_is_the_reason_alone() -> None:
    judgement = no_checks("Prometheus <prom> said: a & b " + "x" * 1000)
    line = summary_line(judgement, reading(NO_DATA, NO_DATA))
    assert line.startswith("❔ *inconclusive*: Prometheus &lt;prom&gt; said: a &amp; b xxx")
    assert line.endswith("x…")
    assert len(line) < 600


# ---------------------------------------------------------------- the thread's snapshot

TREND = Trend(
    canary={
        Metric.QPS: (9.0, 10.0, 11.0, None, 10.0, 10.4),
        Metric.ERROR_RATE: (0.0, 0.0, 0.01, 0.05, 0.12, 0.124),
        Metric.P99_LATENCY: (100.0, 120.0, 300.0, 310.0, None, 310.0),
    },
    stable={
        Metric.QPS: (200.0, 201.0, 199.0, 203.0, 204.0, 203.0),
        Metric.ERROR_RATE: (0.003,) * 6,
        Metric.P99_LATENCY: (120.0,) * 6,
    },
)


def test_snapshot_of_a_failing_canary_reads_at_a_glance() -> None:
    strict = limits(p99=LatencyLimits(max=800, max_above_stable=200), qps_min=2)
    text = snapshot_text(judge(BAD, strict, public_traffic=True), BAD, TREND)
    assert text.splitlines() == [
        "❌ *Failed*: error rate 12.4 % &gt; max 5 %",
        "✅ *QPS*: canary 10.4 req/s · stable 203.3 req/s · min 2 req/s"
        " · trend canary `▇▇█·▇█` stable `██████`",
        "❌ *error rate*: canary *12.4 %* · stable 0.3 % · max 5 %"
        " · trend canary `▁▁▂▄██` stable `▁▁▁▁▁▁`",
        "✅ *p99 latency*: canary 310 ms · stable 120 ms · max 320 ms"
        " · trend canary `▃▄██·█` stable `▄▄▄▄▄▄`",
        "_canary vs stable over the last 5m: 3,120 vs 61,000 requests · trends oldest → newest_",
    ]


def test_snapshot_says_why_a_metric_has_no_limit_or_is_inconclusive() -> None:
    unsure = reading(track(p99_ms=None, qps=0.5), track(qps=0.0))
    text = snapshot_text(judge(unsure, limits(qps_min=2), public_traffic=True), unsure, None)
    lines = text.splitlines()
    assert lines[0] == (
        "❔ *Inconclusive*: QPS 0.5 req/s is below min 2 req/s, but stable serves no traffic either"
    )
    assert lines[1] == "❔ *QPS*: canary 0.5 req/s · stable 0 req/s · min 2 req/s"  # said above
    assert lines[2] == "✅ *error rate*: canary 1 % · stable 1 % · max 5 %"
    assert lines[3] == "✅ *p99 latency*: canary no data · stable 120 ms · no limit set"
    assert lines[4] == "_canary vs stable over the last 5m: 1,000 vs 1,000 requests_"


def test_snapshot_names_an_inconclusive_metric_that_the_headline_does_not() -> None:
    mixed = reading(track(qps=0.5, p99_ms=None), track(qps=100))
    strict = limits(qps_min=2, p99=LatencyLimits(max=800))
    lines = snapshot_text(judge(mixed, strict, public_traffic=True), mixed, None).splitlines()
    assert lines[0] == "❌ *Failed*: QPS 0.5 req/s &lt; min 2 req/s"
    assert lines[3] == (
        "❔ *p99 latency*: canary no data · stable 120 ms · max 800 ms"
        " · no p99 latency data for the canary"
    )


def test_snapshot_of_a_stage_without_public_traffic_says_once_that_nothing_was_judged() -> None:
    few = reading(track(requests=3, qps=0.01))
    text = snapshot_text(judge(few, limits(qps_min=2), public_traffic=False), few, None)
    lines = text.splitlines()
    assert lines[0] == (
        "✅ *Passed*: not judged: only 3 canary requests in 5m, need 50, "
        "and the canary takes no public traffic"
    )
    assert lines[1] == (
        "✅ *QPS*: canary 0.01 req/s · stable 3.3 req/s"
        " · minimum not checked: the canary takes no public traffic"
    )
    assert lines[2] == "✅ *error rate*: canary 1 % · stable 1 %"
    assert text.count("need 50") == 1


def test_snapshot_of_an_unavailable_prometheus_shows_only_what_there_is() -> None:
    judgement = no_checks("Prometheus at http://prometheus:9090 did not answer within 5s")
    bare = snapshot_text(judgement, reading(NO_DATA, NO_DATA), None)
    assert bare.splitlines() == [
        "❔ *Inconclusive*: Prometheus at http://prometheus:9090 did not answer within 5s",
        "_canary vs stable over the last 5m_",
    ]
    trend = Trend(canary={Metric.ERROR_RATE: (0.01, 0.02)}, stable={})
    with_trend = snapshot_text(judgement, reading(NO_DATA, NO_DATA), trend).splitlines()
    assert with_trend[1] == ("❔ *error rate*: canary no data · stable no data · trend canary `▅█`")
    assert len(with_trend) == 3


# Sparklines: QPS gives each track its own scale, so a series renders on its own here.

SPARKLINES = {
    "rising through every level": ((0, 1, 2, 3, 4, 5, 6, 7), "▁▂▃▄▅▆▇█"),
    "falling": ((7, 3.5, 0), "█▅▁"),
    "flat above zero sits at the top": ((5, 5, 5, 5), "████"),
    "flat at zero sits at the bottom": ((0, 0, 0), "▁▁▁"),
    "a single point": ((42,), "█"),
    "gaps": ((7, None, 7, None), "█·█·"),
    "only gaps": ((None, None, None), "···"),
    "gaps and zeros": ((None, 0, None), "·▁·"),
    "small noise on a high level stays small": ((100, 99, 101, 100), "████"),
    "a spike against a low base": ((1, 1, 70, 1), "▁▁█▁"),
}


def canary_sparkline(text: str, metric_label: str) -> str | None:
    row = next(line for line in text.splitlines() if line.startswith(f"✅ *{metric_label}*"))
    found = re.search(r"canary `([^`]*)`", row)
    return found[1] if found else None


@pytest.mark.parametrize("series, expected", SPARKLINES.values(), ids=SPARKLINES.keys())
def test_sparkline(series: tuple[float | None, ...], expected: str) -> None:
    trend = Trend(canary={Metric.QPS: series}, stable={})
    text = snapshot_text(judge(reading(), limits(), public_traffic=True), reading(), trend)
    assert canary_sparkline(text, "QPS") == expected


def test_canary_and_stable_share_a_scale_for_error_rate_and_latency_but_not_qps() -> None:
    trend = Trend(
        canary={Metric.QPS: (1, 7), Metric.ERROR_RATE: (0.0, 0.1), Metric.P99_LATENCY: (100, 700)},
        stable={
            Metric.QPS: (100, 700),
            Metric.ERROR_RATE: (0.005,) * 2,
            Metric.P99_LATENCY: (100,) * 2,
        },
    )
    rows = snapshot_text(judge(reading(), limits(), public_traffic=True), reading(), trend)
    qps, error_rate, latency = rows.splitlines()[1:4]
    assert qps.endswith("trend canary `▂█` stable `▂█`")  # each its own shape
    assert error_rate.endswith("trend canary `▁█` stable `▁▁`")  # stable is flat and low
    assert latency.endswith("trend canary `▂█` stable `▂▂`")


def test_a_healthy_series_far_below_its_limit_draws_low_bars() -> None:
    trend = Trend(
        canary={Metric.ERROR_RATE: (0.002, 0.003, 0.004)}, stable={Metric.ERROR_RATE: (0.003,) * 3}
    )
    rows = snapshot_text(judge(reading(), limits(), public_traffic=True), reading(), trend)
    error_rate = rows.splitlines()[2]
    assert error_rate.endswith("trend canary `▁▁▂` stable `▁▁▁`")  # scaled to the 5 % limit


def test_a_long_series_is_squeezed_keeping_its_spikes() -> None:
    series = [0.0] * 300
    series[151] = 9.0  # one bad sample in the middle
    trend = Trend(canary={Metric.QPS: tuple(series)}, stable={})
    text = snapshot_text(judge(reading(), limits(), public_traffic=True), reading(), trend)
    assert canary_sparkline(text, "QPS") == "▁" * 15 + "█" + "▁" * 14


def test_a_metric_missing_from_the_trend_has_no_sparkline() -> None:
    trend = Trend(canary={Metric.QPS: (1, 2)}, stable={Metric.QPS: ()})
    text = snapshot_text(judge(reading(), limits(), public_traffic=True), reading(), trend)
    assert canary_sparkline(text, "QPS") == "▅█"
    assert "stable `" not in text
    assert canary_sparkline(text, "error rate") is None
    assert text.endswith("· trends oldest → newest_")


def test_without_a_trend_there_are_no_sparklines() -> None:
    text = snapshot_text(judge(BAD, limits(), public_traffic=True), BAD, None)
    assert "trend" not in text
    assert "`" not in text


def test_a_snapshot_stays_within_one_slack_text_whatever_it_is_given() -> None:
    huge = tuple(float(index % 17) for index in range(10_000))
    trend = Trend(canary=dict.fromkeys(Metric, huge), stable=dict.fromkeys(Metric, huge))
    judgement = no_checks("x" * 20_000)
    text = snapshot_text(judgement, BAD, trend)
    assert len(text) <= 3000
    assert len(text.splitlines()) == 5
    assert all(len(canary_or_stable) == 30 for canary_or_stable in re.findall(r"`([^`]*)`", text))
