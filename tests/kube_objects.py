"""Kubernetes objects the kube tests set up, and the admin's reads and writes to check them.

Used by tests/test_kube_routers.py, tests/test_kube_workloads.py, tests/test_reconciler.py and
tests/test_replicas.py: a stable Deployment `shop-api` (or another name), its Services, the
user's VirtualService and HTTPRoute as a team would have written them before adopting
release-bot.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes import client as k8s

from bot.kube.client import NamespacedResources, Object, ResourceType
from tests.infra.kube import FAKE_NODE, wait_for_deployment_ready

STABLE_IMAGE = "registry.example/shop/api:v1"
READINESS_PROBE = {"httpGet": {"path": "/healthz", "port": 8080}}


def stable_deployment(
    *,
    name: str = "shop-api",
    replicas: int = 4,
    track: bool = True,
    readiness_probe: bool = True,
    image: str = STABLE_IMAGE,
) -> Object:
    """`name` (shop-api) with one container `app`, its pods labelled app: `name`, version: v1
    (and track: stable)."""
    labels = {"app": name, "version": "v1"} | ({"track": "stable"} if track else {})
    container: Object = {"name": "app", "image": image}
    if readiness_probe:
        container["readinessProbe"] = READINESS_PROBE
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


@contextmanager
def no_new_pods_scheduled(api: k8s.ApiClient) -> Iterator[None]:
    """The fake node cordoned: pods created meanwhile stay Pending until it is uncordoned
    (kwok readies a scheduled pod within milliseconds)."""
    nodes = k8s.CoreV1Api(api)
    nodes.patch_node(FAKE_NODE, {"spec": {"unschedulable": True}})
    try:
        yield
    finally:
        nodes.patch_node(FAKE_NODE, {"spec": {"unschedulable": False}})


def containers(deployment: Object) -> dict[str, str]:
    """Container name -> image of a Deployment's pod template."""
    return {c["name"]: c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}


def service(name: str, selector: dict[str, str]) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


class Cluster:
    """Reads and writes for the test's own setup and checks, as the admin."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace

    def of(self, kind: ResourceType) -> NamespacedResources:
        return NamespacedResources(self.api, kind, self.namespace)

    def create(self, kind: ResourceType, body: Object) -> None:
        self.of(kind).reconcile(body["metadata"]["name"], lambda current: body)

    def read(self, kind: ResourceType, name: str) -> Object:
        found = self.of(kind).get(name)
        assert found is not None, f"{kind.plural} {name} missing"
        return found

    def rolled_out(self, *names: str) -> dict[str, Object]:
        return {
            name: wait_for_deployment_ready(self.api, namespace=self.namespace, name=name).to_dict()
            for name in names
        }

    def ready_pods(self, label_selector: str) -> list[str]:
        """Names of the ready pods, not being deleted, that `label_selector` selects."""
        pods = k8s.CoreV1Api(self.api).list_namespaced_pod(
            self.namespace, label_selector=label_selector
        )
        return sorted(
            pod.metadata.name
            for pod in pods.items
            if pod.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        )

    def ready_endpoints(self, service_name: str) -> list[str]:
        """Names of the ready pods the endpointslice controller lists for a Service."""
        slices = k8s.DiscoveryV1Api(self.api).list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={service_name}"
        )
        return sorted(
            endpoint.target_ref.name
            for endpoint_slice in slices.items
            for endpoint in endpoint_slice.endpoints or []
            if endpoint.conditions.ready
        )


# --- istio: a VirtualService with an admin route, and the main route release-bot splits ----------

ADMIN_ROUTE = {
    "name": "admin",
    "match": [{"uri": {"prefix": "/admin"}}],
    "route": [{"destination": {"host": "admin-svc"}}],
}
MAIN_ROUTE = {
    "name": "main",
    "match": [{"uri": {"prefix": "/api"}}, {"headers": {"x-team": {"exact": "shop"}}}],
    "timeout": "5s",
    "route": [{"destination": {"host": "shop-api", "port": {"number": 80}}}],
}


def users_virtual_service() -> Object:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "shop-api"},
        "spec": {
            "hosts": ["shop-api"],
            "http": [copy.deepcopy(ADMIN_ROUTE), copy.deepcopy(MAIN_ROUTE)],
        },
    }


def guides_destination_rule() -> Object:
    """The production guide's DestinationRule: subsets keyed on the pod label `version`."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "shop-api"},
        "spec": {
            "host": "shop-api",
            "subsets": [
                {"name": "stable", "labels": {"version": "v1"}},
                {"name": "canary", "labels": {"version": "v2"}},
            ],
        },
    }


def guides_virtual_service() -> Object:
    """The production guide's VirtualService: all of the host's traffic to subset `stable`."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "shop-api"},
        "spec": {
            "hosts": ["shop-api"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "shop-api", "subset": "stable"}, "weight": 100}
                    ]
                }
            ],
        },
    }


def destination(subset: str, weight: int) -> Object:
    """A weighted destination of the main route, as the Istio router writes it."""
    return {
        "destination": {"host": "shop-api", "port": {"number": 80}, "subset": subset},
        "weight": weight,
    }


# --- gateway api: an HTTPRoute with the /api rule release-bot splits, and a /static rule ---------

API_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
    "backendRefs": [
        {"group": "", "kind": "Service", "name": "shop-api-stable", "port": 80, "weight": 1}
    ],
}
STATIC_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
    "backendRefs": [{"group": "", "kind": "Service", "name": "static", "port": 80, "weight": 1}],
}


def http_route() -> Object:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shop-api"},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "hostnames": ["shop.example.com"],
            "rules": [copy.deepcopy(API_RULE), copy.deepcopy(STATIC_RULE)],
        },
    }


def backend(name: str, weight: int) -> Object:
    """A weighted backendRef of the /api rule, as the Gateway API router writes it."""
    return {"group": "", "kind": "Service", "name": name, "port": 80, "weight": weight}
