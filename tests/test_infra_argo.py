"""The real Argo Rollouts controller (tests/infra/argo.py, v1.10.2) does what release-bot relies on.

Every change is a plain API call as Argo's kubectl plugin makes it (status fields through the
status subresource, merge patches), every result is read back from the apiserver. What the
controller wrote, observed in these tests (a replica-weighted canary, no trafficRouting, so
`status.canary` stays `{}`: no `weights`; `observedGeneration` is a string):

- Created: phase Healthy, no message, currentStepIndex = len(steps) (the first revision skips the
  steps), stableRS == currentPodHash (the ReplicaSet's rollouts-pod-template-hash), conditions
  Progressing True NewReplicaSetAvailable, Available True AvailableReason, Healthy True
  RolloutHealthy, Completed True RolloutCompleted.
- At a pause step, timed or not: phase Paused, message "CanaryPauseStep", controllerPause true,
  pauseConditions [{reason: "CanaryPauseStep", startTime}], currentStepIndex at the pause step,
  spec.paused untouched (absent), conditions Paused True RolloutPaused, Progressing Unknown
  RolloutPaused, Healthy False, Completed False. A timed pause moves on by itself.
- Resume (status.pauseConditions null; spec.paused false only when it was true): the steps go on;
  at the end phase Healthy, currentStepIndex = len(steps), stableRS == currentPodHash,
  controllerPause and pauseConditions gone, conditions Paused False, Completed True.
- Skip the current step (status.currentStepIndex + 1, even at an indefinite pause): the controller
  carries on from there, one step on, and pauses again at the next pause step.
- status.promoteFull true: Healthy at once, stableRS == currentPodHash, currentStepIndex =
  len(steps); promoteFull is removed again by the controller.
- status.abort true: phase Degraded, abort true, abortedAt set, message "RolloutAborted: Rollout
  aborted update to revision N", currentStepIndex 0, pauseConditions and controllerPause gone,
  conditions Progressing False RolloutAborted ("Rollout aborted update to revision N"), Paused
  True, Healthy False; the canary ReplicaSet is scaled to 0, the stable one keeps every replica,
  stableRS unchanged, currentPodHash still the aborted revision's.
- Retry (status.abort false): abort false, then abortedAt gone and the steps start again from 0,
  up to the next pause.
- Blue-green (autoPromotionEnabled false): before the switch phase Paused, message
  "BlueGreenPause", controllerPause true, pauseConditions [{reason: "BlueGreenPause"}],
  status.blueGreen {activeSelector: old hash, previewSelector: new hash}, the Services' selectors
  gain rollouts-pod-template-hash accordingly, status.replicas counts both ReplicaSets. Promote
  (pauseConditions null, spec.paused false) switches the active Service; activeSelector ==
  previewSelector == stableRS; the old ReplicaSet gets a scale-down-deadline annotation and goes
  to 0 after scaleDownDelaySeconds.
- A failing step analysis: the Rollout aborts by itself: phase Degraded, abort true, message
  'RolloutAborted: Rollout aborted update to revision 2: Step-based analysis phase error/failed:
  Metric "error-ratio" assessed Failed due to failed (1) > failureLimit (0)'. The AnalysisRun
  `<rollout>-<hash>-<revision>-<step index>` (labels rollout-type Step, step-index, rollouts-pod-
  template-hash) has phase Failed, the same message without the prefix, runSummary {count 1,
  failed 1}, metricResults [{name, phase Failed, count 1, failed 1, measurements [{phase Failed,
  value "[0.5]"}], metadata.ResolvedPrometheusQuery}].
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.infra.argo import Rollout, Rollouts, error_ratio_template
from tests.infra.exporter import MetricsExporter
from tests.infra.prometheus_server import PrometheusServer

APP = "shop"
REPLICAS = 4
CANARY_STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 100},
]
INDEFINITE_PAUSE = 3
HASH_LABEL = "rollouts-pod-template-hash"

pytestmark = pytest.mark.usefixtures("argo_controller")


@pytest.fixture
def rollouts(kube_admin: k8s.ApiClient, namespace: str) -> Rollouts:
    return Rollouts(kube_admin, namespace)


def rollout(image: str, strategy: dict[str, Any], replicas: int = REPLICAS) -> Rollout:
    labels = {"app": APP}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": APP},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": APP, "image": image}]},
            },
            "strategy": strategy,
        },
    }


def set_image(rollouts: Rollouts, image: str) -> None:
    containers = [{"name": APP, "image": image}]
    rollouts.patch_spec(APP, {"spec": {"template": {"spec": {"containers": containers}}}})


def status(rollout: Rollout) -> dict[str, Any]:
    return dict(rollout.get("status", {}))


def conditions(rollout: Rollout) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status(rollout).get("conditions", [])}


def healthy_at(image: str) -> Callable[[Rollout], bool]:
    def check(rollout: Rollout) -> bool:
        now = status(rollout)
        return bool(
            rollout["spec"]["template"]["spec"]["containers"][0]["image"] == image
            and now.get("observedGeneration") == str(rollout["metadata"]["generation"])
            and now.get("phase") == "Healthy"
            and now.get("stableRS") == now.get("currentPodHash")
        )

    return check


def paused_at(step: int) -> Callable[[Rollout], bool]:
    """At the step with its pause written: the controller writes the pause, then the conditions."""

    def check(rollout: Rollout) -> bool:
        now = status(rollout)
        return bool(
            now.get("currentStepIndex") == step
            and now.get("pauseConditions")
            and conditions(rollout).get("Paused") == ("True", "RolloutPaused")
        )

    return check


def phase_is(phase: str) -> Callable[[Rollout], bool]:
    return lambda rollout: status(rollout).get("phase") == phase


def replica_sets(apps: k8s.AppsV1Api, namespace: str) -> dict[str, k8s.V1ReplicaSet]:
    """The Rollout's ReplicaSets by pod-template hash."""
    return {
        rs.metadata.labels[HASH_LABEL]: rs
        for rs in apps.list_namespaced_replica_set(namespace).items
        if rs.metadata.owner_references and rs.metadata.owner_references[0].kind == "Rollout"
    }


