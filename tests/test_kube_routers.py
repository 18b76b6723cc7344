"""Traffic routers against the real kube-apiserver: the Istio and Gateway API objects are
validated by their real CRD schemas, Deployments roll out through the real controllers and kwok,
and Services get real EndpointSlices from the endpointslice controller."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import pytest
from kubernetes import client as k8s

from bot.core.apps import GatewayApiRouter, IstioRouter, NoRouter, ReplicasRouter
from bot.core.errors import PermanentError, TemporaryError
from bot.kube.client import (
    DEPLOYMENTS,
    DESTINATION_RULES,
    HTTP_ROUTES,
    RETRY_ATTEMPTS,
    SERVICES,
    VIRTUAL_SERVICES,
    Object,
)
from bot.kube.routers import (
    PROVIDERS,
    RouterOptions,
    TrafficRouter,
    TrafficSplit,
    build_router,
)
from bot.kube.routers.replicas import ReplicaTargets, replica_counts
from bot.kube.workloads import AppWorkload, CanaryWorkloads
from tests.infra.kube import RESTRICTED_TOKEN, RESTRICTED_USER, KubeCluster
from tests.infra.processes import wait_until
from tests.kube_objects import (
    ADMIN_ROUTE,
    API_RULE,
    MAIN_ROUTE,
    STATIC_RULE,
    Cluster,
    backend,
    destination,
    guides_destination_rule,
    guides_virtual_service,
    http_route,
    no_new_pods_scheduled,
    service,
    stable_deployment,
    users_virtual_service,
)

WEIGHTS = (5, 50, 100)


def endpoint_counts(cluster: Cluster, service_name: str) -> tuple[int, int]:
    """(stable, canary) ready pods behind a Service, told apart by their names."""
    pods = cluster.ready_endpoints(service_name)
    canary = sum(1 for pod in pods if pod.startswith("shop-api-canary-"))
    return len(pods) - canary, canary


@pytest.fixture
def cluster(kube_admin: k8s.ApiClient, namespace: str) -> Cluster:
    return Cluster(kube_admin, namespace)


@pytest.fixture
def workloads(kube_admin: k8s.ApiClient, cluster: Cluster) -> CanaryWorkloads:
    cluster.create(DEPLOYMENTS, stable_deployment())
    cluster.rolled_out("shop-api")
    app = AppWorkload(namespace=cluster.namespace, stable_deployment="shop-api", container="app")
    return CanaryWorkloads(kube_admin, app, poll_interval_s=0.2)


def twice(call: Callable[[], None], *, unchanged: Callable[[], Any]) -> None:
    """Call, then call again and check the second call changed nothing."""
    call()
    before = unchanged()
    call()
    assert unchanged() == before


# --- replicas -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (4, 0, ReplicaTargets(stable=4, canary=0)),
        (4, 5, ReplicaTargets(stable=3, canary=1)),
        (4, 50, ReplicaTargets(stable=2, canary=2)),
        (4, 95, ReplicaTargets(stable=1, canary=3)),
        (4, 100, ReplicaTargets(stable=0, canary=4)),
        (10, 15, ReplicaTargets(stable=8, canary=2)),
        (10, 5, ReplicaTargets(stable=9, canary=1)),
        (20, 5, ReplicaTargets(stable=19, canary=1)),
        (1, 50, ReplicaTargets(stable=1, canary=1)),
        (1, 100, ReplicaTargets(stable=0, canary=1)),
    ],
)
def test_weight_to_replicas_keeps_capacity_and_never_rounds_a_canary_away(
    total: int, weight: int, expected: ReplicaTargets
) -> None:
    assert replica_counts(total=total, canary_weight=weight) == expected


@pytest.mark.parametrize(("total", "weight"), [(0, 50), (4, -1), (4, 101)])
def test_weight_to_replicas_rejects_nonsense(total: int, weight: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        replica_counts(total=total, canary_weight=weight)


def test_replica_router_walks_the_stages_on_real_deployments_and_endpoints(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    cluster.create(SERVICES, service("shop-api", {"app": "shop-api"}))
    workloads.ensure_canary("v2", initial_replicas=0)
    router = build_router(
        ReplicasRouter(provider="replicas", service="shop-api"),
        api=kube_admin,
        workloads=workloads,
        options=RouterOptions(ready_timeout_s=60),
    )

    def generations() -> tuple[int, int]:
        return (
            cluster.read(DEPLOYMENTS, "shop-api")["metadata"]["generation"],
            cluster.read(DEPLOYMENTS, "shop-api-canary")["metadata"]["generation"],
        )

    twice(router.ensure_routes, unchanged=generations)
    annotations = cluster.read(DEPLOYMENTS, "shop-api")["metadata"]["annotations"]
    assert annotations["release-bot.io/baseline-replicas"] == "4"
    with pytest.raises(PermanentError, match="'replicas' cannot route by header"):
        router.set_weight(canary_weight=0, header_routed=True)

    expected = {0: (4, 0, 0), 5: (3, 1, 25), 50: (2, 2, 50), 100: (0, 4, 100)}
    for weight, (stable, canary, canary_percent) in expected.items():
        router.set_weight(canary_weight=weight, header_routed=False)
        # the side that grows was ready before the call returned: capacity never dipped
        assert workloads.replicas("canary").ready >= canary
        twice(
            partial(router.set_weight, canary_weight=weight, header_routed=False),
            unchanged=generations,
        )
        rolled = cluster.rolled_out("shop-api", "shop-api-canary")
        assert (
            rolled["shop-api"]["spec"]["replicas"],
            rolled["shop-api-canary"]["spec"]["replicas"],
        ) == (stable, canary)
        assert router.current_split() == TrafficSplit(100 - canary_percent, canary_percent, False)
        wait_until(
            lambda s=stable, c=canary: endpoint_counts(cluster, "shop-api") == (s, c),
            timeout_s=30,
            what=f"{stable} stable + {canary} canary endpoints behind the one Service",
        )

    twice(router.finalize, unchanged=generations)
    rolled = cluster.rolled_out("shop-api", "shop-api-canary")
    assert rolled["shop-api"]["spec"]["replicas"] == 4
    assert rolled["shop-api-canary"]["spec"]["replicas"] == 0
    assert "release-bot.io/baseline-replicas" not in (
        rolled["shop-api"]["metadata"]["annotations"] or {}
    )
    assert router.current_split() == TrafficSplit(100, 0, False)


def test_replica_split_reports_the_share_achieved_not_the_one_asked(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    cluster.create(SERVICES, service("shop-api", {"app": "shop-api"}))
    workloads.ensure_canary("v2", initial_replicas=0)
    router = build_router(
        ReplicasRouter(provider="replicas", service="shop-api"),
        api=kube_admin,
        workloads=workloads,
        options=RouterOptions(ready_timeout_s=60),
    )
    router.ensure_routes()
    router.set_weight(canary_weight=95, header_routed=False)
    cluster.rolled_out("shop-api", "shop-api-canary")
    assert router.current_split() == TrafficSplit(25, 75, False)


@pytest.mark.parametrize(
    ("selector", "complaint"),
    [
        ({"app": "shop-api", "track": "stable"}, "selects on \\['track'\\]"),
        ({"app": "shop-api", "version": "v1"}, "selects on \\['version'\\]"),
        ({"app": "web"}, "does not select the stable pods"),
    ],
)
def test_replica_router_refuses_a_service_that_would_not_split(
    kube_admin: k8s.ApiClient,
    cluster: Cluster,
    workloads: CanaryWorkloads,
    selector: dict[str, str],
    complaint: str,
) -> None:
    cluster.create(SERVICES, service("shop-api", selector))
    router = build_router(
        ReplicasRouter(provider="replicas", service="shop-api"), api=kube_admin, workloads=workloads
    )
    [problem] = router.check("v2")
    assert re.search(complaint, problem), problem
    workloads.ensure_canary("v2", initial_replicas=0)
    with pytest.raises(PermanentError, match=complaint):
        router.ensure_routes()
    assert workloads.stable_annotation("release-bot.io/baseline-replicas") is None


# --- istio ----------------------------------------------------------------------------------


def istio_router(
    api: k8s.ApiClient,
    workloads: CanaryWorkloads,
    route_index: int = 1,
    subset_label: Literal["version", "track"] = "version",
) -> TrafficRouter:
    config = IstioRouter(
        provider="istio",
        virtual_service="shop-api",
        destination_rule="shop-api",
        host="shop-api",
        route_index=route_index,
        subset_label=subset_label,
    )
    return build_router(config, api=api, workloads=workloads)


def test_istio_router_walks_the_stages_and_keeps_the_users_other_routes(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    workloads.ensure_canary("v2", initial_replicas=1)
    router = istio_router(kube_admin, workloads)

    def versions() -> tuple[str, str]:
        return (
            cluster.read(VIRTUAL_SERVICES, "shop-api")["metadata"]["resourceVersion"],
            cluster.read(DESTINATION_RULES, "shop-api")["metadata"]["resourceVersion"],
        )

    twice(router.ensure_routes, unchanged=versions)
    rule = cluster.read(DESTINATION_RULES, "shop-api")["spec"]
    assert rule == {
        "host": "shop-api",
        "subsets": [
            {"name": "stable", "labels": {"version": "v1"}},
            {"name": "canary", "labels": {"version": "v2"}},
        ],
    }
    http = cluster.read(VIRTUAL_SERVICES, "shop-api")["spec"]["http"]
    assert http == [
        ADMIN_ROUTE,
        {**MAIN_ROUTE, "route": [destination("stable", 100), destination("canary", 0)]},
    ]
    assert router.current_split() == TrafficSplit(100, 0, False)

    twice(lambda: router.set_weight(canary_weight=0, header_routed=True), unchanged=versions)
    http = cluster.read(VIRTUAL_SERVICES, "shop-api")["spec"]["http"]
    assert [route["name"] for route in http] == ["admin", "release-bot-canary-header", "main"]
    assert http[1] == {
        "name": "release-bot-canary-header",
        "match": [
            {"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "always"}}},
            {"headers": {"x-team": {"exact": "shop"}, "x-canary": {"exact": "always"}}},
        ],
        "timeout": "5s",
        "route": [destination("canary", 100)],
    }
    assert http[2]["route"] == [destination("stable", 100), destination("canary", 0)]
    assert router.current_split() == TrafficSplit(100, 0, True)

    for weight in WEIGHTS:
        twice(
            partial(router.set_weight, canary_weight=weight, header_routed=False),
            unchanged=versions,
        )
        http = cluster.read(VIRTUAL_SERVICES, "shop-api")["spec"]["http"]
        assert http == [
            ADMIN_ROUTE,
            {
                **MAIN_ROUTE,
                "route": [destination("stable", 100 - weight), destination("canary", weight)],
            },
        ]
        assert router.current_split() == TrafficSplit(100 - weight, weight, False)

    twice(router.finalize, unchanged=versions)
    http = cluster.read(VIRTUAL_SERVICES, "shop-api")["spec"]["http"]
    assert http == [ADMIN_ROUTE, {**MAIN_ROUTE, "route": [destination("stable", 100)]}]
    assert router.current_split() == TrafficSplit(100, 0, False)
    assert len(cluster.read(DESTINATION_RULES, "shop-api")["spec"]["subsets"]) == 2


def test_istio_ensure_routes_keeps_the_weights_of_a_running_release(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    workloads.ensure_canary("v2", initial_replicas=0)
    router = istio_router(kube_admin, workloads)
    router.ensure_routes()
    router.set_weight(canary_weight=50, header_routed=True)
    router.ensure_routes()  # e.g. after a bot restart
    assert router.current_split() == TrafficSplit(50, 50, True)


def test_istio_adopts_a_users_destination_rule_keeping_what_is_theirs(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    users_rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "shop-api"},
        "spec": {
            "host": "shop-api",
            "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}},
            "subsets": [
                {"name": "stable", "labels": {"app": "shop-api", "track": "stable"}},
                {"name": "legacy", "labels": {"version": "v0"}},
            ],
        },
    }
    cluster.create(DESTINATION_RULES, users_rule)
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    workloads.ensure_canary("v2", initial_replicas=0)
    router = istio_router(kube_admin, workloads)
    assert router.check("v2") == []
    router.ensure_routes()

    rule = cluster.read(DESTINATION_RULES, "shop-api")["spec"]
    assert rule["trafficPolicy"] == {"loadBalancer": {"simple": "LEAST_REQUEST"}}
    assert rule["subsets"] == [
        {"name": "stable", "labels": {"app": "shop-api", "version": "v1"}},
        {"name": "legacy", "labels": {"version": "v0"}},
        {"name": "canary", "labels": {"version": "v2"}},
    ]
    router.set_weight(canary_weight=5, header_routed=False)
    assert router.current_split() == TrafficSplit(95, 5, False)


def test_istio_refuses_what_it_cannot_split_safely_and_check_says_it_first(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    missing = istio_router(kube_admin, workloads)
    assert missing.check("v2") == [
        f"virtualservices.networking.istio.io {cluster.namespace}/shop-api not found: name the "
        "VirtualService that routes the app's host in the router's virtual_service (release-bot "
        "adopts it; it does not create one)"
    ]
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    workloads.ensure_canary("v2", initial_replicas=0)
    before = cluster.read(VIRTUAL_SERVICES, "shop-api")
    for index, complaint in ((0, "also routes to ['admin-svc']"), (2, "index 2 is out of range")):
        router = istio_router(kube_admin, workloads, route_index=index)
        [problem] = router.check("v2")
        assert complaint in problem
        with pytest.raises(PermanentError, match=re.escape(complaint)):
            router.ensure_routes()
    [same] = istio_router(kube_admin, workloads).check("v1")
    assert same.startswith("the new version's label `version: v1` is the stable pods' too")
    assert cluster.read(VIRTUAL_SERVICES, "shop-api") == before
    assert cluster.of(DESTINATION_RULES).get("shop-api") is None
    with pytest.raises(ValueError, match=re.escape("0..100")):
        istio_router(kube_admin, workloads).set_weight(canary_weight=101, header_routed=False)


def test_istio_refuses_a_users_subset_the_pods_do_not_carry(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    rule = guides_destination_rule()
    rule["spec"]["subsets"][1]["labels"]["tier"] = "gold"
    cluster.create(DESTINATION_RULES, rule)
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    [problem] = istio_router(kube_admin, workloads).check("v2")
    assert problem == (
        f"destinationrules.networking.istio.io {cluster.namespace}/shop-api subset 'canary' "
        "selects {tier: gold, version: v2}, but the canary pods would carry {app: shop-api, "
        "track: canary, version: v2}: remove {tier: gold} from the subset's labels "
        "(release-bot keeps 'version' on it)"
    )
    assert cluster.read(DESTINATION_RULES, "shop-api")["spec"] == rule["spec"]


def test_subsets_by_track_need_stable_pods_labelled_track_stable_and_by_version_do_not(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    cluster.create(DEPLOYMENTS, stable_deployment(replicas=0, track=False))
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    workloads = workloads_for(kube_admin, cluster)
    by_track = istio_router(kube_admin, workloads, subset_label="track")
    [problem] = by_track.check("v2")
    assert "its pods have no label track: stable" in problem
    assert "set subset_label: version" in problem
    workloads.ensure_canary("v2", initial_replicas=0)
    with pytest.raises(PermanentError, match="its pods have no label track: stable"):
        by_track.ensure_routes()
    assert cluster.of(DESTINATION_RULES).get("shop-api") is None

    assert istio_router(kube_admin, workloads).check("v2") == []


def test_istio_subsets_by_version_follow_stable_through_promotion_never_empty_while_weighted(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    """The guide's own objects: subsets by `version`, all traffic to `stable`, no track label
    on the stable pods. Each step of a promotion is followed by a look at which pods each
    subset with weight selects."""
    cluster.create(DEPLOYMENTS, stable_deployment(replicas=2, track=False))
    cluster.rolled_out("shop-api")
    cluster.create(DESTINATION_RULES, guides_destination_rule())
    cluster.create(VIRTUAL_SERVICES, guides_virtual_service())
    template_before = cluster.read(DEPLOYMENTS, "shop-api")["spec"]["template"]
    workloads = workloads_for(kube_admin, cluster)
    router = istio_router(kube_admin, workloads, route_index=0)

    def weighted_subsets_have_pods() -> None:
        rule = cluster.read(DESTINATION_RULES, "shop-api")["spec"]["subsets"]
        labels = {subset["name"]: subset["labels"] for subset in rule}
        [route] = cluster.read(VIRTUAL_SERVICES, "shop-api")["spec"]["http"]
        for target in route["route"]:
            if target.get("weight", 100):
                selector = ",".join(
                    f"{k}={v}" for k, v in labels[target["destination"]["subset"]].items()
                )
                assert cluster.ready_pods(selector), f"subset {target} selects no ready pod"

    assert router.check("v2") == []
    workloads.ensure_canary("v2", initial_replicas=2)
    cluster.rolled_out("shop-api-canary")
    router.ensure_routes()
    assert cluster.read(DESTINATION_RULES, "shop-api")["spec"] == guides_destination_rule()["spec"]
    for weight in (5, 50, 100):
        router.set_weight(canary_weight=weight, header_routed=False)
        weighted_subsets_have_pods()
    workloads.roll_stable("v2")
    cluster.rolled_out("shop-api")
    weighted_subsets_have_pods()
    router.finalize()
    weighted_subsets_have_pods()
    assert cluster.read(DESTINATION_RULES, "shop-api")["spec"]["subsets"] == [
        {"name": "stable", "labels": {"version": "v2"}},
        {"name": "canary", "labels": {"version": "v2"}},
    ]
    workloads.remove_canary()
    weighted_subsets_have_pods()
    template_after = cluster.read(DEPLOYMENTS, "shop-api")["spec"]["template"]
    template_before["metadata"]["labels"]["version"] = "v2"
    template_before["spec"]["containers"][0]["image"] = "registry.example/shop/api:v2"
    assert template_after == template_before


def test_traffic_goes_back_to_a_stable_subset_by_version_only_once_stable_runs_it(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    """A rollback during promotion: stable has begun rolling to v2 and none of its new pods is
    ready; moving subset stable to v2 now would leave it with no pod, so the canary keeps the
    traffic until stable is rolled out."""
    cluster.create(DEPLOYMENTS, stable_deployment(replicas=2, track=False))
    cluster.rolled_out("shop-api")
    cluster.create(DESTINATION_RULES, guides_destination_rule())
    cluster.create(VIRTUAL_SERVICES, guides_virtual_service())
    workloads = workloads_for(kube_admin, cluster)
    router = istio_router(kube_admin, workloads, route_index=0)
    workloads.ensure_canary("v2", initial_replicas=2)
    cluster.rolled_out("shop-api-canary")
    router.ensure_routes()
    router.set_weight(canary_weight=100, header_routed=False)

    with no_new_pods_scheduled(kube_admin):
        workloads.roll_stable("v2")
        with pytest.raises(TemporaryError, match=re.escape("still rolling out {version: v2}")):
            router.finalize()
        assert (
            cluster.read(DESTINATION_RULES, "shop-api")["spec"]
            == (guides_destination_rule()["spec"])
        )
        assert router.current_split() == TrafficSplit(0, 100, False)
    cluster.rolled_out("shop-api")
    router.finalize()
    assert router.current_split() == TrafficSplit(100, 0, False)
    assert cluster.read(DESTINATION_RULES, "shop-api")["spec"]["subsets"][0] == {
        "name": "stable",
        "labels": {"version": "v2"},
    }


def test_istio_subsets_follow_the_kubernetes_recommended_version_label(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    stable = stable_deployment(replicas=0, track=False)
    labels = stable["spec"]["template"]["metadata"]["labels"]
    labels["app.kubernetes.io/version"] = labels.pop("version")
    cluster.create(DEPLOYMENTS, stable)
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    workloads = workloads_for(kube_admin, cluster)
    workloads.ensure_canary("v2", initial_replicas=0)
    istio_router(kube_admin, workloads).ensure_routes()
    assert cluster.read(DESTINATION_RULES, "shop-api")["spec"]["subsets"] == [
        {"name": "stable", "labels": {"app.kubernetes.io/version": "v1"}},
        {"name": "canary", "labels": {"app.kubernetes.io/version": "v2"}},
    ]


# --- gateway api ----------------------------------------------------------------------------


def gateway_router(api: k8s.ApiClient, workloads: CanaryWorkloads) -> TrafficRouter:
    config = GatewayApiRouter(
        provider="gateway-api",
        http_route="shop-api",
        stable_service="shop-api-stable",
        canary_service="shop-api-canary",
    )
    return build_router(config, api=api, workloads=workloads)


def test_gateway_router_walks_the_stages_with_real_services_and_endpoints(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    cluster.create(SERVICES, service("shop-api-stable", {"app": "shop-api", "track": "stable"}))
    cluster.create(HTTP_ROUTES, http_route())
    workloads.ensure_canary("v2", initial_replicas=2)
    router = gateway_router(kube_admin, workloads)

    def versions() -> tuple[str, str]:
        return (
            cluster.read(HTTP_ROUTES, "shop-api")["metadata"]["resourceVersion"],
            cluster.read(SERVICES, "shop-api-canary")["metadata"]["resourceVersion"],
        )

    twice(router.ensure_routes, unchanged=versions)
    canary_service = cluster.read(SERVICES, "shop-api-canary")
    assert canary_service["spec"]["selector"] == {"app": "shop-api", "track": "canary"}
    assert [(p["port"], p["targetPort"]) for p in canary_service["spec"]["ports"]] == [(80, 8080)]
    cluster.rolled_out("shop-api-canary")
    wait_until(
        lambda: (
            endpoint_counts(cluster, "shop-api-canary") == (0, 2)
            and endpoint_counts(cluster, "shop-api-stable") == (4, 0)
        ),
        timeout_s=30,
        what="canary pods behind the canary Service only, stable pods behind the stable one",
    )
    rules = cluster.read(HTTP_ROUTES, "shop-api")["spec"]["rules"]
    assert rules == [
        {
            **API_RULE,
            "backendRefs": [backend("shop-api-stable", 100), backend("shop-api-canary", 0)],
        },
        STATIC_RULE,
    ]

    twice(lambda: router.set_weight(canary_weight=0, header_routed=True), unchanged=versions)
    rules = cluster.read(HTTP_ROUTES, "shop-api")["spec"]["rules"]
    assert rules[0] == {
        "name": "release-bot-canary-header",
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/api"},
                "headers": [{"type": "Exact", "name": "x-canary", "value": "always"}],
            }
        ],
        "backendRefs": [backend("shop-api-canary", 100)],
    }
    assert rules[1:] == [
        {
            **API_RULE,
            "backendRefs": [backend("shop-api-stable", 100), backend("shop-api-canary", 0)],
        },
        STATIC_RULE,
    ]
    assert router.current_split() == TrafficSplit(100, 0, True)

    for weight in WEIGHTS:
        twice(
            partial(router.set_weight, canary_weight=weight, header_routed=False),
            unchanged=versions,
        )
        rules = cluster.read(HTTP_ROUTES, "shop-api")["spec"]["rules"]
        assert rules == [
            {
                **API_RULE,
                "backendRefs": [
                    backend("shop-api-stable", 100 - weight),
                    backend("shop-api-canary", weight),
                ],
            },
            STATIC_RULE,
        ]
        assert router.current_split() == TrafficSplit(100 - weight, weight, False)

    twice(router.finalize, unchanged=versions)
    rules = cluster.read(HTTP_ROUTES, "shop-api")["spec"]["rules"]
    assert rules == [{**API_RULE, "backendRefs": [backend("shop-api-stable", 100)]}, STATIC_RULE]
    assert router.current_split() == TrafficSplit(100, 0, False)


def test_gateway_router_refuses_a_stable_service_that_also_selects_the_canary(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    cluster.create(SERVICES, service("shop-api-stable", {"app": "shop-api"}))
    cluster.create(HTTP_ROUTES, http_route())
    router = gateway_router(kube_admin, workloads)
    [problem] = router.check("v2")
    assert problem == (
        f"services {cluster.namespace}/shop-api-stable selects {{app: shop-api}}, which the "
        "canary pods carry too, so its share of traffic would reach them: add `version: v1` to "
        "its selector (no pod restarts; release-bot then keeps it on the version the stable "
        "pods run)"
    )
    workloads.ensure_canary("v2", initial_replicas=0)
    with pytest.raises(PermanentError, match="which the canary pods carry too"):
        router.ensure_routes()
    assert cluster.of(SERVICES).get("shop-api-canary") is None


def test_gateway_router_needs_the_users_http_route(
    kube_admin: k8s.ApiClient, cluster: Cluster, workloads: CanaryWorkloads
) -> None:
    cluster.create(SERVICES, service("shop-api-stable", {"app": "shop-api", "track": "stable"}))
    [problem] = gateway_router(kube_admin, workloads).check("v2")
    assert problem.endswith(
        "shop-api not found: name the HTTPRoute in the router's http_route; release-bot adopts "
        "an existing HTTPRoute (it holds the parentRefs to your Gateway)"
    )


def test_a_stable_service_selecting_the_version_follows_it_through_promotion(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    """No track label anywhere: the stable Service tells stable pods by `version`, the canary
    Service gets the new version, and the stable Service moves to it after promotion."""
    cluster.create(DEPLOYMENTS, stable_deployment(replicas=2, track=False))
    cluster.rolled_out("shop-api")
    cluster.create(SERVICES, service("shop-api-stable", {"app": "shop-api", "version": "v1"}))
    cluster.create(HTTP_ROUTES, http_route())
    workloads = workloads_for(kube_admin, cluster)
    router = gateway_router(kube_admin, workloads)
    assert router.check("v2") == []
    workloads.ensure_canary("v2", initial_replicas=2)
    router.ensure_routes()
    selector = cluster.read(SERVICES, "shop-api-canary")["spec"]["selector"]
    assert selector == {"app": "shop-api", "version": "v2"}
    cluster.rolled_out("shop-api-canary")
    wait_until(
        lambda: (
            endpoint_counts(cluster, "shop-api-canary") == (0, 2)
            and endpoint_counts(cluster, "shop-api-stable") == (2, 0)
        ),
        timeout_s=30,
        what="canary pods behind the canary Service only, stable pods behind the stable one",
    )
    router.set_weight(canary_weight=100, header_routed=False)
    workloads.roll_stable("v2")
    cluster.rolled_out("shop-api")
    router.finalize()
    assert cluster.read(SERVICES, "shop-api-stable")["spec"]["selector"] == {
        "app": "shop-api",
        "version": "v2",
    }
    rules = cluster.read(HTTP_ROUTES, "shop-api")["spec"]["rules"]
    assert rules[0]["backendRefs"] == [backend("shop-api-stable", 100)]
    workloads.remove_canary()
    wait_until(
        lambda: endpoint_counts(cluster, "shop-api-stable") == (2, 0),
        timeout_s=30,
        what="the promoted stable pods behind the stable Service",
    )


# --- factory and noop -----------------------------------------------------------------------


def test_unknown_provider_is_an_error_not_a_silent_default(
    kube_admin: k8s.ApiClient, workloads: CanaryWorkloads
) -> None:
    with pytest.raises(
        PermanentError,
        match=re.escape(
            "unknown traffic router provider 'linkerd'; "
            "known providers: replicas, istio, gateway-api, none"
        ),
    ):
        # a router model this build does not know, such as a newer apps file could hold
        build_router(
            ReplicasRouter.model_construct(provider="linkerd"), api=kube_admin, workloads=workloads
        )
    assert PROVIDERS == ("replicas", "istio", "gateway-api", "none")


def test_noop_router_splits_nothing_and_says_so(
    kube_admin: k8s.ApiClient, workloads: CanaryWorkloads
) -> None:
    router = build_router(NoRouter(provider="none"), api=kube_admin, workloads=workloads)
    assert "add `router:` to the app" in router.check("v2")[0]
    router.ensure_routes()
    router.set_weight(canary_weight=0, header_routed=False)
    assert router.current_split() == TrafficSplit(100, 0, False)
    with pytest.raises(PermanentError, match="'none' cannot send 5 % of traffic"):
        router.set_weight(canary_weight=5, header_routed=False)
    with pytest.raises(PermanentError, match="or header-matching requests"):
        router.set_weight(canary_weight=0, header_routed=True)
    router.finalize()


# --- conflicts and permissions --------------------------------------------------------------


class InterferingApiClient(k8s.ApiClient):
    """A real client: before each of its first `times` PUTs to a VirtualService another writer
    changes that object, so the PUT carries a stale resourceVersion and the apiserver answers
    409 Conflict for real."""

    def __init__(
        self, configuration: k8s.Configuration, *, interfere: Callable[[], None], times: int
    ):
        super().__init__(configuration)
        self.interfere, self.times = interfere, times
        self.puts = 0

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method == "PUT" and "/virtualservices/" in url:
            self.puts += 1
            if self.puts <= self.times:
                self.interfere()
        return super().call_api(method, url, *args, **kwargs)


@pytest.fixture
def other_writer(cluster: Cluster) -> Callable[[], None]:
    """Someone else (kubectl, another bot replica) annotating the VirtualService."""
    count = iter(range(1, 1000))

    def write() -> None:
        patch = {"metadata": {"annotations": {"other-writer": str(next(count))}}}
        cluster.of(VIRTUAL_SERVICES).merge_patch("shop-api", patch)

    return write


def test_a_real_409_conflict_is_retried_on_the_fresh_object(
    kube_cluster: KubeCluster,
    kube_admin: k8s.ApiClient,
    cluster: Cluster,
    workloads: CanaryWorkloads,
    other_writer: Callable[[], None],
) -> None:
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    workloads.ensure_canary("v2", initial_replicas=0)
    istio_router(kube_admin, workloads).ensure_routes()
    interfering = InterferingApiClient(
        kube_cluster.configuration(), interfere=other_writer, times=1
    )
    istio_router(interfering, workloads).set_weight(canary_weight=50, header_routed=False)

    assert interfering.puts == 2  # the first PUT got 409, the retry re-read and won
    stored = cluster.read(VIRTUAL_SERVICES, "shop-api")
    assert stored["metadata"]["annotations"]["other-writer"] == "1"  # the other write survived
    assert stored["spec"]["http"][1]["route"] == [
        destination("stable", 50),
        destination("canary", 50),
    ]


def test_endless_conflicts_give_up_with_a_temporary_error(
    kube_cluster: KubeCluster,
    kube_admin: k8s.ApiClient,
    cluster: Cluster,
    workloads: CanaryWorkloads,
    other_writer: Callable[[], None],
) -> None:
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    workloads.ensure_canary("v2", initial_replicas=0)
    istio_router(kube_admin, workloads).ensure_routes()
    interfering = InterferingApiClient(
        kube_cluster.configuration(), interfere=other_writer, times=10**6
    )
    with pytest.raises(
        TemporaryError, match=re.escape("conflict on update virtualservices.networking.istio.io")
    ):
        istio_router(interfering, workloads).set_weight(canary_weight=50, header_routed=False)
    assert interfering.puts == RETRY_ATTEMPTS
    assert istio_router(kube_admin, workloads).current_split() == TrafficSplit(100, 0, False)


def grant_restricted_user(cluster: Cluster, rules: list[Object]) -> None:
    rbac = k8s.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(
        cluster.namespace, {"metadata": {"name": "router-reader"}, "rules": rules}
    )
    rbac.create_namespaced_role_binding(
        cluster.namespace,
        {
            "metadata": {"name": "router-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "router-reader",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": RESTRICTED_USER}
            ],
        },
    )


def test_forbidden_update_names_verb_resource_and_namespace(
    kube_cluster: KubeCluster,
    kube_admin: k8s.ApiClient,
    cluster: Cluster,
    workloads: CanaryWorkloads,
) -> None:
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    workloads.ensure_canary("v2", initial_replicas=0)
    istio_router(kube_admin, workloads).ensure_routes()
    grant_restricted_user(
        cluster,
        [
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
            {
                "apiGroups": ["networking.istio.io"],
                "resources": ["virtualservices", "destinationrules"],
                "verbs": ["get"],
            },
        ],
    )
    restricted = kube_cluster.api_client(RESTRICTED_TOKEN)
    router = istio_router(restricted, workloads_for(restricted, cluster))
    wait_until(
        lambda: router.current_split() is not None, timeout_s=10, what="RBAC grant in effect"
    )

    with pytest.raises(PermanentError) as denied:
        router.set_weight(canary_weight=5, header_routed=False)
    assert (
        "release-bot may not update virtualservices.networking.istio.io "
        f"in namespace {cluster.namespace} "
        "(grant verb 'update' on resource 'virtualservices' in API group networking.istio.io)"
    ) in str(denied.value)
    assert router.current_split() == TrafficSplit(100, 0, False)


def workloads_for(api: k8s.ApiClient, cluster: Cluster) -> CanaryWorkloads:
    app = AppWorkload(namespace=cluster.namespace, stable_deployment="shop-api", container="app")
    return CanaryWorkloads(api, app)
