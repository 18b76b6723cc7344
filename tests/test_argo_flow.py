"""Argo Rollouts driven from Slack, end to end: signed requests reach a real `release-bot serve`,
state is in the real Redis, and the real Argo Rollouts controller (tests/infra/argo.py) runs the
app's Rollout on the real apiserver, its ReplicaSets' pods made Ready by kwok. After every step
the Rollout's spec and status are read back from the apiserver with the kubernetes client, never
through the bot's own code."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from bot.core.release import Phase
from bot.kube.client import ROLLOUTS, SERVICES
from bot.slack.cards import ACTION_APPROVE
from tests.infra.argo import ArgoController, error_ratio_template
from tests.infra.exporter import MetricsExporter
from tests.infra.processes import wait_until
from tests.infra.prometheus_server import PrometheusServer
from tests.infra.release_world import APP, World
from tests.infra.slack_requests import ALICE, BOB, RELEASES
from tests.kube_objects import Cluster, service, stable_deployment

Rollout = dict[str, Any]
PLAN = "    - {weight: 100, duration: 0s}\n"  # the app's plan: unused, the Rollout walks its steps
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "2s"}},
    {"setWeight": 40},
    {"pause": {}},
    {"setWeight": 60},
    {"pause": {}},
    {"setWeight": 80},
    {"pause": {}},
]
"""Stages: 20 % for 2 s, 40 % / 60 % / 80 % each waiting for an approval, then 100 %."""


def rollout_of(strategy: dict[str, Any], replicas: int = 5) -> Rollout:
    """The team's Rollout `shop-api`: the pod template of the suite's stable Deployment (one
    container `app` at v1 with a readiness probe, labels app and version)."""
    template = copy.deepcopy(stable_deployment(replicas=replicas, track=False)["spec"])
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": APP},
        "spec": {**template, "revisionHistoryLimit": 3, "strategy": strategy},
    }


def installs(
    rollout: Rollout, *services: str, before: Callable[[Cluster], None] | None = None
) -> Callable[[Cluster], None]:
    """What the team has before the first release: `before`'s objects, the Services and the
    Rollout, whose first revision Argo has made Healthy."""

    def install(cluster: Cluster) -> None:
        if before is not None:
            before(cluster)
        for name in services:
            cluster.create(SERVICES, service(name, {"app": APP}))
        cluster.create(ROLLOUTS, rollout)
        wait_until(
            lambda: healthy(read(cluster)), timeout_s=60, what="the Rollout's first revision"
        )

    return install


def read(cluster: Cluster) -> Rollout:
    return dict(
        k8s.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", cluster.namespace, "rollouts", APP
        )
    )


def status(world: World) -> dict[str, Any]:
    return dict(read(world.cluster).get("status") or {})


def healthy(rollout: Rollout) -> bool:
    state = rollout.get("status") or {}
    return (
        state.get("observedGeneration") == str(rollout["metadata"]["generation"])
        and state.get("phase") == "Healthy"
        and bool(state.get("currentPodHash"))
        and state.get("stableRS") == state.get("currentPodHash")
    )


def image(rollout: Rollout) -> str:
    return str(rollout["spec"]["template"]["spec"]["containers"][0]["image"])


def wait_status(world: World, what: str, check: Callable[[dict[str, Any]], bool]) -> None:
    wait_until(lambda: check(status(world)), timeout_s=30, what=what, interval_s=0.2)


def paused_at(step: int) -> Callable[[dict[str, Any]], bool]:
    def check(state: dict[str, Any]) -> bool:
        return state.get("currentStepIndex") == step and bool(state.get("pauseConditions"))

    return check


def replica_sets(world: World) -> dict[str, tuple[int, str]]:
    """ReplicaSets of the Rollout by pod-template hash: (replicas wanted, image)."""
    listed = k8s.AppsV1Api(world.kube_admin).list_namespaced_replica_set(world.cluster.namespace)
    return {
        rs.metadata.labels["rollouts-pod-template-hash"]: (
            rs.spec.replicas,
            rs.spec.template.spec.containers[0].image,
        )
        for rs in listed.items
        if "rollouts-pod-template-hash" in (rs.metadata.labels or {})
    }


def from_outside(world: World, status: dict[str, Any]) -> None:
    """A status patch as Argo's kubectl plugin makes it, as the cluster's admin."""
    k8s.CustomObjectsApi(world.kube_admin).patch_namespaced_custom_object_status(
        "argoproj.io",
        "v1alpha1",
        world.cluster.namespace,
        "rollouts",
        APP,
        {"status": status},
        _content_type="application/merge-patch+json",
    )


def abort_from_outside(world: World) -> None:
    """What `kubectl argo rollouts abort shop-api` does."""
    from_outside(world, {"abort": True})


def channel_alerts(world: World) -> list[str]:
    return [
        m["text"] for m in world.slack.messages(RELEASES.id)[1:] if "Argo Rollouts" in m["text"]
    ]


@pytest.fixture
def argo_world(world_for: Any, argo_controller: ArgoController) -> Callable[..., World]:
    def build(
        strategy: dict[str, Any],
        *services: str,
        before: Callable[[Cluster], None] | None = None,
        **kwargs: Any,
    ) -> World:
        install = installs(rollout_of(strategy), *services, before=before)
        world: World = world_for("argo", PLAN, install=install, **kwargs)
        return world

    return build


def test_a_canary_rollout_walks_its_steps_from_slack(argo_world: Any) -> None:
    world = argo_world({"canary": {"steps": STEPS}}, APP, authorization="{four_eyes: true}")
    stable_hash = status(world)["stableRS"]

    answer = world.command(f"canary {APP} v2")
    assert answer.startswith(f":white_check_mark: Started an Argo Rollouts canary of {APP} v2")
    release = world.release()
    assert release.plan.name == "argo-canary"
    assert [stage.weight for stage in release.plan.stages] == [20, 40, 60, 80, 100]
    assert [stage.needs_approval for stage in release.plan.stages] == [
        False,
        True,
        True,
        True,
        False,
    ]
    rollout = read(world.cluster)
    assert image(rollout) == "registry.example/shop/api:v2"
    assert rollout["spec"]["template"]["metadata"]["labels"]["version"] == "v2"

    # the timed pause: Argo holds 20 % for 2 s; the bot's stage 1 follows it, then the Rollout
    # stops at the indefinite pause of stage 2 (40 %) and the bot asks for an approval
    world.wait_for(Phase.AWAITING_APPROVAL, 1)
    wait_status(world, "the Rollout at its first indefinite pause", paused_at(3))
    state = status(world)
    assert state["pauseConditions"][0]["reason"] == "CanaryPauseStep"
    assert state["stableRS"] == stable_hash != state["currentPodHash"]
    assert replica_sets(world)[state["currentPodHash"]] == (2, "registry.example/shop/api:v2")
    # the card shows what Argo reports: its phase, the step, the new and the stable ReplicaSet
    expected = (
        f"🐙 Argo Rollouts: *Paused* (CanaryPauseStep) · step 4/8 · new ReplicaSet "
        f"`{state['currentPodHash']}` 2/5 pods · stable `{stable_hash}`"
    )
    wait_until(lambda: expected in str(world.card()["blocks"]), timeout_s=10, what=expected)

    # four-eyes as for every release: the requester's Approve is refused, the Rollout stays
    refused = world.click(ACTION_APPROVE, user=ALICE)
    assert world.post(refused) == ""
    assert "four-eyes rule" in world.response_to(refused)
    assert paused_at(3)(status(world))

    # Approve on the card: the pause is resumed (pauseConditions cleared), Argo moves to 60 %
    assert world.post(world.click(ACTION_APPROVE)) == ""
    world.wait_for(Phase.AWAITING_APPROVAL, 2)
    wait_status(world, "the Rollout at the 60 % pause", paused_at(5))
    assert not read(world.cluster)["spec"].get("paused")
    assert replica_sets(world)[status(world)["currentPodHash"]][0] == 3

    # promote: the pause step is skipped, Argo goes on to the 80 % pause
    assert "Promote applied" in world.command(f"promote {APP}", user=BOB)
    world.wait_for(Phase.AWAITING_APPROVAL, 3)
    wait_status(world, "the Rollout at the 80 % pause", paused_at(7))

    # promote --full: status.promoteFull, and the Rollout is Healthy on v2
    assert "Promote applied" in world.command(f"promote {APP} --full", user=BOB)
    done = world.wait_for(Phase.SUCCEEDED)
    assert done.outcome_reason is not None
    rollout = read(world.cluster)
    assert healthy(rollout)
    assert image(rollout) == "registry.example/shop/api:v2"
    state = rollout["status"]
    assert state["stableRS"] == state["currentPodHash"] != stable_hash
    assert replica_sets(world)[state["stableRS"]] == (5, "registry.example/shop/api:v2")
    assert "the Rollout is Healthy" in world.thread_texts()[-1]


def test_rollback_aborts_the_rollout_and_retry_walks_it_again(argo_world: Any) -> None:
    world = argo_world({"canary": {"steps": STEPS}}, APP)
    stable_hash = status(world)["stableRS"]
    world.command(f"canary {APP} v3")
    world.wait_for(Phase.AWAITING_APPROVAL, 1)
    wait_status(world, "the Rollout at its first indefinite pause", paused_at(3))
    canary_hash = status(world)["currentPodHash"]

    # pause and resume are spec.paused, as `kubectl argo rollouts pause / resume`
    assert "Pause applied" in world.command(f"pause {APP} looking at dashboards")
    world.wait_for(Phase.PAUSED, 1)
    assert read(world.cluster)["spec"]["paused"] is True
    wait_status(world, "Argo sees the pause", lambda state: state.get("phase") == "Paused")
    assert "Resume applied" in world.command(f"resume {APP}")
    world.wait_for(Phase.AWAITING_APPROVAL, 1)
    assert read(world.cluster)["spec"]["paused"] is False
    assert paused_at(3)(status(world))  # the step's own pause still holds it

    world.command(f"pause {APP}")  # a rollback needs no resume first
    world.wait_for(Phase.PAUSED, 1)
    assert "Rollback applied" in world.command(f"rollback {APP} errors in the logs")
    rolled_back = world.wait_for(Phase.ROLLED_BACK)
    assert rolled_back.outcome_reason == "errors in the logs"
    state = status(world)
    assert state["abort"] is True and state["phase"] == "Degraded"
    assert state["stableRS"] == stable_hash
    wait_until(
        lambda: replica_sets(world)[canary_hash][0] == 0,
        timeout_s=20,
        what="the aborted canary's ReplicaSet scaled to 0",
    )
    assert replica_sets(world)[stable_hash][0] == 5
    assert channel_alerts(world) == []  # a person's rollback is no alarm

    answer = world.command(f"retry {APP}")
    assert answer.startswith(f":white_check_mark: Started an Argo Rollouts canary of {APP} v3")
    retried = world.wait_for(Phase.AWAITING_APPROVAL, 1)
    assert retried.id != rolled_back.id
    wait_status(world, "the retried Rollout at its first pause again", paused_at(3))
    state = status(world)
    assert not state.get("abort")
    assert state["currentPodHash"] == canary_hash  # the same revision, walked again
    assert "retry of release" in world.command(f"history {APP}")

    # nothing to retry while it runs, nor for an app whose last release succeeded
    assert "is awaiting_approval, not aborted" in world.command(f"retry {APP}")


def test_an_abort_from_outside_the_bot_alerts_the_channel(argo_world: Any) -> None:
    world = argo_world({"canary": {"steps": STEPS}}, APP)
    world.command(f"canary {APP} v4")
    world.wait_for(Phase.AWAITING_APPROVAL, 1)

    # someone runs `kubectl argo rollouts promote shop-api`: the release follows its Rollout
    from_outside(world, {"pauseConditions": None})
    wait_status(world, "the Rollout at its 60 % pause", paused_at(5))
    world.wait_for(Phase.AWAITING_APPROVAL, 2)
    world.wait_thread("to stage 3/5 (60 %) outside release-bot")

    abort_from_outside(world)
    rolled_back = world.wait_for(Phase.ROLLED_BACK)
    assert rolled_back.outcome_by is None
    assert rolled_back.outcome_reason is not None
    assert rolled_back.outcome_reason.startswith("aborted by Argo Rollouts")
    (alert,) = channel_alerts(world)
    assert "<!here>" in alert
    assert f"Argo Rollouts aborted {APP} v4 at stage 3/5 (60 %)" in alert
    assert status(world)["phase"] == "Degraded"


def test_argos_failing_analysis_alerts_with_the_measurement(
    argo_world: Any, prometheus_server: PrometheusServer, clean_exporter: MetricsExporter
) -> None:
    def analysis_template(cluster: Cluster) -> None:
        requests = (
            f'http_requests_total{{namespace="{cluster.namespace}",app="{APP}",version="v5"}}'
        )
        errors = requests.replace('version="v5"', 'version="v5",code="500"')
        k8s.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            "argoproj.io",
            "v1alpha1",
            cluster.namespace,
            "analysistemplates",
            error_ratio_template(
                prometheus_server.url, f"sum(rate({errors}[5s])) / sum(rate({requests}[5s]))"
            ),
        )

    steps = [
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "error-ratio"}]}},
        {"pause": {}},
    ]
    world = argo_world({"canary": {"steps": steps}}, APP, before=analysis_template)
    namespace = world.cluster.namespace
    clean_exporter.set_traffic(
        app=APP, version="v5", track="stable", qps=20, error_ratio=0.5, namespace=namespace
    )
    prometheus_server.wait_for_samples(
        f'http_requests_total{{namespace="{namespace}",app="{APP}",version="v5"}}', window_s=5
    )

    world.command(f"canary {APP} v5")
    rolled_back = world.wait_for(Phase.ROLLED_BACK)
    assert re.fullmatch(
        r"aborted by Argo Rollouts: error-ratio measured \[0\.[0-9]+\]",
        rolled_back.outcome_reason or "",
    )
    (alert,) = channel_alerts(world)
    assert f"Argo Rollouts aborted {APP} v5" in alert
    assert re.search(
        r"error-ratio measured \[0\.[0-9]+\] \(success condition not met: result\[0\] < 0\.05\)",
        alert,
    )
    assert 'Metric "error-ratio" assessed Failed' in alert
    state = status(world)
    assert state["abort"] is True and state["phase"] == "Degraded"


WINDOW_S = 4
METRICS = (
    f"{{provider: generic, interval: 1s, window: {WINDOW_S}s, min_requests: 10, "
    "failure_limit: 0, snapshot_interval: 1m}"
)


def test_the_bots_own_checks_abort_a_bad_rollout_and_alert(
    argo_world: Any, prometheus_server: PrometheusServer, clean_exporter: MetricsExporter
) -> None:
    """release-bot's Prometheus analysis runs beside Argo's: the new ReplicaSet's pods against
    the stable's, told apart by the version label the bot set on the template."""
    world = argo_world(
        {"canary": {"steps": STEPS}}, APP, metrics=METRICS, prometheus_url=prometheus_server.url
    )
    namespace = world.cluster.namespace
    for version, errors in (("v1", 0.0), ("v6", 0.3)):
        clean_exporter.set_traffic(
            app=APP,
            version=version,
            track="stable",
            qps=30,
            error_ratio=errors,
            namespace=namespace,
        )
    prometheus_server.wait_for_samples(
        f'http_requests_total{{namespace="{namespace}",app="{APP}",version="v6"}}',
        window_s=WINDOW_S,
    )
    world.command(f"canary {APP} v6")
    rolled_back = world.wait_for(Phase.ROLLED_BACK)
    assert rolled_back.outcome_by is None
    assert (rolled_back.outcome_reason or "").startswith("checks failed: error rate is")
    state = status(world)
    assert state["abort"] is True and state["phase"] == "Degraded"
    alerts = [m["text"] for m in world.slack.messages(RELEASES.id)[1:]]
    assert any("rolling back automatically" in alert for alert in alerts), alerts
    assert channel_alerts(world) == []  # Argo did not abort it on its own