def replicas_by_hash(apps: k8s.AppsV1Api, namespace: str) -> dict[str, tuple[int, int]]:
    return {
        pod_hash: (rs.spec.replicas, rs.status.ready_replicas or 0)
        for pod_hash, rs in replica_sets(apps, namespace).items()
    }


def replicas_become(
    apps: k8s.AppsV1Api, namespace: str, wanted: dict[str, tuple[int, int]]
) -> Callable[[Rollout], bool]:
    """(desired, ready) of each ReplicaSet: the ReplicaSet controller and kwok catch up a moment
    after the Rollout's status says a step is done."""
    return lambda _: replicas_by_hash(apps, namespace) == wanted


def started_canary(rollouts: Rollouts) -> tuple[Rollout, Rollout]:
    """shop:1 Healthy, then shop:2 waiting at the indefinite pause: (first, paused)."""
    rollouts.create(rollout("shop:1", {"canary": {"steps": CANARY_STEPS}}))
    first = rollouts.wait(APP, "shop:1 healthy", healthy_at("shop:1"))
    set_image(rollouts, "shop:2")
    paused = rollouts.wait(APP, "at the indefinite pause", paused_at(INDEFINITE_PAUSE))
    return first, paused


def test_canary_walks_its_steps_and_a_resume_releases_the_indefinite_pause(
    rollouts: Rollouts, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    apps = k8s.AppsV1Api(kube_admin)
    rollouts.create(rollout("shop:1", {"canary": {"steps": CANARY_STEPS}}))
    first = status(rollouts.wait(APP, "shop:1 healthy", healthy_at("shop:1")))
    stable = first["stableRS"]
    assert first["currentStepIndex"] == len(CANARY_STEPS)  # a first revision skips the steps
    rollouts.wait(APP, "kwok made them Ready", replicas_become(apps, namespace, {stable: (4, 4)}))

    set_image(rollouts, "shop:2")
    timed = rollouts.wait(APP, "at the timed pause", paused_at(1))
    assert status(timed)["phase"] == "Paused"
    assert status(timed)["controllerPause"] is True
    assert [c["reason"] for c in status(timed)["pauseConditions"]] == ["CanaryPauseStep"]

    paused = rollouts.wait(APP, "at the indefinite pause", paused_at(INDEFINITE_PAUSE))
    now = status(paused)
    canary = now["currentPodHash"]
    assert (now["phase"], now["message"], now["controllerPause"]) == (
        "Paused",
        "CanaryPauseStep",
        True,
    )
    assert now["stableRS"] == stable != canary
    assert "paused" not in paused["spec"]
    at_half = {stable: (2, 2), canary: (2, 2)}
    rollouts.wait(APP, "setWeight 50 in replicas", replicas_become(apps, namespace, at_half))
    time.sleep(2.5)  # longer than the timed pause: this one waits for a person
    assert paused_at(INDEFINITE_PAUSE)(rollouts.read(APP))

    rollouts.patch_status(APP, {"pauseConditions": None})
    done = rollouts.wait(APP, "resumed to the end", healthy_at("shop:2"))
    now = status(done)
    assert now["stableRS"] == canary
    assert now["currentStepIndex"] == len(CANARY_STEPS)
    assert "pauseConditions" not in now and "controllerPause" not in now
    assert conditions(done)["Completed"] == ("True", "RolloutCompleted")
    all_canary = {stable: (0, 0), canary: (4, 4)}
    rollouts.wait(APP, "stable scaled down", replicas_become(apps, namespace, all_canary))


def test_skipping_the_current_step_moves_on_by_exactly_one_step(rollouts: Rollouts) -> None:
    """kubectl argo rollouts promote --skip-current-step: status.currentStepIndex + 1."""
    steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    rollouts.create(rollout("shop:1", {"canary": {"steps": steps}}))
    rollouts.wait(APP, "shop:1 healthy", healthy_at("shop:1"))
    set_image(rollouts, "shop:2")
    rollouts.wait(APP, "at the first pause", paused_at(1))

    rollouts.patch_status(APP, {"currentStepIndex": 2})

    now = status(rollouts.wait(APP, "at the second pause", paused_at(3)))
    assert (now["phase"], now["controllerPause"]) == ("Paused", True)
    assert [c["reason"] for c in now["pauseConditions"]] == ["CanaryPauseStep"]


def test_promote_full_skips_the_remaining_steps(rollouts: Rollouts) -> None:
    _, paused = started_canary(rollouts)

    rollouts.patch_status(APP, {"promoteFull": True})

    done = status(rollouts.wait(APP, "promoted in full", healthy_at("shop:2")))
    assert done["stableRS"] == status(paused)["currentPodHash"]
    assert done["currentStepIndex"] == len(CANARY_STEPS)
    rollouts.wait(
        APP, "promoteFull cleared by the controller", lambda r: "promoteFull" not in status(r)
    )


def test_abort_returns_to_stable_and_retry_starts_the_steps_again(
    rollouts: Rollouts, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    apps = k8s.AppsV1Api(kube_admin)
    first, paused = started_canary(rollouts)
    stable, canary = status(first)["stableRS"], status(paused)["currentPodHash"]

    rollouts.patch_status(APP, {"abort": True})

    aborted = rollouts.wait(
        APP,
        "aborted",
        lambda r: conditions(r).get("Progressing") == ("False", "RolloutAborted"),
    )
    now = status(aborted)
    assert now["abort"] is True and now["abortedAt"]
    assert now["message"] == "RolloutAborted: Rollout aborted update to revision 2"
    assert (now["currentStepIndex"], now["stableRS"], now["currentPodHash"]) == (0, stable, canary)
    assert "pauseConditions" not in now and "controllerPause" not in now
    assert now["phase"] == "Degraded"
    rollouts.wait(
        APP,
        "canary scaled down",
        replicas_become(apps, namespace, {stable: (REPLICAS, REPLICAS), canary: (0, 0)}),
    )

    rollouts.patch_status(APP, {"abort": False})

    again = rollouts.wait(APP, "retried up to the pause", paused_at(INDEFINITE_PAUSE))
    now = status(again)
    assert (now["phase"], now["abort"], now["currentPodHash"]) == ("Paused", False, canary)
    assert "abortedAt" not in now
    at_half = {stable: (2, 2), canary: (2, 2)}
    rollouts.wait(APP, "setWeight 50 again", replicas_become(apps, namespace, at_half))


def test_blue_green_waits_before_the_switch_and_promote_switches_the_active_service(
    rollouts: Rollouts, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    core, apps = k8s.CoreV1Api(kube_admin), k8s.AppsV1Api(kube_admin)
    services = ("shop-active", "shop-preview")
    for service in services:
        core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": service},
                "spec": {"selector": {"app": APP}, "ports": [{"port": 80}]},
            },
        )

    def selected_hashes() -> list[str | None]:
        """The pod-template hash each Service (active, preview) selects."""
        return [
            core.read_namespaced_service(s, namespace).spec.selector.get(HASH_LABEL)
            for s in services
        ]

    strategy = {
        "blueGreen": {
            "activeService": "shop-active",
            "previewService": "shop-preview",
            "autoPromotionEnabled": False,
            "scaleDownDelaySeconds": 2,
        }
    }
    rollouts.create(rollout("shop:1", strategy, replicas=2))
    blue = status(rollouts.wait(APP, "shop:1 healthy", healthy_at("shop:1")))["stableRS"]
    assert selected_hashes() == [blue, blue]

    set_image(rollouts, "shop:2")
    paused = rollouts.wait(APP, "paused before the switch", phase_is("Paused"))
    now = status(paused)
    green = now["currentPodHash"]
    assert [c["reason"] for c in now["pauseConditions"]] == ["BlueGreenPause"]
    assert (now["message"], now["controllerPause"], now["stableRS"]) == (
        "BlueGreenPause",
        True,
        blue,
    )
    assert now["blueGreen"] == {"activeSelector": blue, "previewSelector": green}
    assert selected_hashes() == [blue, green]
    rollouts.wait(
        APP,
        "green Ready beside blue",
        replicas_become(apps, namespace, {blue: (2, 2), green: (2, 2)}),
    )

    rollouts.patch_status(APP, {"pauseConditions": None})
    rollouts.patch_spec(APP, {"spec": {"paused": False}})

    done = status(rollouts.wait(APP, "promoted", healthy_at("shop:2")))
    assert done["blueGreen"] == {"activeSelector": green, "previewSelector": green}
    assert done["stableRS"] == green
    assert selected_hashes() == [green, green]
    assert "scale-down-deadline" in replica_sets(apps, namespace)[blue].metadata.annotations
    rollouts.wait(
        APP,
        "blue scaled down after scaleDownDelaySeconds",
        replicas_become(apps, namespace, {blue: (0, 0), green: (2, 2)}),
    )


def test_a_failing_step_analysis_aborts_the_rollout_with_the_measured_value(
    rollouts: Rollouts,
    namespace: str,
    prometheus_server: PrometheusServer,
    clean_exporter: MetricsExporter,
) -> None:
    canary = f'namespace="{namespace}",app="{APP}",track="canary"'
    clean_exporter.set_traffic(
        app=APP, version="2", track="canary", qps=20, error_ratio=0.5, namespace=namespace
    )
    query = (
        f'sum(rate(http_requests_total{{{canary},code="500"}}[5s]))'
        f" / sum(rate(http_requests_total{{{canary}}}[5s]))"
    )
    rollouts.create(error_ratio_template(prometheus_server.url, query), plural="analysistemplates")
    prometheus_server.wait_for_samples(f"http_requests_total{{{canary}}}", window_s=5)
    steps = [
        {"setWeight": 50},
        {"analysis": {"templates": [{"templateName": "error-ratio"}]}},
        {"pause": {}},
    ]
    rollouts.create(rollout("shop:1", {"canary": {"steps": steps}}, replicas=2))
    rollouts.wait(APP, "shop:1 healthy", healthy_at("shop:1"))

    set_image(rollouts, "shop:2")

    aborted = status(rollouts.wait(APP, "aborted by its analysis", phase_is("Degraded")))
    failure = 'Metric "error-ratio" assessed Failed due to failed (1) > failureLimit (0)'
    assert aborted["abort"] is True
    assert aborted["message"] == (
        "RolloutAborted: Rollout aborted update to revision 2: "
        f"Step-based analysis phase error/failed: {failure}"
    )
    [run] = rollouts.list("analysisruns")
    assert run["metadata"]["name"] == f"{APP}-{aborted['currentPodHash']}-2-1"
    assert run["metadata"]["labels"]["rollout-type"] == "Step"
    assert (run["status"]["phase"], run["status"]["message"]) == ("Failed", failure)
    [metric] = run["status"]["metricResults"]
    assert (metric["name"], metric["phase"], metric["failed"]) == ("error-ratio", "Failed", 1)
    assert [(m["phase"], m["value"]) for m in metric["measurements"]] == [("Failed", "[0.5]")]
