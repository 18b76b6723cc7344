"""KubernetesCluster (bot/kube/reconciler.py) against the real kube-apiserver, controllers and
kwok pods: releases walk through the real state machine (tests/releases.py), the cluster is
reconciled after every step, and the objects are read back to see what it applies."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3
from kubernetes import client as k8s

from bot.core.apps import (
    AppConfig,
    AuthorizationConfig,
    ChannelRef,
    GatewayApiRouter,
    IstioRouter,
    MetricsConfig,
    ReplicasRouter,
    Router,
)
from bot.core.errors import PermanentError, TemporaryError
from bot.core.machine import (
    Approve,
    CanaryReady,
    Event,
    Pause,
    Promote,
    PromotionDone,
    Resume,
    Rollback,
    RollbackDone,
    StageTimerElapsed,
)
from bot.core.plan import Plan, Stage
from bot.core.ports import Observation
from bot.core.release import Phase, ReleaseKind
from bot.kube.client import (
    DEPLOYMENTS,
    DESTINATION_RULES,
    HTTP_ROUTES,
    SERVICES,
    VIRTUAL_SERVICES,
    Object,
    ResourceType,
)
from bot.kube.reconciler import KubernetesCluster, build_strategy
from bot.kube.routers.replicas import replica_counts
from tests.infra.kube import KubeCluster
from tests.infra.processes import wait_until
from tests.kube_objects import (
    API_RULE,
    Cluster,
    containers,
    http_route,
    no_new_pods_scheduled,
    service,
    stable_deployment,
    users_virtual_service,
)
from tests.releases import ANA, BOB, Run, start

APP = "shop-api"
CANARY = "shop-api-canary"
NEW_VERSION = "v2.4.1"  # the version tests.releases.start releases
NEW_IMAGE = f"registry.example/shop/api:{NEW_VERSION}"
HEADER_ENTRY = "release-bot-canary-header"
STABLE_REPLICAS = 4
MESH_PLAN = Plan(
    name="mesh",
    stages=(
        Stage(weight=0, duration_s=600, header_routed=True),
        Stage(weight=5, duration_s=600),
        Stage(weight=50, duration_s=600, needs_approval=True),
        Stage(weight=100, duration_s=0),
    ),
)
NATIVE_PLAN = Plan(name="native", stages=MESH_PLAN.stages[1:])  # replicas cannot route by header

Traffic = tuple[int, int, bool]
"""(stable, canary, header-routed) as the cluster applies it: route weights for the mesh
routers, replica counts for the replicas router."""


@dataclass(frozen=True)
class Setup:
    """One router's app: what the team has in the cluster, and how to read the split back."""

    router: Router
    plan: Plan
    install: Callable[[Cluster], None]
    traffic: Callable[[Cluster], Traffic]
    expected: Callable[[int, bool], Traffic]
    routing_objects: tuple[tuple[ResourceType, str], ...]


def install_replicas(cluster: Cluster) -> None:
    cluster.create(SERVICES, service(APP, {"app": APP}))


def replicas_traffic(cluster: Cluster) -> Traffic:
    canary = cluster.of(DEPLOYMENTS).get(CANARY)
    stable_replicas = cluster.read(DEPLOYMENTS, APP)["spec"]["replicas"]
    return stable_replicas, canary["spec"]["replicas"] if canary else 0, False


def replicas_expected(weight: int, header_routed: bool) -> Traffic:
    targets = replica_counts(total=STABLE_REPLICAS, canary_weight=weight)
    return targets.stable, targets.canary, header_routed


def istio_traffic(cluster: Cluster) -> Traffic:
    routes = cluster.read(VIRTUAL_SERVICES, APP)["spec"]["http"]
    [main] = [route for route in routes if route.get("name") == "main"]
    weights = {"stable": 0, "canary": 0}
    for entry in main["route"]:
        weights[entry["destination"]["subset"]] += entry["weight"]
    header = any(route.get("name") == HEADER_ENTRY for route in routes)
    return weights["stable"], weights["canary"], header


def install_gateway(cluster: Cluster) -> None:
    cluster.create(SERVICES, service("shop-api-stable", {"app": APP, "track": "stable"}))
    cluster.create(HTTP_ROUTES, http_route())


