"""The real Argo Rollouts controller (tests/infra/argo.py) does what release-bot relies on.

DRAFT: observation run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.infra.argo import ROLLOUTS, ArgoController
from tests.infra.exporter import MetricsExporter
from tests.infra.prometheus_server import PrometheusServer
from tests.infra.processes import wait_until

APP = "shop"
MERGE_PATCH = "application/merge-patch+json"
Rollout = dict[str, Any]


class Rollouts:
    """Plain API calls on one namespace's Rollouts, as Argo's kubectl plugin makes them."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.custom = k8s.CustomObjectsApi(api)
        self.apps = k8s.AppsV1Api(api)
        self.core = k8s.CoreV1Api(api)
        self.namespace = namespace

    def create(self, body: Rollout, plural: str = "rollouts") -> None:
        self.custom.create_namespaced_custom_object(*ROLLOUTS, self.namespace, plural, body)

    def read(self, name: str = APP) -> Rollout:
        return dict(
            self.custom.get_namespaced_custom_object(*ROLLOUTS, self.namespace, "rollouts", name)
        )

    def patch_spec(self, patch: Rollout, name: str = APP) -> None:
        self.custom.patch_namespaced_custom_object(
            *ROLLOUTS, self.namespace, "rollouts", name, patch, _content_type=MERGE_PATCH
        )

    def patch_status(self, patch: Rollout, name: str = APP) -> None:
        self.custom.patch_namespaced_custom_object_status(
            *ROLLOUTS, self.namespace, "rollouts", name, patch, _content_type=MERGE_PATCH
        )

    def set_image(self, image: str, name: str = APP) -> None:
        self.patch_spec(
            {"spec": {"template": {"spec": {"containers": [{"name": APP, "image": image}]}}}},
            name,
        )

    def wait(self, what: str, check: Callable[[Rollout], bool], name: str = APP) -> Rollout:
        seen: list[Rollout] = []

        def met() -> bool:
            seen.append(self.read(name))
            return check(seen[-1])

        wait_until(met, timeout_s=30, what=f"{what}; last status {json.dumps(status_of(seen[-1]) if seen else None)}", interval_s=0.1)
        return seen[-1]

    def replica_sets(self) -> dict[str, Any]:
        listed = self.apps.list_namespaced_replica_set(self.namespace).items
        return {
            rs.metadata.labels["rollouts-pod-template-hash"]: rs
            for rs in listed
            if "rollouts-pod-template-hash" in (rs.metadata.labels or {})
        }


def status_of(rollout: Rollout) -> dict[str, Any]:
    status = dict(rollout.get("status", {}))
    status.pop("selector", None)
    return status


def show(label: str, rollout: Rollout) -> None:
    print(f"\n=== {label}\n{json.dumps({'spec.paused': rollout['spec'].get('paused'), **status_of(rollout)}, indent=1, sort_keys=True)}")


def canary_rollout(image: str, steps: list[dict[str, Any]], replicas: int = 4) -> Rollout:
    return workload_rollout(image, {"canary": {"steps": steps}}, replicas)


def workload_rollout(image: str, strategy: dict[str, Any], replicas: int = 4) -> Rollout:
    labels = {"app": APP}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": APP},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": APP, "image": image}]},
            },
            "strategy": strategy,
        },
    }


def healthy_at(image: str) -> Callable[[Rollout], bool]:
    def check(rollout: Rollout) -> bool:
        status = rollout.get("status", {})
        return bool(
            rollout["spec"]["template"]["spec"]["containers"][0]["image"] == image
            and status.get("observedGeneration") == str(rollout["metadata"]["generation"])
            and status.get("phase") == "Healthy"
            and status.get("stableRS") == status.get("currentPodHash")
        )

    return check


def step_paused(index: int) -> Callable[[Rollout], bool]:
    def check(rollout: Rollout) -> bool:
        status = rollout.get("status", {})
        return status.get("currentStepIndex") == index and bool(status.get("pauseConditions"))

    return check


CANARY_STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 100},
]


