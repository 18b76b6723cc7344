"""The Argo Rollouts strategy (bot.kube.argo) against the real apiserver, in the moments the real
controller (tests/test_argo_flow.py) cannot be stopped at on purpose: a Rollout still short of
the pause its stage ends at when the release moves on, a Rollout that moves while the bot
writes, an abort left from before the release, a Rollout whose steps change mid-release.

No controller runs here: the test writes the Rollout's status itself, through the status
subresource, with the field values the real controller was seen writing (tests/test_infra_argo.py
records them). That hand-written status is this module's stand-in for the controller, and the
only one; everything the strategy writes is read back from the apiserver.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client as k8s

from bot.core.apps import AppConfig, AuthorizationConfig, ChannelRef, MetricsConfig, NoRouter
from bot.core.argo import rollout_plan
from bot.core.errors import PermanentError, TemporaryError
from bot.core.machine import CanaryReady, StageTimerElapsed
from bot.core.plan import DEFAULT_PLAN, Plan
from bot.core.release import Phase, ReleaseKind
from bot.kube.argo import argo_strategy
from bot.kube.client import ROLLOUTS, NamespacedResources
from tests.kube_objects import Cluster, stable_deployment
from tests.releases import Run, start

APP = "shop-api"
INSTANCE_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"
STEPS = [
    {"setWeight": 20},
    {"analysis": {"templates": [{"templateName": "smoke"}]}},
    {"pause": {"duration": "1h"}},
    {"setWeight": 50},
    {"pause": {}},
]


def rollout(steps: list[dict[str, Any]]) -> dict[str, Any]:
    spec = stable_deployment(name=APP, replicas=4, track=False)["spec"]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        # the suite's real controller (started by other tests, watching every namespace) leaves
        # a Rollout of another controller instance alone: this module plays the controller
        "metadata": {"name": APP, "labels": {INSTANCE_LABEL: "tests-stand-in"}},
        "spec": {**spec, "strategy": {"canary": {"steps": steps}}},
    }


def app_config(namespace: str) -> AppConfig:
    return AppConfig(
        name=APP,
        namespace=namespace,
        workload=APP,
        workload_kind="Rollout",
        router=NoRouter(provider="none"),
        slack_channel=ChannelRef("C0DEPLOYS"),
        plan=DEFAULT_PLAN,
        metrics=MetricsConfig(),
        alert_mention="",
        authorization=AuthorizationConfig(),
    )


class Controller:
    """The stand-in: writes a Rollout's status as Argo's controller does."""

    def __init__(self, rollouts: NamespacedResources) -> None:
        self.rollouts = rollouts

    def report(self, **status: Any) -> dict[str, Any]:
        current = self.rollouts.get(APP)
        assert current is not None
        generation = str(current["metadata"]["generation"])
        return self.rollouts.merge_patch(
            APP, {"status": {"observedGeneration": generation, **status}}, subresource="status"
        )


@pytest.fixture
def rollouts(kube_admin: k8s.ApiClient, namespace: str) -> NamespacedResources:
    """The team's Rollout, its first revision Healthy as the controller reports it."""
    Cluster(kube_admin, namespace).create(ROLLOUTS, rollout(STEPS))
    resources = NamespacedResources(kube_admin, ROLLOUTS, namespace)
    Controller(resources).report(
        phase="Healthy", currentPodHash="aaa", stableRS="aaa", currentStepIndex=5
    )
    return resources


def running(plan: Plan, stage_index: int) -> Run:
    """A release of `plan` (the Rollout's), in `stage_index`, as the machine puts it there."""
    run = start(plan=plan, kind=ReleaseKind.ARGO_CANARY)
    run.accept(CanaryReady())
    for _ in range(stage_index):
        run.accept(StageTimerElapsed(), after=timedelta(hours=1))
    assert (run.release.phase, run.release.stage_index) == (Phase.RUNNING, stage_index)
    return run


def test_a_stage_left_before_its_pause_skips_to_the_next_stages_first_step(
    kube_admin: k8s.ApiClient, namespace: str, rollouts: NamespacedResources
) -> None:
    controller = Controller(rollouts)
    strategy = argo_strategy(ReleaseKind.ARGO_CANARY, kube_admin, app_config(namespace))
    plan = rollout_plan(rollouts.get(APP)["spec"]).plan
    run = running(plan, 0)
    strategy.reconcile(run.release)  # sets the image: Argo would start the new revision
    assert rollouts.get(APP)["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        ":v2.4.1"
    )

    # Argo runs stage 1's analysis step (1) when a person promotes: the analysis and the pause
    # are skipped, the Rollout goes to the next stage's first step (3), as the plugin does
    controller.report(phase="Progressing", currentPodHash="bbb", currentStepIndex=1)
    run = running(plan, 1)
    observed = strategy.reconcile(run.release)
    status = rollouts.get(APP)["status"]
    assert status["currentStepIndex"] == 3
    assert "pauseConditions" not in status
    assert observed.rollout is not None and observed.rollout.step == 3

    # reconciling again changes nothing: the Rollout is in the release's stage
    version = rollouts.get(APP)["metadata"]["resourceVersion"]
    strategy.reconcile(run.release)
    assert rollouts.get(APP)["metadata"]["resourceVersion"] == version