def gateway_traffic(cluster: Cluster) -> Traffic:
    rules = cluster.read(HTTP_ROUTES, APP)["spec"]["rules"]
    [api] = [rule for rule in rules if rule["matches"] == API_RULE["matches"]]
    weights = {"shop-api-stable": 0, "shop-api-canary": 0}
    for ref in api["backendRefs"]:
        weights[ref["name"]] += ref["weight"]
    header = any(rule.get("name") == HEADER_ENTRY for rule in rules)
    return weights["shop-api-stable"], weights["shop-api-canary"], header


def weights_expected(weight: int, header_routed: bool) -> Traffic:
    return 100 - weight, weight, header_routed


SETUPS = {
    "replicas": Setup(
        router=ReplicasRouter(provider="replicas"),  # the Service is named like the workload
        plan=NATIVE_PLAN,
        install=install_replicas,
        traffic=replicas_traffic,
        expected=replicas_expected,
        routing_objects=((SERVICES, APP),),
    ),
    "istio": Setup(
        router=IstioRouter(
            provider="istio",
            virtual_service=APP,
            destination_rule=APP,
            host=APP,
            route_index=1,  # the user's "main" route, after "admin"
        ),
        plan=MESH_PLAN,
        install=lambda cluster: cluster.create(VIRTUAL_SERVICES, users_virtual_service()),
        traffic=istio_traffic,
        expected=weights_expected,
        routing_objects=((VIRTUAL_SERVICES, APP), (DESTINATION_RULES, APP)),
    ),
    "gateway-api": Setup(
        router=GatewayApiRouter(
            provider="gateway-api",
            http_route=APP,
            stable_service="shop-api-stable",
            canary_service="shop-api-canary",
        ),
        plan=MESH_PLAN,
        install=install_gateway,
        traffic=gateway_traffic,
        expected=weights_expected,
        routing_objects=(
            (HTTP_ROUTES, APP),
            (SERVICES, "shop-api-stable"),
            (SERVICES, "shop-api-canary"),
        ),
    ),
}


def app_config(namespace: str, setup: Setup) -> AppConfig:
    return AppConfig(
        name=APP,
        namespace=namespace,
        workload=APP,
        container=None,  # the Deployment's first container: `app`
        router=setup.router,
        slack_channel=ChannelRef("C0DEPLOYS"),
        plan=setup.plan,
        metrics=MetricsConfig(),
        alert_mention="",
        authorization=AuthorizationConfig(),
    )


@pytest.fixture
def cluster(kube_admin: k8s.ApiClient, namespace: str) -> Cluster:
    return Cluster(kube_admin, namespace)


def installed(cluster: Cluster, setup: Setup) -> AppConfig:
    cluster.create(DEPLOYMENTS, stable_deployment(replicas=STABLE_REPLICAS))
    cluster.rolled_out(APP)
    setup.install(cluster)
    return app_config(cluster.namespace, setup)


def accept(run: Run, event: Event) -> None:
    """Apply `event`; a stage timer is delivered when it is due."""
    due = run.release.stage_due_at
    after = due - run.now if isinstance(event, StageTimerElapsed) and due else timedelta(minutes=1)
    run.accept(event, after=after)


def without_volatile_fields(deployment: Object | None) -> Object | None:
    """What release-bot writes: the status and its bookkeeping change without it."""
    if deployment is None:
        return None
    metadata = {
        key: value
        for key, value in deployment["metadata"].items()
        if key not in ("resourceVersion", "managedFields")
    }
    return {"metadata": metadata, "spec": deployment["spec"]}


def cluster_state(cluster: Cluster, setup: Setup) -> dict[str, Any]:
    """Both Deployments, and the routing objects whole, resourceVersion included."""
    state: dict[str, Any] = {
        name: without_volatile_fields(cluster.of(DEPLOYMENTS).get(name)) for name in (APP, CANARY)
    }
    for kind, name in setup.routing_objects:
        state[f"{kind.plural}/{name}"] = cluster.of(kind).get(name)
    return state


def settle(kube: KubernetesCluster, run: Run, app: AppConfig) -> Observation:
    """Reconcile as the scheduler does, pass after pass, until a pass finds nothing still
    coming up (the replicas router raises TemporaryError while a side it grew is not ready)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return kube.reconcile(run.release, app)
        except TemporaryError:
            assert time.monotonic() < deadline, "the cluster did not settle within 60 s"
            time.sleep(0.2)


def reconcile_twice(
    kube: KubernetesCluster, cluster: Cluster, setup: Setup, app: AppConfig, run: Run
) -> Observation:
    """Reconcile; once the Deployments have settled, reconcile again and check that the second
    call wrote nothing. Returns the second call's observation."""
    settle(kube, run, app)
    present = [name for name in (APP, CANARY) if cluster.of(DEPLOYMENTS).get(name) is not None]
    cluster.rolled_out(*present)
    before = cluster_state(cluster, setup)
    observation = kube.reconcile(run.release, app)
    assert cluster_state(cluster, setup) == before
    return observation


