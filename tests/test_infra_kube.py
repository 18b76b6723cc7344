"""The tests' Kubernetes: a real kube-apiserver (RBAC, tokens, CRD schemas) and real controllers."""

import json
import ssl
import urllib.request
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.infra.kube import RESTRICTED_TOKEN, KubeCluster, wait_for_deployment_ready


def deployment(name: str, image: str, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name, "version": image.rsplit(":", 1)[-1]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def virtual_service(weights: tuple[Any, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "shop-api"},
        "spec": {
            "hosts": ["shop-api"],
            "http": [
                {
                    "route": [
                        {
                            "destination": {"host": "shop-api", "subset": "stable"},
                            "weight": weights[0],
                        },
                        {
                            "destination": {"host": "shop-api", "subset": "canary"},
                            "weight": weights[1],
                        },
                    ]
                }
            ],
        },
    }


def test_apiserver_reports_the_pinned_version(kube_cluster: KubeCluster) -> None:
    version = k8s.VersionApi(kube_cluster.api_client()).get_code()
    assert (version.major, version.minor, version.git_version) == ("1", "35", "v1.35.4")


def test_deployment_created_read_back_and_rolled_out_by_real_controllers(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    apps = k8s.AppsV1Api(kube_admin)
    apps.create_namespaced_deployment(namespace, deployment("shop-api", "shop/api:v2.4.0"))
    read_back = apps.read_namespaced_deployment("shop-api", namespace)
    assert read_back.spec.template.spec.containers[0].image == "shop/api:v2.4.0"

    ready = wait_for_deployment_ready(kube_admin, namespace=namespace, name="shop-api")
    assert ready.status.ready_replicas == 2
    pods = (
        k8s.CoreV1Api(kube_admin)
        .list_namespaced_pod(namespace, label_selector="app=shop-api")
        .items
    )
    assert len(pods) == 2
    assert all(
        pod.spec.node_name == "kwok-node-0" and pod.status.phase == "Running" for pod in pods
    )


def test_restricted_token_is_forbidden_what_rbac_does_not_grant(kube_cluster: KubeCluster) -> None:
    restricted = kube_cluster.api_client(RESTRICTED_TOKEN)
    apps = k8s.AppsV1Api(restricted)
    assert apps.list_namespaced_deployment("default").items == []  # granted: get/list in default
    with pytest.raises(ApiException) as denied:
        apps.create_namespaced_deployment("default", deployment("intruder", "evil:1"))
    assert denied.value.status == 403
    assert 'cannot create resource "deployments"' in json.loads(denied.value.body)["message"]
    with pytest.raises(ApiException) as denied_elsewhere:
        apps.list_namespaced_deployment("kube-system")
    assert denied_elsewhere.value.status == 403


def test_virtual_service_schema_accepts_weights_and_rejects_wrong_types(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    custom = k8s.CustomObjectsApi(kube_admin)
    args = ("networking.istio.io", "v1", namespace, "virtualservices")
    custom.create_namespaced_custom_object(*args, virtual_service((90, 10)))
    stored = custom.get_namespaced_custom_object(*args, "shop-api")
    assert [route["weight"] for route in stored["spec"]["http"][0]["route"]] == [90, 10]

    bad = virtual_service(("ninety", 10))
    bad["metadata"]["name"] = "shop-api-bad"
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(*args, bad)
    assert rejected.value.status == 422
    assert "spec.http[0].route[0].weight" in rejected.value.body


@pytest.mark.parametrize(
    ("group", "version", "plural"),
    [
        ("networking.istio.io", "v1", "destinationrules"),
        ("gateway.networking.k8s.io", "v1", "httproutes"),
        ("argoproj.io", "v1alpha1", "rollouts"),
        ("argoproj.io", "v1alpha1", "analysisruns"),
        ("argoproj.io", "v1alpha1", "analysistemplates"),
        ("argoproj.io", "v1alpha1", "clusteranalysistemplates"),
        ("argoproj.io", "v1alpha1", "experiments"),
    ],
)
def test_crds_from_go_modules_are_served(
    kube_cluster: KubeCluster, group: str, version: str, plural: str
) -> None:
    request = urllib.request.Request(
        f"{kube_cluster.server}/apis/{group}/{version}",
        headers={
            "Authorization": f"Bearer {kube_cluster.configuration().api_key['authorization']}"
        },
    )
    context = ssl.create_default_context(cafile=str(kube_cluster.ca_file))
    context.check_hostname = False
    with urllib.request.urlopen(request, context=context) as response:
        resources = {r["name"] for r in json.loads(response.read())["resources"]}
    assert plural in resources
