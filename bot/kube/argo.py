"""Argo Rollouts: an app whose workload is a `Rollout`, released through the Rollout's own fields.

Built by build_strategy (bot.kube.reconciler) for the kinds argo-canary and argo-bluegreen; the
ReleaseService calls it through KubernetesCluster like every strategy. No router of the bot's
ever touches the app: the Rollout's controller shifts traffic, the bot only writes the fields
Argo's kubectl plugin writes, with the same meaning:
- start: the named container's image (and the pod template's version label) in spec.template;
  an abort left from before the release is cleared (`retry`: status.abort false);
- the release's stage moving on (approve, advance, its timer, promote): the pause that ends the
  Rollout's stage resumed (status.pauseConditions cleared), or, when the Rollout is not at that
  pause yet, status.currentStepIndex set to the stage's first step (skipping steps, as
  `kubectl argo rollouts promote` does), carrying the resourceVersion it read;
- pause and resume: spec.paused;
- PROMOTING (promote --full, the last stage): status.promoteFull;
- ROLLING_BACK, FAILED: status.abort.
`reconcile` is level-triggered like the canary's: it reads the Rollout, writes only what differs,
and reports what Argo shows: the new revision ready at the first stage, the promotion complete
(Healthy, stableRS = currentPodHash), the abort done (Degraded) and an abort the bot did not ask
for, with the AnalysisRun measurement that failed (bot.core.argo.RolloutAbort).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from kubernetes import client as k8s

from bot.core.apps import AppConfig
from bot.core.argo import (
    BLUE_GREEN_STRATEGY,
    CANARY_STRATEGY,
    FailedMeasurement,
    RolloutAbort,
    RolloutPlan,
    RolloutSpecError,
    rollout_plan,
)
from bot.core.errors import PermanentError
from bot.core.ports import Observation, PreflightResult
from bot.core.release import Phase, Release, ReleaseKind, RolloutView
from bot.kube.client import ANALYSIS_RUNS, REPLICA_SETS, ROLLOUTS, NamespacedResources, Object
from bot.kube.preflight import Finding, Severity, preflight_result, run_preflight
from bot.kube.workloads import (
    image_version,
    released_container,
    resolve_version,
    version_keys,
    with_version,
)

POD_TEMPLATE_HASH = "rollouts-pod-template-hash"
_STRATEGY_OF_KIND = {
    ReleaseKind.ARGO_CANARY: CANARY_STRATEGY,
    ReleaseKind.ARGO_BLUE_GREEN: BLUE_GREEN_STRATEGY,
}
_COMMAND_OF_STRATEGY = {CANARY_STRATEGY: "canary", BLUE_GREEN_STRATEGY: "bluegreen"}
_WALKING = frozenset(
    {Phase.STARTING, Phase.VERIFYING, Phase.RUNNING, Phase.AWAITING_APPROVAL, Phase.PAUSED}
)
_ABORTING = frozenset({Phase.ROLLING_BACK, Phase.FAILED})
_FAILED_RUN_PHASES = frozenset({"Failed", "Error"})


def argo_strategy(kind: ReleaseKind, api: k8s.ApiClient, app: AppConfig) -> ArgoRolloutStrategy:
    """The strategy of an app's Rollout, for a release of `kind` (argo-canary, argo-bluegreen)."""
    namespace = app.namespace
    return ArgoRolloutStrategy(
        config=app,
        api=api,
        strategy=_STRATEGY_OF_KIND[kind],
        rollouts=NamespacedResources(api, ROLLOUTS, namespace),
        replica_sets=NamespacedResources(api, REPLICA_SETS, namespace),
        analysis_runs=NamespacedResources(api, ANALYSIS_RUNS, namespace),
    )