def until_promoted(kube: KubernetesCluster, run: Run, app: AppConfig) -> int:
    """Reconcile as the scheduler does, pass after pass, until promotion is complete."""
    deadline, passes = time.monotonic() + 60, 1
    while not settle(kube, run, app).promotion_complete:
        assert time.monotonic() < deadline, f"promotion not complete after {passes} passes"
        time.sleep(0.2)
        passes += 1
    return passes


def canary_image(cluster: Cluster) -> str:
    return containers(cluster.read(DEPLOYMENTS, CANARY))["app"]


def kubernetes_cluster(api: k8s.ApiClient) -> KubernetesCluster:
    return KubernetesCluster(api)


@pytest.mark.parametrize("provider", SETUPS)
def test_a_release_walks_its_stages_and_promotion_leaves_the_new_version_on_stable(
    kube_admin: k8s.ApiClient, cluster: Cluster, provider: str
) -> None:
    setup = SETUPS[provider]
    app = installed(cluster, setup)
    kube = kubernetes_cluster(kube_admin)
    run = start(plan=setup.plan)

    with no_new_pods_scheduled(kube_admin):  # kwok readies a pod in a few milliseconds
        first = kube.reconcile(run.release, app)
    if provider != "replicas":  # its canary starts with no pods, so it is ready at once
        assert not first.canary_ready  # STARTING returns without waiting for the new pods
    assert reconcile_twice(kube, cluster, setup, app, run).canary_ready
    assert canary_image(cluster) == NEW_IMAGE
    assert setup.traffic(cluster) == setup.expected(0, False)
    # created at its final size and never rewritten: the replicas router's canary starts with
    # no pods rather than taking traffic until it is scaled down
    assert cluster.read(DEPLOYMENTS, CANARY)["metadata"]["generation"] == 1

    walk = [CanaryReady(), Pause(by=BOB, reason="watching"), Resume(by=BOB)]
    if setup.plan.stages[0].header_routed:
        walk.insert(1, StageTimerElapsed())
    walk += [StageTimerElapsed(), StageTimerElapsed(), Approve(by=BOB)]
    applied = []
    for event in walk:
        accept(run, event)
        reconcile_twice(kube, cluster, setup, app, run)
        stage = run.release.stage
        assert setup.traffic(cluster) == setup.expected(stage.weight, stage.header_routed)
        assert canary_image(cluster) == NEW_IMAGE
        applied.append((run.release.phase, stage.weight))
    assert applied[-5:] == [
        (Phase.PAUSED, 5),
        (Phase.RUNNING, 5),
        (Phase.RUNNING, 50),
        (Phase.AWAITING_APPROVAL, 50),
        (Phase.RUNNING, 100),
    ]

    accept(run, StageTimerElapsed())
    assert run.release.phase is Phase.PROMOTING
    passes = until_promoted(kube, run, app)
    print(f"{provider}: promotion took {passes} reconcile passes (none of them waits)")
    if provider != "replicas":  # at 100 % its stable has 0 pods: rolling it is instant
        assert passes >= 2  # the first pass only starts the stable rollout
    assert reconcile_twice(kube, cluster, setup, app, run) == Observation(promotion_complete=True)
    stable = cluster.read(DEPLOYMENTS, APP)
    assert containers(stable) == {"app": NEW_IMAGE}
    assert stable["spec"]["template"]["metadata"]["labels"]["version"] == NEW_VERSION
    assert stable["spec"]["replicas"] == STABLE_REPLICAS
    assert cluster.of(DEPLOYMENTS).get(CANARY) is None
    assert setup.traffic(cluster) == setup.expected(0, False)

    accept(run, PromotionDone())
    before = cluster_state(cluster, setup)
    assert kube.reconcile(run.release, app) == Observation(promotion_complete=True)
    assert cluster_state(cluster, setup) == before


class RecordingApiClient(k8s.ApiClient):
    """A real client that notes each write it sends, as `METHOD plural/name`."""

    def __init__(self, configuration: k8s.Configuration) -> None:
        super().__init__(configuration)
        self.writes: list[str] = []

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method != "GET":
            self.writes.append(f"{method} {'/'.join(urlsplit(url).path.split('/')[-2:])}")
        return super().call_api(method, url, *args, **kwargs)