def test_a_blue_green_rollout_previews_then_switches_on_approval(argo_world: Any) -> None:
    strategy = {
        "blueGreen": {
            "activeService": APP,
            "previewService": f"{APP}-preview",
            "autoPromotionEnabled": False,
            "scaleDownDelaySeconds": 2,
        }
    }
    world = argo_world(strategy, APP, f"{APP}-preview")
    blue_hash = status(world)["stableRS"]
    assert "uses the blueGreen strategy: start it with `/release bluegreen" in world.command(
        f"canary {APP} v2"
    )
    answer = world.command(f"bluegreen {APP} v2")
    assert answer.startswith(
        f":white_check_mark: Started an Argo Rollouts blue-green release of {APP} v2"
    )
    world.wait_for(Phase.AWAITING_APPROVAL, 0)
    wait_status(world, "the preview paused", lambda state: bool(state.get("pauseConditions")))
    state = status(world)
    assert state["pauseConditions"][0]["reason"] == "BlueGreenPause"
    green_hash = state["currentPodHash"]
    assert state["blueGreen"]["previewSelector"] == green_hash
    assert state["blueGreen"]["activeSelector"] == blue_hash
    assert selector_hash(world, APP) == blue_hash
    assert selector_hash(world, f"{APP}-preview") == green_hash

    assert world.post(world.click(ACTION_APPROVE)) == ""
    world.wait_for(Phase.SUCCEEDED)
    state = status(world)
    assert state["blueGreen"]["activeSelector"] == green_hash == state["stableRS"]
    assert selector_hash(world, APP) == green_hash


def selector_hash(world: World, name: str) -> str:
    found = world.cluster.read(SERVICES, name)
    return str(found["spec"]["selector"]["rollouts-pod-template-hash"])
