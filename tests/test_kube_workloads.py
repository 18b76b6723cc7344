"""CanaryWorkloads and the Kubernetes client, against the real kube-apiserver; Deployments are
rolled out by the real controllers and scheduler, and kwok turns their pods Running and Ready."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from bot.core.errors import PermanentError, TemporaryError
from bot.kube.client import (
    DEPLOYMENTS,
    RETRY_ATTEMPTS,
    ForbiddenError,
    NamespacedResources,
    build_api_client,
)
from bot.kube.workloads import (
    AppWorkload,
    CanaryWorkloads,
    NotReadyError,
    ReplicaCount,
    ResolvedVersion,
    resolve_version,
)
from tests.infra.kube import RESTRICTED_TOKEN, KubeCluster, wait_for_deployment_ready
from tests.infra.processes import free_port, wait_until
from tests.kube_objects import containers

STABLE_IMAGE = "registry.example:5000/shop/api:v2.4.0"
PROXY_IMAGE = "envoyproxy/envoy:v1.31.0"
DIGEST = "sha256:" + "ab12" * 16


def stable_deployment(
    name: str = "shop-api",
    *,
    replicas: int = 3,
    selector: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    labels = {"app": name, "version": "v2.4.0", "track": "stable"}
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    pod_spec: dict[str, Any] = {
        "containers": [
            {"name": "app", "image": STABLE_IMAGE, "readinessProbe": probe},
            {"name": "proxy", "image": PROXY_IMAGE, "readinessProbe": probe},
        ]
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, "version": "v2.4.0"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector or {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def read(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found = NamespacedResources(api, DEPLOYMENTS, namespace).get(name)
    assert found is not None, f"deployment {namespace}/{name} missing"
    return found


@pytest.fixture
def app(kube_admin: k8s.ApiClient, namespace: str) -> AppWorkload:
    k8s.AppsV1Api(kube_admin).create_namespaced_deployment(namespace, stable_deployment())
    wait_for_deployment_ready(kube_admin, namespace=namespace, name="shop-api")
    return AppWorkload(namespace=namespace, stable_deployment="shop-api", container="app")


@pytest.fixture
def workloads(kube_admin: k8s.ApiClient, app: AppWorkload) -> CanaryWorkloads:
    return CanaryWorkloads(kube_admin, app, poll_interval_s=0.2)


@pytest.mark.parametrize(
    ("current", "version", "image", "label"),
    [
        (STABLE_IMAGE, "v2.5.0", "registry.example:5000/shop/api:v2.5.0", "v2.5.0"),
        (f"shop/api@{DIGEST}", "v2.5.0", "shop/api:v2.5.0", "v2.5.0"),
        (f"shop/api:v1@{DIGEST}", "v2", "shop/api:v2", "v2"),
        ("nginx", "1.27.1", "nginx:1.27.1", "1.27.1"),
        (STABLE_IMAGE, "ghcr.io/acme/api:v3", "ghcr.io/acme/api:v3", "v3"),
        (
            STABLE_IMAGE,
            f"ghcr.io/acme/api@{DIGEST}",
            f"ghcr.io/acme/api@{DIGEST}",
            "sha256-ab12ab12ab12",
        ),
        (STABLE_IMAGE, f"localhost:5000/api:v4@{DIGEST}", f"localhost:5000/api:v4@{DIGEST}", "v4"),
        ("localhost:5000/shop/api:v1", "v2", "localhost:5000/shop/api:v2", "v2"),
        (f"shop/api@{DIGEST}", "v2", "shop/api:v2", "v2"),
        ("nginx", "1.27", "nginx:1.27", "1.27"),
    ],
)
def test_a_tag_replaces_the_tag_and_a_full_reference_replaces_the_image(
    current: str, version: str, image: str, label: str
) -> None:
    resolved = resolve_version(current_image=current, version=version)
    assert resolved == ResolvedVersion(image=image, label=label)


@pytest.mark.parametrize(
    ("version", "complaint"),
    [
        ("ghcr.io/acme/api", "neither an image tag"),
        ("v 2", "neither an image tag"),
        ("", "neither an image tag"),
        ("-v1", "neither an image tag"),
        ("_v1", "cannot be a label value"),
        ("v" * 64, "cannot be a label value"),
        ("v" * 129, "a tag has at most 128 characters"),
        ("shop//api:v2", "is not an image repository"),
        ("shop/api:v2@sha", "must be `sha256:` followed by 64 hex digits"),
    ],
)
def test_a_version_that_is_neither_is_refused_clearly(version: str, complaint: str) -> None:
    with pytest.raises(PermanentError, match=complaint):
        resolve_version(current_image=STABLE_IMAGE, version=version)


def test_canary_is_derived_from_stable_and_ensuring_twice_writes_nothing(
    kube_admin: k8s.ApiClient, app: AppWorkload, workloads: CanaryWorkloads
) -> None:
    stable_before = read(kube_admin, app.namespace, "shop-api")
    workloads.ensure_canary("v2.5.0", initial_replicas=2)
    canary = read(kube_admin, app.namespace, "shop-api-canary")

    assert containers(canary) == {
        "app": "registry.example:5000/shop/api:v2.5.0",
        "proxy": PROXY_IMAGE,
    }
    assert canary["spec"]["template"]["metadata"]["labels"] == {
        "app": "shop-api",
        "version": "v2.5.0",
        "track": "canary",
    }
    assert canary["spec"]["selector"] == {"matchLabels": {"app": "shop-api", "track": "canary"}}
    assert canary["spec"]["replicas"] == 2
    assert canary["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "release-bot"
    assert canary["metadata"]["annotations"]["release-bot.io/canary-of"] == "shop-api"
    assert canary["metadata"]["annotations"]["release-bot.io/version"] == "v2.5.0"
    [owner] = canary["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Deployment",
        "shop-api",
        stable_before["metadata"]["uid"],
    )

    workloads.ensure_canary("v2.5.0", initial_replicas=2)
    again = read(kube_admin, app.namespace, "shop-api-canary")
    assert again["metadata"]["generation"] == canary["metadata"]["generation"] == 1
    stable_after = read(kube_admin, app.namespace, "shop-api")
    assert stable_after["metadata"]["generation"] == stable_before["metadata"]["generation"]
    assert containers(stable_after)["app"] == STABLE_IMAGE


def test_canary_becomes_ready_through_the_real_controllers(
    kube_admin: k8s.ApiClient, app: AppWorkload, workloads: CanaryWorkloads
) -> None:
    workloads.ensure_canary("v2.5.0", initial_replicas=2)
    waited = wait_until(workloads.canary_ready, timeout_s=60, what="canary ready", interval_s=0.2)

    assert workloads.canary_ready()
    pods = (
        k8s.CoreV1Api(kube_admin)
        .list_namespaced_pod(app.namespace, label_selector="app=shop-api,track=canary")
        .items
    )
    assert len(pods) == 2, waited
    assert {pod.spec.containers[0].image for pod in pods} == {
        "registry.example:5000/shop/api:v2.5.0"
    }
    assert all(pod.status.phase == "Running" for pod in pods)
    stable_pods = (
        k8s.CoreV1Api(kube_admin)
        .list_namespaced_pod(app.namespace, label_selector="app=shop-api,track=stable")
        .items
    )
    assert len(stable_pods) == 3  # the canary adopted none of them


def test_a_full_reference_replaces_the_image_whole(
    kube_admin: k8s.ApiClient, app: AppWorkload, workloads: CanaryWorkloads
) -> None:
    workloads.ensure_canary(f"ghcr.io/acme/shop-api@{DIGEST}", initial_replicas=1)
    canary = read(kube_admin, app.namespace, "shop-api-canary")
    assert containers(canary)["app"] == f"ghcr.io/acme/shop-api@{DIGEST}"
    assert canary["spec"]["template"]["metadata"]["labels"]["version"] == "sha256-ab12ab12ab12"


def test_a_new_version_updates_the_canary_but_keeps_its_replica_count(
    kube_admin: k8s.ApiClient, app: AppWorkload, workloads: CanaryWorkloads
) -> None:
    workloads.ensure_canary("v2.5.0", initial_replicas=2)
    workloads.scale("canary", 1)
    workloads.ensure_canary("v2.5.1", initial_replicas=5)
    canary = read(kube_admin, app.namespace, "shop-api-canary")
    assert canary["spec"]["replicas"] == 1
    assert containers(canary)["app"] == "registry.example:5000/shop/api:v2.5.1"
    assert canary["metadata"]["annotations"]["release-bot.io/version"] == "v2.5.1"
    wait_until(workloads.canary_ready, timeout_s=60, what="canary ready", interval_s=0.2)
    assert workloads.replicas("canary").ready == 1


def stable_rolled_out(workloads: CanaryWorkloads) -> None:
    """Poll as the reconciler's promotion does, one `rolled_out` check per pass."""
    wait_until(
        lambda: workloads.rolled_out("stable"),
        timeout_s=60,
        what="stable rolled out",
        interval_s=0.2,
    )