@pytest.mark.parametrize("provider", SETUPS)
def test_a_rollback_from_a_stage_leaves_stable_untouched_and_takes_all_traffic(
    kube_cluster: KubeCluster, cluster: Cluster, provider: str
) -> None:
    setup = SETUPS[provider]
    app = installed(cluster, setup)
    stable_before = cluster.read(DEPLOYMENTS, APP)
    api = RecordingApiClient(kube_cluster.configuration())
    kube = kubernetes_cluster(api)
    run = start(plan=setup.plan)
    assert reconcile_twice(kube, cluster, setup, app, run).canary_ready
    accept(run, CanaryReady())
    while run.release.stage.weight == 0:
        accept(run, StageTimerElapsed())
    settle(kube, run, app)
    assert setup.traffic(cluster) == setup.expected(5, False)

    accept(run, Rollback(by=ANA, reason="error spike"))
    api.writes.clear()
    settle(kube, run, app)
    # traffic back to stable first, then the canary removed, nothing else in between
    *to_stable, removal = api.writes
    assert removal == "DELETE deployments/shop-api-canary"
    assert to_stable, "nothing sent traffic back to stable"
    assert not [write for write in to_stable if write.startswith("DELETE")]
    assert reconcile_twice(kube, cluster, setup, app, run) == Observation(rollback_complete=True)
    assert cluster.of(DEPLOYMENTS).get(CANARY) is None
    stable = cluster.read(DEPLOYMENTS, APP)
    assert stable["spec"]["template"] == stable_before["spec"]["template"]
    assert stable["spec"]["replicas"] == STABLE_REPLICAS
    assert setup.traffic(cluster) == setup.expected(0, False)

    accept(run, RollbackDone())
    before = cluster_state(cluster, setup)
    assert kube.reconcile(run.release, app) == Observation()
    assert cluster_state(cluster, setup) == before


class CanaryDeleteFailsApiClient(k8s.ApiClient):
    """A real client whose connection drops on every DELETE: the reconciler is cut short
    right before it removes the canary."""

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method == "DELETE":
            raise urllib3.exceptions.ProtocolError("connection reset by peer")
        return super().call_api(method, url, *args, **kwargs)


