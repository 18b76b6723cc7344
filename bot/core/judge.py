"""The statistical judge: canary against stable, metric by metric, scored the way Kayenta does.

Called by the metric checks (bot.application.checks) after the thresholds pass, for apps that
set metrics.judge; its JudgeResult is shown in the snapshot (`explanation`) and decides whether
the check passes, pauses (marginal, missing data) or fails. Pure computation: scipy, no I/O.

Rules:
- Samples: one value per track per interval of the lookback (a Trend); an interval without a
  value on a track leaves that track one sample short.
- Missing data: fewer than min_samples on either track makes the metric NO DATA, and one such
  metric makes the whole judgement inconclusive whatever the others say: it never promotes.
- Per metric, a two-sided Mann-Whitney U test (scipy.stats.mannwhitneyu). The shift is the
  Hodges-Lehmann estimate: the median of every canary-minus-stable difference. The metric FAILS
  when the test is significant (p below 1 - confidence) and the shift goes the harmful way by
  more than allowed_effect; otherwise it PASSES.
- A passing metric whose canary spread (interquartile range) is at least twice stable's, with a
  Brown-Forsythe test (scipy.stats.levene on medians) significant at the same confidence, is
  NOISY: equal medians can hide a canary that is sometimes much worse. It scores as a pass but
  is never hidden: a judgement with a noisy metric is at best marginal, so a person looks.
- Score = 100 x (passes and noisy ones) / metrics judged. A critical metric's failure fails the
  judgement; else score >= pass passes (marginal if a metric is noisy), >= marginal is marginal,
  below fails.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.core.analysis import Metric, Trend, amount, label, margin
from bot.core.apps import JudgeConfig, JudgedMetric

NOISY_SPREAD_RATIO = 2.0
"""How many times wider than stable's the canary's spread must be to be reported as noisy."""


class Outcome(StrEnum):
    PASS = "pass"
    NOISY = "noisy"
    FAIL = "fail"
    NO_DATA = "no data"


class Overall(StrEnum):
    PASS = "pass"
    MARGINAL = "marginal"
    FAIL = "fail"
    NO_DATA = "no data"


_SCORES = {Outcome.PASS: 1.0, Outcome.NOISY: 1.0, Outcome.FAIL: 0.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricJudgement:
    """One metric, canary against stable; values in reading units (error rate a fraction)."""

    metric: Metric
    outcome: Outcome
    canary_median: float | None
    stable_median: float | None
    shift: float | None
    """Hodges-Lehmann estimate of canary minus stable; None with no data."""
    p_value: float | None
    limit: float | None
    """Stable's median moved the harmful way by the allowed effect: what the canary's median
    may reach (None with no data)."""
    samples: tuple[int, int]
    """How many samples the canary and stable had."""
    critical: bool
    why: str
    """Plain text: what moved, by how much, how sure, and why that passes or fails."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeResult:
    overall: Overall
    score: float | None
    """0..100; None when some metric had no data (nothing is scored then)."""
    metrics: tuple[MetricJudgement, ...]
    reason: str
    """One plain line: the verdict and the metric that decided it."""

    @property
    def explanation(self) -> str:
        """The reason, then one line per metric (plain text)."""
        return "\n".join([self.reason, *(f"• {label(m.metric)}: {m.why}" for m in self.metrics)])

    @property
    def deciding(self) -> MetricJudgement | None:
        """The metric a failure is blamed on: a critical failure first, else the first one."""
        failed = [m for m in self.metrics if m.outcome is Outcome.FAIL]
        return next((m for m in failed if m.critical), failed[0] if failed else None)


def judge_statistically(trend: Trend, config: JudgeConfig) -> JudgeResult:
    """Canary against stable over the trend's intervals under the app's judge config."""
    judged = config.metrics
    wanted = {Metric.ERROR_RATE: judged.error_rate, Metric.P99_LATENCY: judged.p99_latency_ms}
    alpha = 1 - config.confidence
    metrics = tuple(
        _judge_metric(
            metric,
            canary=_present(trend.canary.get(metric, ())),
            stable=_present(trend.stable.get(metric, ())),
            rule=rule,
            alpha=alpha,
            min_samples=config.min_samples,
        )
        for metric, rule in wanted.items()
        if rule is not None
    )
    return _overall(metrics, config)


def _present(values: Sequence[float | None]) -> list[float]:
    return [value for value in values if value is not None and math.isfinite(value)]


def _judge_metric(
    metric: Metric,
    *,
    canary: list[float],
    stable: list[float],
    rule: JudgedMetric,
    alpha: float,
    min_samples: int,
) -> MetricJudgement:
    counts = (len(canary), len(stable))
    if min(counts) < min_samples:
        why = (
            f"no data to judge: {counts[0]} canary and {counts[1]} stable samples, "
            f"need {min_samples} of each"
        )
        return MetricJudgement(
            metric=metric,
            outcome=Outcome.NO_DATA,
            canary_median=statistics.median(canary) if canary else None,
            stable_median=statistics.median(stable) if stable else None,
            shift=None,
            p_value=None,
            limit=None,
            samples=counts,
            critical=rule.critical,
            why=why,
        )
    p_value = _p_value(canary, stable)
    shift = statistics.median(c - s for c in canary for s in stable)  # Hodges-Lehmann
    harm = _harm(shift, rule.direction)
    canary_median, stable_median = statistics.median(canary), statistics.median(stable)
    limit = stable_median + _harmful_sign(shift, rule.direction) * rule.allowed_effect
    significant = p_value < alpha
    outcome = Outcome.FAIL if significant and harm > rule.allowed_effect else Outcome.PASS
    spread = _wider_spread(canary, stable, alpha) if outcome is Outcome.PASS else None
    if spread is not None:
        outcome = Outcome.NOISY
    medians = (
        f"canary median {amount(canary_median, metric)} vs stable "
        f"{amount(stable_median, metric)}, shift {_signed(shift, metric)}"
    )
    sureness = f"p = {p_value:.3g}, {'significant' if significant else 'not significant'} "
    sureness += f"at {_percent(1 - alpha)} confidence"
    return MetricJudgement(
        metric=metric,
        outcome=outcome,
        canary_median=canary_median,
        stable_median=stable_median,
        shift=shift,
        p_value=p_value,
        limit=limit,
        samples=counts,
        critical=rule.critical,
        why=f"{medians} ({sureness}): {_verdict_words(outcome, metric, rule, harm, spread)}",
    )


