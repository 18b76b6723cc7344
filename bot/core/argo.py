"""What the core knows of Argo Rollouts: a `Rollout`'s strategy as a release plan, and an abort.

Called by the Argo Rollouts strategy (bot.kube.argo): at preflight it turns the Rollout's spec
into the plan the card shows and the release walks; at every reconcile it finds the steps of the
release's stage, to move the Rollout there through Argo's own fields, and describes an abort it
did not ask for (RolloutAbort), which the state machine (bot.core.machine) turns into the
auto-rollback alert. Pure: the spec comes in as the dict the apiserver sent.

A canary's steps fall into stages at its pauses: each `pause` ends a stage, whose weight is the
last `setWeight` before it (a `setHeaderRoute` with matches makes a 0 % stage header-routed); a
pause with a duration is a timed stage, one without waits for an approval. What follows the last
pause is the final stage, 100 %, reached by Argo's own promotion. A blue-green spec has two
stages: the preview (green on the previewService; an approval when autoPromotionEnabled is false,
else timed by autoPromotionSeconds) and the switch (green on the activeService).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.core.durations import parse_duration
from bot.core.plan import Plan, Stage

ARGO_CANARY_PLAN = "argo-canary"
ARGO_BLUE_GREEN_PLAN = "argo-bluegreen"
CANARY_STRATEGY = "canary"
BLUE_GREEN_STRATEGY = "blueGreen"


@dataclass(frozen=True, slots=True)
class FailedMeasurement:
    """The metric of an AnalysisRun that failed, as Argo recorded it."""

    run: str
    """The AnalysisRun's name."""
    metric: str
    value: str
    """The last measurement's value, as Argo stored it (a number, or a list of them)."""
    condition: str
    """The metric's failureCondition, else its successCondition negated in words."""


@dataclass(frozen=True, slots=True)
class RolloutAbort:
    """The Rollout was aborted, not by the bot: by its own analysis, or from outside."""

    message: str
    """The Rollout's status.message (Argo's words)."""
    measurement: FailedMeasurement | None = None
    """The failed analysis that caused it, when one did."""


class RolloutSpecError(ValueError):
    """The Rollout's strategy cannot be walked as a release (what is wrong, for a person)."""


@dataclass(frozen=True, slots=True)
class RolloutStage:
    """One stage of the plan and the canary steps it stands for: `first_step` is where the
    Rollout enters it, `gate_step` the pause step that ends it (None: the final stage)."""

    stage: Stage
    first_step: int
    gate_step: int | None


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """The plan of one Rollout and, for a canary, the steps of each stage."""

    strategy: str
    """`canary` or `blueGreen`, as the Rollout's spec.strategy names it."""
    plan: Plan
    stages: tuple[RolloutStage, ...]

    def stage_of_step(self, step_index: int) -> int:
        """The stage a canary Rollout at `step_index` is in (past the last step: the last)."""
        for index, rollout_stage in enumerate(self.stages):
            if rollout_stage.gate_step is None or step_index <= rollout_stage.gate_step:
                return index
        return len(self.stages) - 1


def rollout_plan(spec: Mapping[str, Any]) -> RolloutPlan:
    """The plan of a Rollout's `spec`; RolloutSpecError when its strategy is missing or its
    steps cannot make one (a weight that decreases, a duration Argo would not read)."""
    strategy = spec.get("strategy") or {}
    if CANARY_STRATEGY in strategy:
        return _canary_plan(strategy[CANARY_STRATEGY] or {})
    if BLUE_GREEN_STRATEGY in strategy:
        return _blue_green_plan(strategy[BLUE_GREEN_STRATEGY] or {})
    raise RolloutSpecError("its spec.strategy has neither canary nor blueGreen")


def _canary_plan(canary: Mapping[str, Any]) -> RolloutPlan:
    stages: list[RolloutStage] = []
    weight, header_routed, first_step = 0, False, 0
    steps = canary.get("steps") or []
    for index, step in enumerate(steps):
        if "setWeight" in step:
            weight = _weight(step["setWeight"], index)
        elif "setHeaderRoute" in step:
            header_routed = bool((step["setHeaderRoute"] or {}).get("match"))
        elif "pause" in step:
            duration_s = _pause_duration_s((step["pause"] or {}).get("duration"), index)
            stage = Stage(
                weight=weight,
                duration_s=duration_s or 0,
                needs_approval=duration_s is None,
                header_routed=header_routed and weight == 0,
            )
            stages.append(RolloutStage(stage=stage, first_step=first_step, gate_step=index))
            first_step = index + 1
    final = Stage(weight=100, duration_s=0)
    stages.append(RolloutStage(stage=final, first_step=first_step, gate_step=None))
    return RolloutPlan(CANARY_STRATEGY, _plan(ARGO_CANARY_PLAN, stages), tuple(stages))


def _blue_green_plan(blue_green: Mapping[str, Any]) -> RolloutPlan:
    if not blue_green.get("activeService"):
        raise RolloutSpecError("its blueGreen strategy names no activeService")
    approved = blue_green.get("autoPromotionEnabled", True) is False
    auto_after_s = 0 if approved else int(blue_green.get("autoPromotionSeconds") or 0)
    preview = Stage(weight=0, duration_s=auto_after_s, needs_approval=approved)
    stages = (
        RolloutStage(stage=preview, first_step=0, gate_step=0),
        RolloutStage(stage=Stage(weight=100, duration_s=0), first_step=1, gate_step=None),
    )
    return RolloutPlan(BLUE_GREEN_STRATEGY, _plan(ARGO_BLUE_GREEN_PLAN, stages), stages)


def _plan(name: str, stages: list[RolloutStage] | tuple[RolloutStage, ...]) -> Plan:
    try:
        return Plan(name=name, stages=tuple(rollout_stage.stage for rollout_stage in stages))
    except ValueError as error:
        raise RolloutSpecError(f"its steps make no release plan: {error}") from error


def _weight(value: object, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise RolloutSpecError(f"step {index}: setWeight must be 0..100, got {value!r}")
    return value


def _pause_duration_s(value: object, index: int) -> int | None:
    """Seconds of a pause step's duration (Argo reads a number of seconds or '30s', '5m', '1h');
    None for a pause without one, which waits to be promoted."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        return parse_duration(text)
    except ValueError:
        raise RolloutSpecError(
            f"step {index}: pause duration {value!r} is not seconds or a duration like '30s'"
        ) from None