def test_pods_labelled_with_the_recommended_version_label_get_the_new_version(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    """`app.kubernetes.io/version` instead of `version`: the canary's pods carry the new
    version under that label (not the stable's value), and so does stable after promotion."""
    stable = stable_deployment()
    labels = stable["spec"]["template"]["metadata"]["labels"]
    labels["app.kubernetes.io/version"] = labels.pop("version")
    stable["metadata"]["labels"] = {"app": "shop-api", "app.kubernetes.io/version": "v2.4.0"}
    k8s.AppsV1Api(kube_admin).create_namespaced_deployment(namespace, stable)
    app = AppWorkload(namespace=namespace, stable_deployment="shop-api", container="app")
    workloads = CanaryWorkloads(kube_admin, app, poll_interval_s=0.2)

    assert workloads.canary_pod_labels("v2.5.0")["app.kubernetes.io/version"] == "v2.5.0"
    workloads.ensure_canary("v2.5.0", initial_replicas=1)
    canary = read(kube_admin, namespace, "shop-api-canary")
    assert canary["spec"]["template"]["metadata"]["labels"] == {
        "app": "shop-api",
        "app.kubernetes.io/version": "v2.5.0",
        "track": "canary",
    }
    assert canary["metadata"]["labels"]["app.kubernetes.io/version"] == "v2.5.0"
    assert "version" not in canary["metadata"]["labels"]
    assert workloads.canary_pod_labels() == canary["spec"]["template"]["metadata"]["labels"]

    workloads.roll_stable("v2.5.0")
    rolled = read(kube_admin, namespace, "shop-api")
    assert rolled["spec"]["template"]["metadata"]["labels"] == {
        "app": "shop-api",
        "app.kubernetes.io/version": "v2.5.0",
        "track": "stable",
    }
    assert rolled["metadata"]["labels"] == {
        "app": "shop-api",
        "app.kubernetes.io/version": "v2.5.0",
    }


def test_rolling_stable_rolls_the_stable_deployment_and_twice_is_harmless(
    kube_admin: k8s.ApiClient, app: AppWorkload, workloads: CanaryWorkloads
) -> None:
    workloads.ensure_canary("v2.5.0", initial_replicas=1)
    workloads.roll_stable("v2.5.0")
    stable_rolled_out(workloads)

    stable = read(kube_admin, app.namespace, "shop-api")
    assert containers(stable) == {
        "app": "registry.example:5000/shop/api:v2.5.0",
        "proxy": PROXY_IMAGE,
    }
    assert stable["spec"]["template"]["metadata"]["labels"] == {
        "app": "shop-api",
        "version": "v2.5.0",
        "track": "stable",
    }
    assert stable["metadata"]["labels"]["version"] == "v2.5.0"
    assert stable["status"]["updatedReplicas"] == stable["status"]["availableReplicas"] == 3
    pods = (
        k8s.CoreV1Api(kube_admin)
        .list_namespaced_pod(app.namespace, label_selector="app=shop-api,track=stable")
        .items
    )
    running = [pod for pod in pods if pod.metadata.deletion_timestamp is None]
    assert len(running) == 3
    assert {pod.metadata.labels["version"] for pod in running} == {"v2.5.0"}

    workloads.roll_stable("v2.5.0")
    stable_rolled_out(workloads)
    assert (
        read(kube_admin, app.namespace, "shop-api")["metadata"]["generation"]
        == (stable["metadata"]["generation"])
    )


def test_remove_canary_deletes_it_and_twice_is_harmless(
    kube_admin: k8s.ApiClient, app: AppWorkload, workloads: CanaryWorkloads
) -> None:
    workloads.ensure_canary("v2.5.0", initial_replicas=1)
    workloads.remove_canary()
    assert (
        NamespacedResources(kube_admin, DEPLOYMENTS, app.namespace).get("shop-api-canary") is None
    )
    workloads.remove_canary()
    assert not workloads.canary_ready()
    assert workloads.replicas("canary") == ReplicaCount(desired=0, ready=0)


def test_a_canary_release_bot_does_not_manage_is_never_touched(
    kube_admin: k8s.ApiClient, app: AppWorkload, workloads: CanaryWorkloads
) -> None:
    impostor = stable_deployment("shop-api-canary", replicas=0)
    k8s.AppsV1Api(kube_admin).create_namespaced_deployment(app.namespace, impostor)
    with pytest.raises(PermanentError, match="not managed by release-bot"):
        workloads.ensure_canary("v2.5.0", initial_replicas=1)
    with pytest.raises(PermanentError, match="not managed by release-bot"):
        workloads.remove_canary()
    assert containers(read(kube_admin, app.namespace, "shop-api-canary"))["app"] == STABLE_IMAGE


def test_deadline_error_says_which_deployment_and_why(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    unschedulable = stable_deployment(replicas=0, node_selector={"disktype": "none-such"})
    k8s.AppsV1Api(kube_admin).create_namespaced_deployment(namespace, unschedulable)
    app = AppWorkload(namespace=namespace, stable_deployment="shop-api", container="app")
    workloads = CanaryWorkloads(kube_admin, app, poll_interval_s=0.2)
    workloads.ensure_canary("v2.5.0", initial_replicas=1)

    started = time.monotonic()
    with pytest.raises(NotReadyError) as late:  # as the replicas router waits for a side it grew
        workloads.wait_rolled_out("canary", deadline_s=2)
    assert 2 <= time.monotonic() - started < 10
    message = str(late.value)
    assert f"canary Deployment {namespace}/shop-api-canary not ready after 2 s" in message
    assert "0/1 available" in message
    assert "Unschedulable" in message and "node affinity/selector" in message


@pytest.mark.parametrize(
    ("selector", "container", "complaint"),
    [
        ({"app": "shop-api", "version": "v2.4.0"}, "app", "selects on the 'version' label"),
        ({"app": "shop-api"}, "web", "has no container 'web' \\(it has: app, proxy\\)"),
    ],
)
def test_a_stable_deployment_that_cannot_be_released_is_refused_clearly(
    kube_admin: k8s.ApiClient,
    namespace: str,
    selector: dict[str, str],
    container: str,
    complaint: str,
) -> None:
    body = stable_deployment(replicas=0, selector=selector)
    k8s.AppsV1Api(kube_admin).create_namespaced_deployment(namespace, body)
    app = AppWorkload(namespace=namespace, stable_deployment="shop-api", container=container)
    with pytest.raises(PermanentError, match=complaint):
        CanaryWorkloads(kube_admin, app).ensure_canary("v2.5.0", initial_replicas=1)
    assert NamespacedResources(kube_admin, DEPLOYMENTS, namespace).get("shop-api-canary") is None


def test_missing_stable_deployment_is_permanent(kube_admin: k8s.ApiClient, namespace: str) -> None:
    app = AppWorkload(namespace=namespace, stable_deployment="ghost", container="app")
    with pytest.raises(PermanentError, match=f"stable Deployment {namespace}/ghost not found"):
        CanaryWorkloads(kube_admin, app).ensure_canary("v2", initial_replicas=1)


@pytest.fixture
def stable_in_default(kube_admin: k8s.ApiClient) -> Iterator[str]:
    """The restricted user may read Deployments in `default` only; a stable one lives there."""
    name = "shop-" + uuid.uuid4().hex[:8]
    k8s.AppsV1Api(kube_admin).create_namespaced_deployment("default", stable_deployment(name))
    yield name
    k8s.AppsV1Api(kube_admin).delete_namespaced_deployment(name, "default")


def test_forbidden_write_names_the_missing_permission(
    kube_cluster: KubeCluster, stable_in_default: str
) -> None:
    restricted = kube_cluster.api_client(RESTRICTED_TOKEN)
    app = AppWorkload(namespace="default", stable_deployment=stable_in_default, container="app")
    with pytest.raises(PermanentError) as denied:
        CanaryWorkloads(restricted, app).ensure_canary("v2.5.0", initial_replicas=1)
    message = str(denied.value)
    assert "may not create deployments.apps in namespace default" in message
    assert "grant verb 'create' on resource 'deployments' in API group apps" in message
    assert not isinstance(denied.value, TemporaryError)


def test_client_from_a_kubeconfig_file(kube_cluster: KubeCluster, namespace: str) -> None:
    api = build_api_client(str(kube_cluster.kubeconfig()))
    deployments = NamespacedResources(api, DEPLOYMENTS, namespace)
    assert deployments.get("none-such") is None
    assert deployments.list_matching(label_selector="app=none-such") == []


def test_client_outside_a_cluster_without_kubeconfig_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(PermanentError, match=r"in-cluster service account .*set KUBECONFIG"):
        build_api_client(None)


def test_unreachable_apiserver_is_temporary_after_bounded_retries(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    kubeconfig = yaml.safe_load(kube_cluster.kubeconfig().read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    path = tmp_path / "closed.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    deployments = NamespacedResources(build_api_client(str(path)), DEPLOYMENTS, "default")
    started = time.monotonic()
    with pytest.raises(
        TemporaryError, match=re.escape("Kubernetes API unreachable to get deployments.apps")
    ):
        deployments.get("shop-api")
    assert time.monotonic() - started < 15


class AnsweringApiClient(k8s.ApiClient):
    """An ApiClient whose every call gets one scripted answer, counting the attempts."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(k8s.Configuration())
        self.answer = SimpleNamespace(
            status=status,
            headers=headers,
            response=SimpleNamespace(data=b'{"kind": "Status", "message": "scripted"}'),
        )
        self.attempts = 0

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        return self.answer


@pytest.mark.parametrize(
    ("status", "headers", "retry_after_s"),
    [
        (408, {}, None),
        (425, {}, None),
        (429, {"Retry-After": "7"}, 7.0),
        (503, {}, None),
    ],
)
def test_timeouts_throttling_and_server_errors_are_temporary_and_retried(
    status: int, headers: dict[str, str], retry_after_s: float | None
) -> None:
    api = AnsweringApiClient(status, headers)
    with pytest.raises(TemporaryError, match=f"answered {status} to patch") as failed:
        NamespacedResources(api, DEPLOYMENTS, "shop").merge_patch("shop-api", {})
    assert failed.value.retry_after_s == retry_after_s
    assert api.attempts == RETRY_ATTEMPTS


@pytest.mark.parametrize(
    ("status", "error", "fragment"),
    [
        (400, PermanentError, "cannot patch deployments.apps shop/shop-api (HTTP 400): scripted"),
        (401, PermanentError, "rejected the bot's credentials (401) to patch"),
        (403, ForbiddenError, "grant verb 'patch' on resource 'deployments' in API group apps"),
        (404, PermanentError, "deployments.apps shop/shop-api not found: scripted"),
        (422, PermanentError, "cannot patch deployments.apps shop/shop-api (HTTP 422)"),
    ],
)
def test_refusals_are_permanent_and_never_retried(
    status: int, error: type[PermanentError], fragment: str
) -> None:
    api = AnsweringApiClient(status, {})
    with pytest.raises(error, match=re.escape(fragment)) as failed:
        NamespacedResources(api, DEPLOYMENTS, "shop").merge_patch("shop-api", {})
    assert not isinstance(failed.value, TemporaryError)
    assert api.attempts == 1