def test_canary_walks_pauses_promotes_aborts_and_retries(
    argo_controller: ArgoController, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    rollouts = Rollouts(kube_admin, namespace)
    rollouts.create(canary_rollout("shop:1", CANARY_STEPS))
    first = rollouts.wait("first revision healthy", healthy_at("shop:1"))
    show("created", first)

    rollouts.set_image("shop:2")
    timed = rollouts.wait("timed pause", step_paused(1))
    show("timed pause", timed)
    paused = rollouts.wait("indefinite pause", step_paused(3))
    show("indefinite pause", paused)
    print({h: (rs.spec.replicas, rs.status.ready_replicas) for h, rs in rollouts.replica_sets().items()})

    rollouts.patch_status({"status": {"pauseConditions": None}})
    if paused["spec"].get("paused"):
        rollouts.patch_spec({"spec": {"paused": False}})
    done = rollouts.wait("resumed to the end", healthy_at("shop:2"))
    show("resumed, done", done)

    rollouts.set_image("shop:3")
    rollouts.wait("indefinite pause 3", step_paused(3))
    rollouts.patch_status({"status": {"promoteFull": True}})
    full = rollouts.wait("promoted full", healthy_at("shop:3"))
    show("promote full", full)

    rollouts.set_image("shop:4")
    rollouts.wait("indefinite pause 4", step_paused(3))
    rollouts.patch_status({"status": {"abort": True}})
    aborted = rollouts.wait("aborted", lambda r: r.get("status", {}).get("phase") == "Degraded")
    show("aborted", aborted)
    import time

    time.sleep(2)
    show("aborted +2s", rollouts.read())
    print({h: (rs.spec.replicas, rs.status.ready_replicas) for h, rs in rollouts.replica_sets().items()})

    rollouts.patch_status({"status": {"abort": False}})
    retried = rollouts.wait("retried", lambda r: not r.get("status", {}).get("abort"))
    show("retry just after", retried)
    again = rollouts.wait("pause again", step_paused(3))
    show("retry at pause", again)


def test_blue_green(argo_controller: ArgoController, kube_admin: k8s.ApiClient, namespace: str) -> None:
    rollouts = Rollouts(kube_admin, namespace)
    for service in ("shop-active", "shop-preview"):
        rollouts.core.create_namespaced_service(
            namespace,
            {"metadata": {"name": service}, "spec": {"selector": {"app": APP}, "ports": [{"port": 80}]}},
        )
    strategy = {
        "blueGreen": {
            "activeService": "shop-active",
            "previewService": "shop-preview",
            "autoPromotionEnabled": False,
            "scaleDownDelaySeconds": 2,
        }
    }
    rollouts.create(workload_rollout("shop:1", strategy, replicas=2))
    first = rollouts.wait("bg first", healthy_at("shop:1"))
    show("bg created", first)
    print({s: rollouts.core.read_namespaced_service(s, namespace).spec.selector for s in ("shop-active", "shop-preview")})
    rollouts.set_image("shop:2")
    paused = rollouts.wait("bg pause", lambda r: bool(r.get("status", {}).get("pauseConditions")))
    show("bg pause", paused)
    import time
    time.sleep(1)
    show("bg pause +1", rollouts.read())
    print({s: rollouts.core.read_namespaced_service(s, namespace).spec.selector for s in ("shop-active", "shop-preview")})
    rollouts.patch_status({"status": {"pauseConditions": None}})
    rollouts.patch_spec({"spec": {"paused": False}})
    done = rollouts.wait("bg promoted", healthy_at("shop:2"))
    show("bg promoted", done)
    print({s: rollouts.core.read_namespaced_service(s, namespace).spec.selector for s in ("shop-active", "shop-preview")})
    print({h: (rs.spec.replicas, rs.status.ready_replicas, rs.metadata.annotations) for h, rs in rollouts.replica_sets().items()})
    time.sleep(4)
    print({h: (rs.spec.replicas, rs.status.ready_replicas, rs.metadata.annotations) for h, rs in rollouts.replica_sets().items()})


def test_analysis(
    argo_controller: ArgoController,
    kube_admin: k8s.ApiClient,
    namespace: str,
    prometheus_server: PrometheusServer,
    clean_exporter: MetricsExporter,
) -> None:
    rollouts = Rollouts(kube_admin, namespace)
    selector = f'http_requests_total{{namespace="{namespace}",app="{APP}",track="canary"}}'
    clean_exporter.set_traffic(app=APP, version="2", track="canary", qps=20, error_ratio=0.5, namespace=namespace)
    rollouts.create(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "error-ratio"},
            "spec": {
                "metrics": [
                    {
                        "name": "error-ratio",
                        "successCondition": "result[0] < 0.05",
                        "failureLimit": 0,
                        "provider": {
                            "prometheus": {
                                "address": prometheus_server.url,
                                "query": f'sum(rate(http_requests_total{{namespace="{namespace}",app="{APP}",track="canary",code="500"}}[5s])) / sum(rate({selector}[5s]))',
                            }
                        },
                    }
                ]
            },
        },
        plural="analysistemplates",
    )
    prometheus_server.wait_for_samples(selector, window_s=5)
    steps = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "error-ratio"}]}}, {"pause": {}}]
    rollouts.create(canary_rollout("shop:1", steps, replicas=2))
    rollouts.wait("an first", healthy_at("shop:1"))
    rollouts.set_image("shop:2")
    aborted = rollouts.wait("an aborted", lambda r: r.get("status", {}).get("phase") == "Degraded")
    show("an aborted", aborted)
    runs = rollouts.custom.list_namespaced_custom_object(*ROLLOUTS, namespace, "analysisruns")["items"]
    for run in runs:
        print(run["metadata"]["name"], json.dumps(run["metadata"].get("labels")), json.dumps(run.get("status"), indent=1))