def _p_value(canary: list[float], stable: list[float]) -> float:
    """Two-sided Mann-Whitney U; identical samples (all ties) differ in nothing: 1."""
    if len(set(canary) | set(stable)) == 1:
        return 1.0
    from scipy import stats  # imported when first needed: it costs a second at start-up

    p_value = float(stats.mannwhitneyu(canary, stable, alternative="two-sided").pvalue)
    return p_value if math.isfinite(p_value) else 1.0


def _harm(shift: float, direction: str) -> float:
    """How far the shift goes the harmful way (0 or less: the harmless way)."""
    if direction == "increase":
        return shift
    if direction == "decrease":
        return -shift
    return abs(shift)


def _harmful_sign(shift: float, direction: str) -> float:
    """+1 when an increase harms, -1 when a decrease does; `either`: the way the shift went."""
    if direction == "either":
        return 1.0 if shift >= 0 else -1.0
    return 1.0 if direction == "increase" else -1.0


def _wider_spread(
    canary: list[float], stable: list[float], alpha: float
) -> tuple[float, float] | None:
    """The canary's and stable's IQR when the canary's is significantly and at least twice wider."""
    canary_iqr, stable_iqr = _iqr(canary), _iqr(stable)
    if canary_iqr <= 0 or canary_iqr < NOISY_SPREAD_RATIO * stable_iqr:
        return None
    import numpy as np  # imported when first needed, as scipy
    from scipy import stats

    with np.errstate(all="ignore"):
        p_value = float(stats.levene(canary, stable, center="median").pvalue)
    if not (math.isfinite(p_value) and p_value < alpha):
        return None
    return canary_iqr, stable_iqr


def _iqr(values: list[float]) -> float:
    lower, _, upper = statistics.quantiles(values, n=4, method="inclusive")
    return upper - lower


def _verdict_words(
    outcome: Outcome,
    metric: Metric,
    rule: JudgedMetric,
    harm: float,
    spread: tuple[float, float] | None,
) -> str:
    allowed = margin(rule.allowed_effect, metric)
    way = {"increase": "up", "decrease": "down", "either": "away"}[rule.direction]
    match outcome:
        case Outcome.FAIL:
            moved = margin(harm, metric)
            return f"fails: it moved {way} by {moved}, more than the {allowed} allowed"
        case Outcome.NOISY:
            assert spread is not None
            canary_iqr, stable_iqr = (amount(value, metric) for value in spread)
            return (
                f"noisy: medians agree, but the canary spreads far wider "
                f"(interquartile range {canary_iqr} vs {stable_iqr}): a person should look"
            )
        case _:
            if harm > rule.allowed_effect:
                return "passes: the move is within chance"
            return f"passes: no harmful move beyond the {allowed} allowed"


def _overall(metrics: tuple[MetricJudgement, ...], config: JudgeConfig) -> JudgeResult:
    thresholds = f"pass ≥ {config.pass_score:g}, marginal ≥ {config.marginal:g}"
    missing = [m for m in metrics if m.outcome is Outcome.NO_DATA]
    if missing:
        names = ", ".join(label(m.metric) for m in missing)
        reason = f"statistical judge: not judged, missing data for {names}; it never promotes on it"
        return JudgeResult(overall=Overall.NO_DATA, score=None, metrics=metrics, reason=reason)
    score = 100 * sum(_SCORES[m.outcome] for m in metrics) / len(metrics)
    critical = next((m for m in metrics if m.outcome is Outcome.FAIL and m.critical), None)
    noisy = any(m.outcome is Outcome.NOISY for m in metrics)
    if critical is not None:
        overall = Overall.FAIL
        why = f"{label(critical.metric)} is critical and failed"
    elif score >= config.pass_score and not noisy:
        overall, why = Overall.PASS, f"score {score:g} ({thresholds})"
    elif score >= config.pass_score:
        overall, why = Overall.MARGINAL, f"score {score:g} ({thresholds}), but not clean"
    elif score >= config.marginal:
        overall, why = Overall.MARGINAL, f"score {score:g} ({thresholds})"
    else:
        overall, why = Overall.FAIL, f"score {score:g} ({thresholds})"
    blamed = [m for m in metrics if m.outcome in (Outcome.FAIL, Outcome.NOISY)]
    if blamed and overall is not Overall.PASS:
        why += f": {'; '.join(f'{label(m.metric)} {m.outcome}' for m in blamed)}"
    reason = f"statistical judge: {overall}, {why}"
    return JudgeResult(overall=overall, score=score, metrics=metrics, reason=reason)


def _signed(value: float, metric: Metric) -> str:
    text = margin(abs(value), metric)
    return f"+{text}" if value >= 0 else f"-{text}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"