@dataclass(frozen=True, slots=True)
class ArgoRolloutStrategy:
    """One app's Rollout, of the strategy (`canary` or `blueGreen`) the release was asked for."""

    config: AppConfig
    api: k8s.ApiClient
    strategy: str
    rollouts: NamespacedResources
    replica_sets: NamespacedResources
    analysis_runs: NamespacedResources

    @property
    def name(self) -> str:
        return self.config.workload

    def stable_version(self) -> str:
        """The version label of the stable ReplicaSet's pods, else its container's image tag."""
        template = self._stable_template(self._rollout())
        labels = (template.get("metadata") or {}).get("labels") or {}
        label = labels.get(version_keys(labels)[0])
        return label or image_version(self._container(template)["image"])

    def preflight(self, version: str) -> PreflightResult:
        """The Deployment checks on the Rollout's pod template (readiness probes, version label,
        ConfigMaps, quota), then what the Rollout itself must be: a pod template of its own,
        the strategy asked for, steps that make a plan, a controller that reads it, no update
        in flight. The plan of its steps goes back with the result."""
        rollout = self.rollouts.get(self.name)
        if rollout is not None and "workloadRef" in (rollout.get("spec") or {}):
            return preflight_result([_workload_ref(self.name)])
        report = run_preflight(
            api=self.api,
            namespace=self.config.namespace,
            deployment=self.name,
            container=self.config.container,
            version=version,
            kind="bluegreen" if self.strategy == BLUE_GREEN_STRATEGY else "canary",
            extra_replicas=None if self.strategy == BLUE_GREEN_STRATEGY else 1,
            workload_type=ROLLOUTS,
        )
        if rollout is None or report.blocked:
            return preflight_result(report.findings)
        planned, findings = self._rollout_findings(rollout)
        result = preflight_result([*report.findings, *findings])
        if result.blocked or planned is None:
            return result
        return replace(result, plan=planned.plan)

    def reconcile(self, release: Release) -> Observation:
        rollout = self._rollout()
        planned = self._plan_of(rollout)
        if planned.plan != release.plan:
            raise PermanentError(
                f"the steps of Rollout {self.rollouts.describe(self.name)} changed during the "
                "release; roll back, then start again to walk the new steps"
            )
        if release.phase in _WALKING:
            rollout = self._walk(release, planned)
        elif release.phase is Phase.PROMOTING:
            rollout = self._promote_full(rollout)
        elif release.phase in _ABORTING:
            rollout = self._abort(rollout)
        return self._observe(rollout, release, planned)

    # ------------------------------------------------------------ writing Argo's fields

    def _walk(self, release: Release, planned: RolloutPlan) -> Object:
        rollout = self._ensure_spec(release)
        if _stale_abort(rollout, release.started_at):
            rollout = self._patch_status(rollout, {"abort": False})
        if release.phase is not Phase.STARTING:
            rollout = self._move_to_stage(rollout, release.stage_index, planned)
        return rollout

    def _ensure_spec(self, release: Release) -> Object:
        """The release's image and version label on the pod template, spec.paused as the
        release is (written only when something differs)."""
        paused = release.phase is Phase.PAUSED

        def render(current: Object | None) -> Object:
            if current is None:
                raise PermanentError(self._missing())
            template = current["spec"]["template"]
            container = self._container(template)
            resolved = resolve_version(current_image=container["image"], version=release.version)
            container["image"] = resolved.image
            metadata = template.setdefault("metadata", {})
            labels = metadata.get("labels") or {}
            metadata["labels"] = with_version(labels, version_keys(labels), resolved.label)
            if paused or current["spec"].get("paused"):
                current["spec"]["paused"] = paused
            return current

        return self.rollouts.reconcile(self.name, render)

    def _move_to_stage(self, rollout: Object, stage_index: int, planned: RolloutPlan) -> Object:
        """Resume the pause before stage `stage_index`, or skip to the stage's first step."""
        status = rollout.get("status") or {}
        if planned.strategy == BLUE_GREEN_STRATEGY:
            if stage_index >= 1 and status.get("pauseConditions"):
                return self._patch_status(rollout, {"pauseConditions": None})
            return rollout
        step = status.get("currentStepIndex")
        if step is None or planned.stage_of_step(step) >= stage_index:
            return rollout
        gate = planned.stages[stage_index - 1].gate_step
        if step == gate and status.get("pauseConditions"):
            return self._patch_status(rollout, {"pauseConditions": None})
        first_step = planned.stages[stage_index].first_step
        return self._patch_status(
            rollout, {"pauseConditions": None, "currentStepIndex": first_step}, guarded=True
        )

    def _promote_full(self, rollout: Object) -> Object:
        rollout = self._unpaused(rollout)
        if _complete(rollout) or (rollout.get("status") or {}).get("promoteFull"):
            return rollout
        return self._patch_status(rollout, {"promoteFull": True})

    def _abort(self, rollout: Object) -> Object:
        """Paused or not when it was rolled back, a Rollout only carries out its abort unpaused."""
        rollout = self._unpaused(rollout)
        if (rollout.get("status") or {}).get("abort"):
            return rollout
        return self._patch_status(rollout, {"abort": True})

    def _unpaused(self, rollout: Object) -> Object:
        if not rollout["spec"].get("paused"):
            return rollout
        return self.rollouts.merge_patch(self.name, {"spec": {"paused": False}})

    def _patch_status(self, rollout: Object, status: Object, *, guarded: bool = False) -> Object:
        """A merge patch of the status subresource, where Argo's plugin writes; `guarded`: it
        carries the resourceVersion read, so a Rollout that moved meanwhile is not set back
        (409: the next pass reads it again)."""
        patch: Object = {"status": status}
        if guarded:
            patch["metadata"] = {"resourceVersion": rollout["metadata"]["resourceVersion"]}
        return self.rollouts.merge_patch(self.name, patch, subresource="status")

    # ------------------------------------------------------------ reading what Argo shows

    def _observe(self, rollout: Object, release: Release, planned: RolloutPlan) -> Observation:
        status = rollout.get("status") or {}
        if not _observed(rollout):
            return Observation()
        view = _view(rollout, planned)
        if status.get("abort"):
            if release.phase in _ABORTING or _stale_abort(rollout, release.started_at):
                done = status.get("phase") == "Degraded"
                return Observation(rollback_complete=done, rollout=view)
            return Observation(aborted=self._abort_cause(rollout), rollout=view)
        return Observation(
            canary_ready=_first_stage_reached(status, planned),
            promotion_complete=_complete(rollout),
            rollout=view,
            rollout_stage=_stage_reached(rollout, planned),
        )

    def _abort_cause(self, rollout: Object) -> RolloutAbort:
        status = rollout.get("status") or {}
        message = str(status.get("message") or "")
        runs = self.analysis_runs.list_matching(
            label_selector=f"{POD_TEMPLATE_HASH}={status.get('currentPodHash', '')}"
        )
        owned = [run for run in runs if _owned_by(run, self.name)]
        failed = [
            run for run in owned if (run.get("status") or {}).get("phase") in _FAILED_RUN_PHASES
        ]
        failed.sort(key=lambda run: run["metadata"].get("creationTimestamp") or "")
        for run in reversed(failed):
            if (measurement := _failed_measurement(run)) is not None:
                return RolloutAbort(message=message, measurement=measurement)
        return RolloutAbort(message=message)

    def _rollout_findings(self, rollout: Object) -> tuple[RolloutPlan | None, list[Finding]]:
        try:
            planned = rollout_plan(rollout.get("spec") or {})
        except RolloutSpecError as error:
            return None, [Finding("rollout", Severity.BLOCK, f"Rollout `{self.name}`: {error}.")]
        findings = [_strategy_finding(self.name, planned, self.strategy, self.config.name)]
        findings.append(_controller_finding(rollout))
        if (in_flight := _update_in_flight(rollout)) is not None:
            findings.append(in_flight)
        return planned, findings

    def _plan_of(self, rollout: Object) -> RolloutPlan:
        try:
            return rollout_plan(rollout.get("spec") or {})
        except RolloutSpecError as error:
            raise PermanentError(f"Rollout {self.rollouts.describe(self.name)}: {error}") from None

    def _rollout(self) -> Object:
        rollout = self.rollouts.get(self.name)
        if rollout is None:
            raise PermanentError(self._missing())
        return rollout

    def _missing(self) -> str:
        return (
            f"Rollout {self.rollouts.describe(self.name)} not found: check the namespace and "
            f"workload of app {self.config.name} in the bot's configuration"
        )

    def _stable_template(self, rollout: Object) -> Object:
        """The pod template of the ReplicaSet Argo calls stable (the spec's own before any
        update, and when no ReplicaSet of that hash is found)."""
        status = rollout.get("status") or {}
        stable = status.get("stableRS")
        if not stable or stable == status.get("currentPodHash"):
            template: Object = rollout["spec"]["template"]
            return template
        for replica_set in self.replica_sets.list_matching(
            label_selector=f"{POD_TEMPLATE_HASH}={stable}"
        ):
            if _owned_by(replica_set, self.name):
                found: Object = replica_set["spec"]["template"]
                return found
        spec_template: Object = rollout["spec"]["template"]
        return spec_template

    def _container(self, template: Object) -> Object:
        return released_container(template, wanted=self.config.container, app=self.config.name)


