"""The statistical judge (bot.core.judge) on synthetic series whose answer is known.

Each series is drawn from a seeded random generator, so every run sees the same samples; the
expected verdicts hold with a wide margin for these sizes (20 intervals per track)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from bot.core.analysis import Metric, Trend
from bot.core.apps import JudgeConfig
from bot.core.judge import Outcome, Overall, judge_statistically

SAMPLES = 20


def config(**metrics: object) -> JudgeConfig:
    return JudgeConfig.model_validate(
        {
            "kind": "mann-whitney",
            "samples": SAMPLES,
            "min_samples": 8,
            "metrics": metrics or {"error_rate": {"allowed_effect": 0.002}},
        }
    )


def series(draw: Callable[[random.Random], float | None], *, seed: int) -> tuple[float | None, ...]:
    rng = random.Random(seed)
    return tuple(draw(rng) for _ in range(SAMPLES))


def trend(
    canary: tuple[float | None, ...],
    stable: tuple[float | None, ...],
    *,
    latency: tuple[tuple[float | None, ...], tuple[float | None, ...]] | None = None,
) -> Trend:
    canary_latency, stable_latency = latency or ((None,) * SAMPLES, (None,) * SAMPLES)
    return Trend(
        canary={Metric.ERROR_RATE: canary, Metric.P99_LATENCY: canary_latency},
        stable={Metric.ERROR_RATE: stable, Metric.P99_LATENCY: stable_latency},
    )


def around(center: float, spread: float) -> Callable[[random.Random], float]:
    return lambda rng: max(0.0, rng.gauss(center, spread))


def test_identical_distributions_pass_with_a_full_score() -> None:
    result = judge_statistically(
        trend(series(around(0.01, 0.002), seed=1), series(around(0.01, 0.002), seed=2)), config()
    )

    assert result.overall is Overall.PASS and result.score == 100
    (error_rate,) = result.metrics
    assert error_rate.outcome is Outcome.PASS
    assert error_rate.p_value is not None and error_rate.p_value > 0.05
    assert "not significant at 95 % confidence" in error_rate.why
    assert result.reason == "statistical judge: pass, score 100 (pass ≥ 95, marginal ≥ 75)"


def test_all_zero_error_rates_on_both_tracks_pass() -> None:
    zeros = (0.0,) * SAMPLES
    result = judge_statistically(trend(zeros, zeros), config())

    assert result.overall is Overall.PASS
    assert result.metrics[0].p_value == 1.0 and result.metrics[0].shift == 0.0


def test_a_shifted_error_rate_fails_and_says_by_how_much() -> None:
    stable = series(around(0.01, 0.002), seed=2)
    canary = series(around(0.02, 0.002), seed=1)  # one point higher, allowed 0.2

    result = judge_statistically(trend(canary, stable), config())

    assert result.overall is Overall.FAIL and result.score == 0
    (error_rate,) = result.metrics
    assert error_rate.outcome is Outcome.FAIL
    assert error_rate.p_value is not None and error_rate.p_value < 0.001
    assert error_rate.shift == pytest.approx(0.01, abs=0.002)
    assert error_rate.limit == pytest.approx(error_rate.stable_median + 0.002)
    assert "significant at 95 % confidence" in error_rate.why
    assert (
        "fails: it moved up by" in error_rate.why
        and "more than the 0.2 points allowed" in error_rate.why
    )
    assert result.deciding is error_rate
    assert "error rate fail" in result.reason


def test_a_shift_within_the_allowed_effect_passes() -> None:
    stable = series(around(0.010, 0.0005), seed=2)
    canary = series(around(0.011, 0.0005), seed=1)  # significant, but only 0.1 point

    result = judge_statistically(trend(canary, stable), config())

    assert result.overall is Overall.PASS
    assert result.metrics[0].p_value is not None and result.metrics[0].p_value < 0.05
    assert "no harmful move beyond the 0.2 points allowed" in result.metrics[0].why


def test_a_move_the_harmless_way_passes() -> None:
    stable = series(around(0.02, 0.002), seed=2)
    canary = series(around(0.01, 0.002), seed=1)  # fewer errors than stable

    result = judge_statistically(trend(canary, stable), config())

    assert result.overall is Overall.PASS
    assert result.metrics[0].shift is not None and result.metrics[0].shift < 0


def test_direction_decrease_fails_a_drop() -> None:
    stable = series(around(0.02, 0.002), seed=2)
    canary = series(around(0.01, 0.002), seed=1)

    result = judge_statistically(
        trend(canary, stable), config(error_rate={"direction": "decrease"})
    )

    assert result.overall is Overall.FAIL
    assert "moved down by" in result.metrics[0].why


def test_high_variance_with_an_equal_median_is_reported_as_marginal() -> None:
    stable = series(around(0.02, 0.001), seed=2)
    wild = series(lambda rng: 0.02 + rng.choice((-1, 1)) * rng.uniform(0.005, 0.015), seed=3)

    result = judge_statistically(trend(wild, stable), config())

    (error_rate,) = result.metrics
    assert error_rate.outcome is Outcome.NOISY
    assert error_rate.p_value is not None and error_rate.p_value > 0.05  # medians agree
    assert "the canary spreads far wider (interquartile range" in error_rate.why
    assert result.overall is Overall.MARGINAL
    assert result.reason.startswith("statistical judge: marginal, score 100")
    assert "error rate noisy" in result.reason


def test_missing_data_never_passes_even_when_the_rest_is_perfect() -> None:
    perfect = series(around(0.01, 0.002), seed=1)
    latency = (series(around(100, 5), seed=4), series(lambda rng: None, seed=5))
    judged = config(error_rate={}, p99_latency_ms={"allowed_effect": 20})

    result = judge_statistically(trend(perfect, perfect, latency=latency), judged)

    assert result.overall is Overall.NO_DATA and result.score is None
    outcomes = {m.metric: m.outcome for m in result.metrics}
    assert outcomes == {Metric.ERROR_RATE: Outcome.PASS, Metric.P99_LATENCY: Outcome.NO_DATA}
    assert "missing data for p99 latency; it never promotes on it" in result.reason
    assert "20 canary and 0 stable samples, need 8 of each" in result.explanation


def test_a_few_gaps_are_left_out_not_counted_as_zero() -> None:
    stable = series(around(0.01, 0.002), seed=2)
    canary = series(
        lambda rng: None if rng.random() < 0.3 else max(0, rng.gauss(0.01, 0.002)), seed=6
    )

    result = judge_statistically(trend(canary, stable), config())

    (error_rate,) = result.metrics
    assert error_rate.samples[0] < SAMPLES and error_rate.samples[1] == SAMPLES
    assert result.overall is Overall.PASS


def test_a_critical_failure_fails_whatever_the_score() -> None:
    flat = series(around(100, 2), seed=7)
    stable_errors = series(around(0.01, 0.002), seed=2)
    worse_errors = series(around(0.03, 0.002), seed=1)
    judged = config(
        error_rate={"critical": True},
        p99_latency_ms={"allowed_effect": 20},
    )
    judged = judged.model_copy(update={"pass_score": 50.0, "marginal": 10.0})

    result = judge_statistically(trend(worse_errors, stable_errors, latency=(flat, flat)), judged)

    assert result.score == 50
    assert result.overall is Overall.FAIL
    assert "error rate is critical and failed" in result.reason


def test_the_explanation_names_each_metric_with_its_numbers() -> None:
    result = judge_statistically(
        trend(series(around(0.02, 0.002), seed=1), series(around(0.01, 0.002), seed=2)), config()
    )

    first, line = result.explanation.splitlines()
    assert first == result.reason
    assert line.startswith("• error rate: canary median 2")
    assert " % vs stable 0.9" in line and "shift +1.0" in line and "p = 6.8e-08" in line


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"marginal": 90, "pass": 80}, "marginal 90 is above pass 80"),
        ({"samples": 5, "min_samples": 6}, "min_samples 6 is above samples 5"),
        ({"metrics": {"error_rate": None}}, "judge at least one metric"),
        ({"confidence": 1}, "less than 1"),
    ],
)
def test_a_judge_config_that_cannot_work_is_refused(
    fields: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        JudgeConfig.model_validate({"kind": "mann-whitney", **fields})