def test_a_rollout_that_moved_meanwhile_is_never_set_back(
    kube_admin: k8s.ApiClient, namespace: str, rollouts: NamespacedResources
) -> None:
    controller = Controller(rollouts)
    read = controller.report(phase="Progressing", currentPodHash="bbb", currentStepIndex=1)
    # the controller moves on after the bot's read: the bot's write carries the version it read
    controller.report(currentStepIndex=4)
    with pytest.raises(TemporaryError, match="conflict"):
        rollouts.merge_patch(
            APP,
            {
                "metadata": {"resourceVersion": read["metadata"]["resourceVersion"]},
                "status": {"currentStepIndex": 3},
            },
            subresource="status",
        )
    assert rollouts.get(APP)["status"]["currentStepIndex"] == 4


def test_an_abort_from_before_the_release_is_cleared_one_after_its_start_is_reported(
    kube_admin: k8s.ApiClient, namespace: str, rollouts: NamespacedResources
) -> None:
    controller = Controller(rollouts)
    strategy = argo_strategy(ReleaseKind.ARGO_CANARY, kube_admin, app_config(namespace))
    run = start(plan=rollout_plan(rollouts.get(APP)["spec"]).plan, kind=ReleaseKind.ARGO_CANARY)
    before = run.release.started_at - timedelta(minutes=5)
    controller.report(
        phase="Degraded",
        currentPodHash="bbb",
        stableRS="aaa",
        abort=True,
        abortedAt=before.isoformat().replace("+00:00", "Z"),
        message="RolloutAborted: Rollout aborted update to revision 2",
    )
    observed = strategy.reconcile(run.release)  # STARTING: the retry clears it
    assert not rollouts.get(APP)["status"].get("abort")
    assert observed.aborted is None

    after = datetime.now(UTC) + timedelta(seconds=1)
    controller.report(
        abort=True,
        abortedAt=after.isoformat().replace("+00:00", "Z"),
        message="RolloutAborted: aborted by hand",
    )
    observed = strategy.reconcile(run.release)
    assert rollouts.get(APP)["status"]["abort"] is True  # left for the release to answer
    assert observed.aborted is not None
    assert observed.aborted.message == "RolloutAborted: aborted by hand"
    assert observed.aborted.measurement is None


def test_steps_changed_during_the_release_fail_it_and_a_missing_rollout_is_named(
    kube_admin: k8s.ApiClient, namespace: str, rollouts: NamespacedResources
) -> None:
    strategy = argo_strategy(ReleaseKind.ARGO_CANARY, kube_admin, app_config(namespace))
    preflight = strategy.preflight("v2")
    assert not preflight.blocked and preflight.plan is not None
    run = running(preflight.plan, 0)
    rollouts.merge_patch(
        APP, {"spec": {"strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}}}
    )
    with pytest.raises(PermanentError, match="changed during the release"):
        strategy.reconcile(run.release)
    rollouts.delete(APP)
    with pytest.raises(PermanentError, match=f"Rollout rollouts.argoproj.io {namespace}/{APP}"):
        strategy.reconcile(run.release)
    gone = strategy.preflight("v2")
    assert gone.blocked
    assert f"Rollout `{APP}` not found in namespace `{namespace}`" in gone.summary


def test_preflight_refuses_what_the_bot_cannot_walk(
    kube_admin: k8s.ApiClient, namespace: str, rollouts: NamespacedResources
) -> None:
    controller = Controller(rollouts)
    blue_green = argo_strategy(ReleaseKind.ARGO_BLUE_GREEN, kube_admin, app_config(namespace))
    wrong = blue_green.preflight("v2")
    assert wrong.blocked and wrong.plan is None
    assert "uses the canary strategy: start it with `/release canary shop-api <version>`" in (
        wrong.summary
    )

    canary = argo_strategy(ReleaseKind.ARGO_CANARY, kube_admin, app_config(namespace))
    controller.report(phase="Paused", currentPodHash="ccc", stableRS="aaa", currentStepIndex=4)
    busy = canary.preflight("v2")
    assert busy.blocked
    assert "is already updating outside release-bot (phase Paused, step 4)" in busy.summary

    rollouts.merge_patch(APP, {"spec": {"strategy": {"canary": {"steps": [{"setWeight": 150}]}}}})
    bad = canary.preflight("v2")
    assert bad.blocked
    assert "step 0: setWeight must be 0..100, got 150" in bad.summary