def _view(rollout: Object, planned: RolloutPlan) -> RolloutView:
    status = rollout.get("status") or {}
    steps = ((rollout["spec"].get("strategy") or {}).get(CANARY_STRATEGY) or {}).get("steps")
    return RolloutView(
        phase=str(status.get("phase") or "unknown"),
        message=str(status.get("message") or ""),
        step=status.get("currentStepIndex") if planned.strategy == CANARY_STRATEGY else None,
        steps=len(steps or []),
        new_revision=status.get("currentPodHash"),
        stable_revision=status.get("stableRS"),
        updated_pods=int(status.get("updatedReplicas") or 0),
        pods=int(rollout["spec"].get("replicas") or 0),
    )


def _stage_reached(rollout: Object, planned: RolloutPlan) -> int | None:
    """The plan's stage the Rollout stands in: a canary's by its step, a blue-green's 1 once
    production selects the new pods; the last once it is complete; None before its new
    revision has started."""
    status = rollout.get("status") or {}
    if _complete(rollout):
        return len(planned.stages) - 1
    if planned.strategy == BLUE_GREEN_STRATEGY:
        active = (status.get("blueGreen") or {}).get("activeSelector")
        return 1 if active and active == status.get("currentPodHash") else 0
    step = status.get("currentStepIndex")
    return None if step is None else planned.stage_of_step(step)