def test_a_promotion_cut_short_is_finished_by_the_next_call(
    kube_cluster: KubeCluster, kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    setup = SETUPS["istio"]
    app = installed(cluster, setup)
    run = start(plan=setup.plan)
    kube = kubernetes_cluster(kube_admin)
    wait_until(
        lambda: kube.reconcile(run.release, app).canary_ready, timeout_s=30, what="canary ready"
    )
    accept(run, CanaryReady())
    accept(run, StageTimerElapsed())
    kube.reconcile(run.release, app)
    accept(run, Promote(by=BOB, full=True))

    failing = kubernetes_cluster(CanaryDeleteFailsApiClient(kube_cluster.configuration()))
    with pytest.raises(TemporaryError, match="Kubernetes API unreachable"):  # at the delete
        for _ in range(300):  # scheduler passes: istio's only raise comes from the delete
            failing.reconcile(run.release, app)
            time.sleep(0.2)
    assert containers(cluster.read(DEPLOYMENTS, APP)) == {"app": NEW_IMAGE}
    assert setup.traffic(cluster) == setup.expected(0, False)
    assert cluster.of(DEPLOYMENTS).get(CANARY) is not None

    restarted = kubernetes_cluster(kube_admin)
    assert restarted.reconcile(run.release, app) == Observation(promotion_complete=True)
    assert cluster.of(DEPLOYMENTS).get(CANARY) is None
    assert setup.traffic(cluster) == setup.expected(0, False)
    assert containers(cluster.read(DEPLOYMENTS, APP)) == {"app": NEW_IMAGE}


def test_preflight_summary_blocks_a_deployment_without_readiness_probe_and_names_it(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    app = app_config(cluster.namespace, SETUPS["replicas"])
    kube = kubernetes_cluster(kube_admin)
    cluster.create(DEPLOYMENTS, stable_deployment(replicas=2, readiness_probe=False))
    install_replicas(cluster)

    refused = kube.preflight(app, "latest", ReleaseKind.CANARY)
    assert refused.blocked
    first, second, *others = refused.summary.splitlines()
    assert first == (
        "⛔ Container `app` of Deployment `shop-api` has no readinessProbe: a new pod would get "
        "traffic before it can serve, and a broken version would still look Ready. "
        "Add a readinessProbe before releasing."
    )
    assert second.startswith("⚠️ `registry.example/shop/api:latest` is a moving tag")
    assert len(others) == 6
    assert all(line.startswith("✅ ") for line in others), others
    assert "✅ The routing objects can split the traffic." in others

    cluster.create(DEPLOYMENTS, stable_deployment(replicas=2))
    allowed = kube.preflight(app, NEW_VERSION, ReleaseKind.CANARY)
    assert not allowed.blocked
    assert all(line.startswith("✅ ") for line in allowed.summary.splitlines())
    assert f"`app` goes from `registry.example/shop/api:v1` to `{NEW_IMAGE}`" in allowed.summary

    cluster.create(DEPLOYMENTS, stable_deployment(replicas=0))
    idle = kube.preflight(app, NEW_VERSION, ReleaseKind.CANARY)
    assert idle.blocked
    assert idle.summary.startswith("⛔ Deployment `shop-api` runs 0 replicas")


@pytest.mark.parametrize("provider", ["istio", "gateway-api"])
def test_preflight_refuses_what_the_router_would_and_nothing_is_created(
    kube_admin: k8s.ApiClient, cluster: Cluster, provider: str
) -> None:
    """The route object the config names is missing: the start is refused before any canary
    exists, naming the config field to change; once it exists, the same preflight passes."""
    setup = SETUPS[provider]
    app = app_config(cluster.namespace, setup)
    kube = kubernetes_cluster(kube_admin)
    cluster.create(DEPLOYMENTS, stable_deployment(replicas=2))
    cluster.rolled_out(APP)  # so that the controllers have nothing left to write
    if provider == "gateway-api":
        cluster.create(SERVICES, service("shop-api-stable", {"app": APP, "track": "stable"}))
    route_kind = VIRTUAL_SERVICES if provider == "istio" else HTTP_ROUTES
    objects_before = {kind.plural: versions(cluster, kind) for kind in ROUTING_KINDS}

    refused = kube.preflight(app, NEW_VERSION, ReleaseKind.CANARY)
    assert refused.blocked
    [blocking] = [line for line in refused.summary.splitlines() if line.startswith("⛔")]
    field = "virtual_service" if provider == "istio" else "http_route"
    assert f"{route_kind.qualified_name} {cluster.namespace}/{APP} not found: name the " in blocking
    assert f"in the router's {field}" in blocking
    assert {kind.plural: versions(cluster, kind) for kind in ROUTING_KINDS} == objects_before

    setup.install(cluster)
    allowed = kube.preflight(app, NEW_VERSION, ReleaseKind.CANARY)
    assert not allowed.blocked, allowed.summary


ROUTING_KINDS = (DEPLOYMENTS, SERVICES, DESTINATION_RULES, VIRTUAL_SERVICES, HTTP_ROUTES)


def versions(cluster: Cluster, kind: ResourceType) -> list[tuple[str, str]]:
    """(name, resourceVersion) of every object of `kind` in the namespace."""
    items = cluster.of(kind).list_all()
    return sorted((item["metadata"]["name"], item["metadata"]["resourceVersion"]) for item in items)


def test_stable_version_is_the_version_label_else_the_first_containers_tag(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    app = app_config(cluster.namespace, SETUPS["replicas"])
    kube = kubernetes_cluster(kube_admin)
    cluster.create(DEPLOYMENTS, stable_deployment(replicas=0))
    assert kube.stable_version(app, ReleaseKind.CANARY) == "v1"

    digest = "registry.example/shop/api@sha256:" + "ab12" * 16
    for image, version in (("registry.example/shop/api:v1.3.0", "v1.3.0"), (digest, digest)):
        unlabelled = stable_deployment(replicas=0, image=image)
        del unlabelled["spec"]["template"]["metadata"]["labels"]["version"]
        unlabelled["spec"]["template"]["spec"]["containers"].append(
            {"name": "proxy", "image": "envoyproxy/envoy:v1.31.0"}
        )
        cluster.create(DEPLOYMENTS, unlabelled)
        assert kube.stable_version(app, ReleaseKind.CANARY) == version


def test_an_unknown_release_kind_is_an_error_naming_the_known_ones() -> None:
    """The factory refuses before it touches the cluster: no apiserver is asked."""
    app = app_config("shop", SETUPS["replicas"])
    known = "canary, bluegreen, hybrid"
    with pytest.raises(
        PermanentError, match=f"unknown release kind 'rolling'; known kinds: {known}"
    ):
        build_strategy("rolling", k8s.ApiClient(), app)
