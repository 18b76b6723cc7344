"""`release-bot check-config --live` against the real kube-apiserver and Debian's Prometheus:
run by pytest; the cluster half is bot.kube.live_check, the whole command runs as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client as k8s

from bot.application.apps_file import load_config
from bot.core.apps import AppConfig
from bot.kube.client import (
    DEPLOYMENTS,
    DESTINATION_RULES,
    HTTP_ROUTES,
    ROLLOUTS,
    SERVICES,
    VIRTUAL_SERVICES,
)
from bot.kube.live_check import LiveFinding, canary_share, check_app_live
from tests.infra.kube import KubeCluster
from tests.infra.processes import free_port
from tests.infra.prometheus_server import PrometheusServer
from tests.kube_objects import (
    Cluster,
    http_route,
    service,
    stable_deployment,
    users_virtual_service,
)

REPO = Path(__file__).resolve().parent.parent


def apps_file(namespace: str, *, prometheus_url: str, weights: str = "25, 50") -> str:
    stages = "".join(f"    - {{weight: {w.strip()}, duration: 10m}}\n" for w in weights.split(","))
    metrics = f"    metrics: {{prometheus_url: '{prometheus_url}'}}\n"
    return (
        "apps:\n"
        f"  cart:\n    namespace: {namespace}\n    workload: cart\n    slack_channel: C0CART\n"
        "    plan: steps\n    router: {provider: replicas}\n" + metrics
        + f"  shop-api:\n    namespace: {namespace}\n    workload: shop-api\n"
        "    slack_channel: C0SHOP\n    router: {provider: istio, virtual_service: shop-api,"
        " destination_rule: shop-api, host: shop-api, route_index: 1}\n" + metrics
        + f"  checkout:\n    namespace: {namespace}\n    workload: checkout\n"
        "    slack_channel: C0PAY\n    router: {provider: gateway-api, http_route: shop-api,"
        " stable_service: shop-api-stable, canary_service: checkout-canary}\n" + metrics
        + "plans:\n  steps:\n" + stages
    )  # fmt: skip


def set_up(api: k8s.ApiClient, namespace: str) -> Cluster:
    cluster = Cluster(api, namespace)
    for name in ("cart", "shop-api", "checkout"):
        cluster.create(DEPLOYMENTS, stable_deployment(name=name, replicas=4))
    cluster.create(SERVICES, service("cart", {"app": "cart"}))
    cluster.create(SERVICES, service("shop-api-stable", {"app": "checkout", "version": "v1"}))
    cluster.create(VIRTUAL_SERVICES, users_virtual_service())
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "shop-api"},
        "spec": {"host": "shop-api"},
    }
    cluster.create(DESTINATION_RULES, rule)
    cluster.create(HTTP_ROUTES, http_route())
    return cluster


def apps(tmp_path: Path, text: str) -> dict[str, AppConfig]:
    path = tmp_path / "apps.yaml"
    path.write_text(text)
    return dict(load_config(path).apps)


def problems(findings: list[LiveFinding]) -> list[str]:
    return [finding.message for finding in findings if not finding.ok]


def test_replica_shares_follow_the_router() -> None:
    assert [canary_share(pods=4, weight=w) for w in (1, 25, 50, 95)] == [25, 25, 50, 75]
    assert canary_share(pods=1, weight=10) == 50
    assert canary_share(pods=100, weight=1) == 1


def test_every_object_an_app_names_is_found(
    kube_admin: k8s.ApiClient, namespace: str, tmp_path: Path
) -> None:
    set_up(kube_admin, namespace)
    config = apps(tmp_path, apps_file(namespace, prometheus_url="http://127.0.0.1:1"))

    found = {name: check_app_live(kube_admin, app) for name, app in config.items()}

    assert {name: problems(findings) for name, findings in found.items()} == {
        "cart": [],
        "shop-api": [],
        "checkout": [],
    }
    assert [f.message for f in found["shop-api"]] == [
        f"Deployment {namespace}/shop-api found, container app",
        "router istio: a canary can be routed",
    ]
    assert found["checkout"][-1].message == "router gateway-api: a canary can be routed"
    assert found["cart"][-1].message == "plan 'steps': 4 pods honour every stage weight"


def test_an_app_without_a_router_is_checked_as_blue_green_only(
    kube_admin: k8s.ApiClient, namespace: str, tmp_path: Path
) -> None:
    set_up(kube_admin, namespace)
    text = apps_file(namespace, prometheus_url="http://x:1").replace(
        "    plan: steps\n    router: {provider: replicas}\n", ""
    )

    assert [f.message for f in check_app_live(kube_admin, apps(tmp_path, text)["cart"])] == [
        f"Deployment {namespace}/cart found, container app",
        "router none: blue-green only (a canary or hybrid start needs a router)",
    ]


def test_an_argo_rollout_app_is_checked_as_its_steps(
    kube_admin: k8s.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """No controller is needed to read a Rollout: its CRD is installed with the control plane."""
    cluster = Cluster(kube_admin, namespace)
    template = stable_deployment(name="cart", replicas=2)["spec"]
    steps = [{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"setWeight": 50}, {"pause": {}}]
    cluster.create(
        ROLLOUTS,
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "cart"},
            "spec": {**template, "strategy": {"canary": {"steps": steps}}},
        },
    )
    text = apps_file(namespace, prometheus_url="http://x:1").replace(
        "    plan: steps\n    router: {provider: replicas}\n", "    workload_kind: Rollout\n"
    )
    found = apps(tmp_path, text)
    assert [f.message for f in check_app_live(kube_admin, found["cart"])] == [
        f"Rollout {namespace}/cart found, container app",
        f"Rollout {namespace}/cart (canary) walks: 25 % for 10m → 50 % + approval → 100 %",
    ]
    # the file's other apps are still Deployments
    assert [(f.ok, f.message) for f in check_app_live(kube_admin, found["checkout"])] == [
        (False, f"Deployment {namespace}/checkout does not exist")
    ]


def test_a_weight_the_pod_count_cannot_honour_lists_the_shares_near_it(
    kube_admin: k8s.ApiClient, namespace: str, tmp_path: Path
) -> None:
    set_up(kube_admin, namespace)
    config = apps(tmp_path, apps_file(namespace, prometheus_url="http://x:1", weights="1, 60"))

    assert problems(check_app_live(kube_admin, config["cart"])) == [
        f"plan 'steps' on the replicas router: with 4 pods in Deployment {namespace}/cart the "
        "canary's share is a whole number of pods (one canary pod is 25 %); stage [0] asks 1 % "
        "but runs as 25 % (achievable near it: 25 %); stage [1] asks 60 % but runs as 50 % "
        "(achievable near it: 50 % or 75 %). Change the weights, scale the Deployment, or use "
        "router istio or gateway-api"
    ]


def test_missing_objects_are_named(
    kube_admin: k8s.ApiClient, namespace: str, tmp_path: Path
) -> None:
    cluster = set_up(kube_admin, namespace)
    cluster.of(DESTINATION_RULES).delete("shop-api")
    cluster.of(SERVICES).delete("cart")
    cluster.of(HTTP_ROUTES).delete("shop-api")
    config = apps(tmp_path, apps_file(namespace, prometheus_url="http://x:1"))
    elsewhere = apps(tmp_path, apps_file("no-such-namespace", prometheus_url="http://x:1"))

    assert problems(check_app_live(kube_admin, config["cart"])) == [
        f"router replicas: services {namespace}/cart not found: name the Service in front of the "
        "app's pods in the router's service (default: the workload's name)"
    ]
    # the istio router creates a missing DestinationRule at the first release: no problem
    assert problems(check_app_live(kube_admin, config["shop-api"])) == []
    assert problems(check_app_live(kube_admin, config["checkout"])) == [
        f"router gateway-api: httproutes.gateway.networking.k8s.io {namespace}/shop-api not "
        "found: name the HTTPRoute in the router's http_route; release-bot adopts an existing "
        "HTTPRoute (it holds the parentRefs to your Gateway)"
    ]
    assert problems(check_app_live(kube_admin, elsewhere["cart"])) == [
        "namespace no-such-namespace does not exist"
    ]
    cluster.of(DEPLOYMENTS).delete("cart")
    assert problems(check_app_live(kube_admin, config["cart"])) == [
        f"Deployment {namespace}/cart does not exist"
    ]


def run_live(path: Path, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_URL", "KUBECONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "bot.entrypoints.cli", "check-config", "--live", str(path)],
        cwd=REPO,
        env=env | {"KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.usefixtures("prometheus_server")
def test_check_config_live_reports_ok_lines_and_each_failing_app(
    kube_cluster: KubeCluster,
    kube_admin: k8s.ApiClient,
    namespace: str,
    prometheus_server: PrometheusServer,
    tmp_path: Path,
) -> None:
    set_up(kube_admin, namespace)
    path = tmp_path / "apps.yaml"
    path.write_text(apps_file(namespace, prometheus_url=prometheus_server.url))

    result = run_live(path, kube_cluster.kubeconfig())

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "  OK cart: router replicas: a canary can be routed" in result.stdout.splitlines()
    for app in ("cart", "shop-api", "checkout"):
        assert f"  OK {app}: Prometheus {prometheus_server.url} answers the three queries" in (
            result.stdout.splitlines()
        )

    closed = f"http://127.0.0.1:{free_port()}"
    text = apps_file(namespace, prometheus_url=prometheus_server.url)
    text = text.replace(prometheus_server.url, closed, 1)  # cart's Prometheus is down
    path.write_text(text.replace("route_index: 1", "route_index: 2"))

    result = run_live(path, kube_cluster.kubeconfig())

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "live: 2 problems:"
    assert lines[1].startswith(f"  cart: Prometheus at {closed} cannot be reached"), lines
    assert lines[2] == (
        f"  shop-api: router istio: virtualservices.networking.istio.io {namespace}/shop-api "
        "spec.http has 2 entries; index 2 is out of range: set the router's route_index to the "
        "entry to split (0: the first)"
    )
    assert f"  OK checkout: Prometheus {prometheus_server.url} answers the three queries" in (
        result.stdout.splitlines()
    )