def _observed(rollout: Object) -> bool:
    """Argo's controller has read the Rollout's latest spec (its observedGeneration is a
    string in Rollouts)."""
    generation = rollout["metadata"].get("generation")
    return str((rollout.get("status") or {}).get("observedGeneration")) == str(generation)


def _complete(rollout: Object) -> bool:
    status = rollout.get("status") or {}
    current = status.get("currentPodHash")
    return (
        _observed(rollout)
        and bool(current)
        and status.get("stableRS") == current
        and status.get("phase") == "Healthy"
    )


def _first_stage_reached(status: Any, planned: RolloutPlan) -> bool:
    """The new revision is up for the first stage: a canary at the first stage's pause (its
    weight set and its pods available) or past it; blue-green's preview on the new pods."""
    if planned.strategy == BLUE_GREEN_STRATEGY:
        preview = (status.get("blueGreen") or {}).get("previewSelector")
        return bool(preview) and preview == status.get("currentPodHash")
    step = status.get("currentStepIndex")
    gate = planned.stages[0].gate_step
    return step is not None and (gate is None or step >= gate)


def _stale_abort(rollout: Object, started_at: datetime) -> bool:
    """An abort left from before the release started (the one `retry` clears)."""
    status = rollout.get("status") or {}
    if not status.get("abort"):
        return False
    aborted_at = status.get("abortedAt")
    if not aborted_at:
        return True
    return datetime.fromisoformat(str(aborted_at).replace("Z", "+00:00")) < started_at


def _owned_by(obj: Object, rollout: str) -> bool:
    owners = obj["metadata"].get("ownerReferences") or []
    return any(owner.get("kind") == "Rollout" and owner.get("name") == rollout for owner in owners)


def _failed_measurement(run: Object) -> FailedMeasurement | None:
    """The first failed metric of an AnalysisRun, its last measurement and its condition."""
    conditions = {
        metric.get("name"): metric for metric in (run.get("spec") or {}).get("metrics") or []
    }
    for result in (run.get("status") or {}).get("metricResults") or []:
        if result.get("phase") not in _FAILED_RUN_PHASES:
            continue
        measurements = result.get("measurements") or [{}]
        metric = conditions.get(result.get("name"), {})
        return FailedMeasurement(
            run=run["metadata"]["name"],
            metric=str(result.get("name")),
            value=str(measurements[-1].get("value", result.get("message", "no value"))),
            condition=_condition(metric),
        )
    return None


def _condition(metric: Any) -> str:
    if failure := metric.get("failureCondition"):
        return f"failure condition: {failure}"
    if success := metric.get("successCondition"):
        return f"success condition not met: {success}"
    return "no condition given"


def _workload_ref(name: str) -> Finding:
    return Finding(
        "rollout",
        Severity.BLOCK,
        f"Rollout `{name}` takes its pods from spec.workloadRef: release-bot sets the image "
        "in the Rollout's own spec.template; give the Rollout its template.",
    )


def _strategy_finding(name: str, planned: RolloutPlan, asked: str, app: str) -> Finding:
    if planned.strategy == asked:
        return Finding(
            "rollout",
            Severity.PASS,
            f"Rollout `{name}` ({planned.strategy}): {len(planned.plan.stages)} stages from its "
            "steps.",
        )
    command = _COMMAND_OF_STRATEGY[planned.strategy]
    return Finding(
        "rollout",
        Severity.BLOCK,
        f"Rollout `{name}` uses the {planned.strategy} strategy: start it with "
        f"`/release {command} {app} <version>`.",
    )


def _controller_finding(rollout: Object) -> Finding:
    if _observed(rollout):
        return Finding("argo-controller", Severity.PASS, "Argo Rollouts has read the Rollout.")
    return Finding(
        "argo-controller",
        Severity.BLOCK,
        f"Argo Rollouts has not read Rollout `{rollout['metadata']['name']}`'s latest spec (its "
        "status.observedGeneration lags): is the Argo Rollouts controller running?",
    )


def _update_in_flight(rollout: Object) -> Finding | None:
    status = rollout.get("status") or {}
    current, stable = status.get("currentPodHash"), status.get("stableRS")
    if status.get("abort") or not current or current == stable:
        return None
    return Finding(
        "rollout",
        Severity.BLOCK,
        f"Rollout `{rollout['metadata']['name']}` is already updating outside release-bot "
        f"(phase {status.get('phase', 'unknown')}, step {status.get('currentStepIndex')}): "
        "let it finish or abort it first.",
    )
