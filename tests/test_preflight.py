"""Preflight checks against the real kube-apiserver, controllers (quota included) and kwok pods."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.utils import parse_quantity

from bot.core.apps import IstioRouter
from bot.core.errors import PermanentError, TemporaryError
from bot.kube.client import DESTINATION_RULES, VIRTUAL_SERVICES, NamespacedResources
from bot.kube.preflight import (
    Finding,
    PreflightReport,
    Severity,
    run_preflight,
)
from bot.kube.routers import TrafficRouter, build_router
from bot.kube.workloads import AppWorkload, CanaryWorkloads
from tests.infra.kube import RESTRICTED_TOKEN, KubeCluster, wait_for_deployment_ready
from tests.infra.processes import free_port, wait_until

APP = "shop-api"
PROBE = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5}


def container(
    name: str = "app",
    *,
    image: str = "shop/api:v2.4.0",
    probe: bool = True,
    resources: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "image": image, **extra}
    if probe:
        spec["readinessProbe"] = PROBE
    if resources is not None:
        spec["resources"] = resources
    return spec


def deployment(
    *,
    name: str = APP,
    replicas: int = 1,
    containers: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    pod_labels = {"app": name, "version": "v2.4.0"} if labels is None else labels
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": containers or [container()], "volumes": volumes or []},
            },
        },
    }


def create(api: k8s.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    k8s.AppsV1Api(api).create_namespaced_deployment(namespace, body)


def configmap(api: k8s.ApiClient, namespace: str, name: str, *, immutable: bool = False) -> None:
    body = {"metadata": {"name": name}, "data": {"mode": "live"}, "immutable": immutable}
    k8s.CoreV1Api(api).create_namespaced_config_map(namespace, body)


def preflight(api: k8s.ApiClient, namespace: str, **overrides: Any) -> PreflightReport:
    arguments: dict[str, Any] = {
        "api": api,
        "namespace": namespace,
        "deployment": APP,
        "container": "app",
        "version": "v2.4.1",
        "kind": "canary",
        "extra_replicas": 1,
    } | overrides
    return run_preflight(**arguments)


def only(report: PreflightReport, check: str) -> Finding:
    found = [finding for finding in report.findings if finding.check == check]
    assert len(found) == 1, report.findings
    return found[0]


def severities(report: PreflightReport, check: str) -> list[Severity]:
    return [finding.severity for finding in report.findings if finding.check == check]


# --- a healthy Deployment ------------------------------------------------------------------


def test_healthy_deployment_passes_every_check(kube_admin: k8s.ApiClient, namespace: str) -> None:
    configmap(kube_admin, namespace, "shop-config-5f7c9d2b8k")
    configmap(kube_admin, namespace, "shop-env", immutable=True)
    app = container(envFrom=[{"configMapRef": {"name": "shop-env"}}])
    volumes = [{"name": "config", "configMap": {"name": "shop-config-5f7c9d2b8k"}}]
    create(kube_admin, namespace, deployment(replicas=2, containers=[app], volumes=volumes))
    wait_for_deployment_ready(kube_admin, namespace=namespace, name=APP)

    report = preflight(kube_admin, namespace)

    assert not report.blocked and not report.warnings, report.findings
    assert report.new_image == "shop/api:v2.4.1"
    assert {f.check for f in report.findings} == {
        "deployment",
        "container",
        "image",
        "readiness-probe",
        "version-label",
        "configmaps",
        "quota",
    }
    assert all(f.severity is Severity.PASS for f in report.findings)
    assert "`shop/api:v2.4.0` to `shop/api:v2.4.1`" in only(report, "image").message
    assert "version=v2.4.0" in only(report, "version-label").message
    assert only(report, "quota").message == "No ResourceQuota in the namespace: no limit."


# --- readiness probes and version label ----------------------------------------------------


def test_missing_readiness_probe_blocks_naming_the_container(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    containers = [container("app"), container("log-shipper", image="fluent/bit:3", probe=False)]
    create(kube_admin, namespace, deployment(containers=containers))

    report = preflight(kube_admin, namespace)

    assert report.blocked
    assert [f.check for f in report.blocking] == ["readiness-probe"]
    message = report.blocking[0].message
    assert "`log-shipper`" in message and "`app`" not in message
    assert "readinessProbe" in message


def test_missing_version_label_blocks(kube_admin: k8s.ApiClient, namespace: str) -> None:
    create(kube_admin, namespace, deployment(labels={"app": APP}))

    report = preflight(kube_admin, namespace)

    assert [f.check for f in report.blocking] == ["version-label"]
    assert "no version label" in report.blocking[0].message
    assert "`version`" in report.blocking[0].message


def test_kubernetes_recommended_version_label_passes(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    labels = {"app": APP, "app.kubernetes.io/version": "2.4.0"}
    create(kube_admin, namespace, deployment(labels=labels))

    report = preflight(kube_admin, namespace)

    assert severities(report, "version-label") == [Severity.PASS]
    assert not report.blocked


# --- ConfigMaps ----------------------------------------------------------------------------


def test_unversioned_configmaps_warn_while_immutable_and_suffixed_ones_pass(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    for name in ("shop-settings", "shop-flags", "shop-certs-v3", "shop-config-8f3a9c1"):
        configmap(kube_admin, namespace, name)
    configmap(kube_admin, namespace, "shop-env", immutable=True)
    app = container(
        envFrom=[{"configMapRef": {"name": "shop-env"}}],
        env=[
            {
                "name": "MODE",
                "valueFrom": {"configMapKeyRef": {"name": "shop-config-8f3a9c1", "key": "mode"}},
            }
        ],
    )
    volumes = [
        {"name": "settings", "configMap": {"name": "shop-settings"}},
        {
            "name": "bundle",
            "projected": {
                "sources": [
                    {"configMap": {"name": "shop-flags"}},
                    {"configMap": {"name": "shop-certs-v3"}},
                ]
            },
        },
    ]
    create(kube_admin, namespace, deployment(containers=[app], volumes=volumes))

    report = preflight(kube_admin, namespace)

    assert not report.blocked, report.blocking
    warned = {f.message.split("`")[1]: f.message for f in report.warnings}
    assert set(warned) == {"shop-settings", "shop-flags"}
    assert "volume `settings`" in warned["shop-settings"]
    assert "projected volume `bundle`" in warned["shop-flags"]
    assert "immutable: true" in warned["shop-settings"]
    passed = {
        f.message
        for f in report.findings
        if f.check == "configmaps" and f.severity is Severity.PASS
    }
    assert passed == {
        "ConfigMap `shop-env` is immutable.",
        "ConfigMap `shop-config-8f3a9c1` is versioned (hash suffix).",
        "ConfigMap `shop-certs-v3` is versioned (version suffix).",
    }


def test_missing_configmap_blocks_unless_optional(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    app = container(
        envFrom=[
            {"configMapRef": {"name": "shop-overrides", "optional": True}},
            {"configMapRef": {"name": "shop-required"}},
        ]
    )
    create(kube_admin, namespace, deployment(containers=[app]))

    report = preflight(kube_admin, namespace)

    assert [f.check for f in report.blocking] == ["configmaps"]
    assert report.blocking[0].message == (
        "ConfigMap `shop-required` (envFrom of container `app`) does not exist: "
        "new pods would not start."
    )
    assert (
        Finding(
            "configmaps",
            Severity.PASS,
            "Optional ConfigMap `shop-overrides` (envFrom of container `app`) is absent.",
        )
        in report.findings
    )


# --- quota ---------------------------------------------------------------------------------


def create_quota(
    api: k8s.ApiClient, namespace: str, hard: dict[str, str], *, scopes: list[str] | None = None
) -> None:
    spec: dict[str, Any] = {"hard": hard}
    if scopes:
        spec["scopes"] = scopes
    body = {"metadata": {"name": "team-quota"}, "spec": spec}
    k8s.CoreV1Api(api).create_namespaced_resource_quota(namespace, body)


def wait_for_quota_used(api: k8s.ApiClient, namespace: str, expected: dict[str, str]) -> None:
    """Let the real resource-quota controller count the namespace's pods."""
    core = k8s.CoreV1Api(api)

    def counted() -> bool:
        used = core.read_namespaced_resource_quota("team-quota", namespace).status.used or {}
        return all(
            r in used and parse_quantity(used[r]) == parse_quantity(v) for r, v in expected.items()
        )

    wait_until(counted, timeout_s=60, what=f"quota usage {expected}", interval_s=0.2)


REQUESTS = {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}


@pytest.fixture
def three_pods_under_quota(kube_admin: k8s.ApiClient, namespace: str) -> str:
    """3 running pods of 200m / 256Mi under a quota with room for 2 more pods and 400m CPU."""
    create(
        kube_admin, namespace, deployment(replicas=3, containers=[container(resources=REQUESTS)])
    )
    wait_for_deployment_ready(kube_admin, namespace=namespace, name=APP)
    create_quota(
        kube_admin,
        namespace,
        {"pods": "5", "requests.cpu": "1", "requests.memory": "2Gi", "limits.memory": "4Gi"},
    )
    wait_for_quota_used(
        kube_admin,
        namespace,
        {
            "pods": "3",
            "requests.cpu": "600m",
            "requests.memory": "768Mi",
            "limits.memory": "1536Mi",
        },
    )
    return namespace


def test_quota_with_just_enough_room_passes_with_figures(
    kube_admin: k8s.ApiClient, three_pods_under_quota: str
) -> None:
    report = preflight(kube_admin, three_pods_under_quota, extra_replicas=2)

    assert not report.blocked, report.blocking
    assert only(report, "quota").message == (
        "ResourceQuota `team-quota` has room for 2 new pods: limits.memory 1Gi of 2.5Gi free, "
        "pods 2 of 2 free, requests.cpu 400m of 400m free, requests.memory 512Mi of 1.25Gi free."
    )


def test_quota_with_too_little_room_blocks_naming_resource_and_figures(
    kube_admin: k8s.ApiClient, three_pods_under_quota: str
) -> None:
    report = preflight(kube_admin, three_pods_under_quota, extra_replicas=3)

    assert [f.message for f in report.blocking] == [
        "ResourceQuota `team-quota` is short of `pods`: 3 new pods need 3, room is 2 "
        "(used 3 of 5). Raise the quota or free room before releasing.",
        "ResourceQuota `team-quota` is short of `requests.cpu`: 3 new pods need 600m "
        "(200m each), room is 400m (used 600m of 1). "
        "Raise the quota or free room before releasing.",
    ]


def test_bluegreen_needs_a_full_second_copy(
    kube_admin: k8s.ApiClient, three_pods_under_quota: str
) -> None:
    canary = preflight(kube_admin, three_pods_under_quota, kind="canary", extra_replicas=1)
    bluegreen = preflight(kube_admin, three_pods_under_quota, kind="bluegreen", extra_replicas=None)

    assert not canary.blocked, canary.blocking
    assert [f.message for f in bluegreen.blocking] == [
        "ResourceQuota `team-quota` is short of `pods`: 3 new pods (blue-green: a full second "
        "copy) need 3, room is 2 (used 3 of 5). Raise the quota or free room before releasing.",
        "ResourceQuota `team-quota` is short of `requests.cpu`: 3 new pods (blue-green: a full "
        "second copy) need 600m (200m each), room is 400m (used 600m of 1). "
        "Raise the quota or free room before releasing.",
    ]


def test_limit_range_defaults_count_towards_the_quota(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    limit_range = {
        "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "250m"}}]},
    }
    k8s.CoreV1Api(kube_admin).create_namespaced_limit_range(namespace, limit_range)
    create(kube_admin, namespace, deployment(replicas=2))
    wait_for_deployment_ready(kube_admin, namespace=namespace, name=APP)
    create_quota(kube_admin, namespace, {"requests.cpu": "1"})
    wait_for_quota_used(kube_admin, namespace, {"requests.cpu": "500m"})

    fits = preflight(kube_admin, namespace, extra_replicas=2)
    short = preflight(kube_admin, namespace, extra_replicas=3)

    assert not fits.blocked
    assert [f.message for f in short.blocking] == [
        "ResourceQuota `team-quota` is short of `requests.cpu`: 3 new pods need 750m "
        "(250m each), room is 500m (used 500m of 1). Raise the quota or free room before releasing."
    ]


def test_per_pod_usage_matches_the_quota_controller_with_sidecars_and_init_containers(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    """app 100m (limits only: requests default to them) + sidecar 50m run together; the migrate
    init container runs beside the sidecar: max(150m, 500m + 50m) = 550m per pod."""
    body = deployment(replicas=2, containers=[container(resources={"limits": {"cpu": "100m"}})])
    body["spec"]["template"]["spec"]["initContainers"] = [
        container("proxy", restartPolicy="Always", resources={"requests": {"cpu": "50m"}}),
        container("migrate", probe=False, resources={"requests": {"cpu": "500m"}}),
    ]
    create(kube_admin, namespace, body)
    wait_for_deployment_ready(kube_admin, namespace=namespace, name=APP)
    create_quota(kube_admin, namespace, {"requests.cpu": "2"})
    wait_for_quota_used(kube_admin, namespace, {"requests.cpu": "1100m"})

    report = preflight(kube_admin, namespace, extra_replicas=2)

    assert [f.message for f in report.blocking] == [
        "ResourceQuota `team-quota` is short of `requests.cpu`: 2 new pods need 1100m "
        "(550m each), room is 900m (used 1100m of 2). "
        "Raise the quota or free room before releasing."
    ]


def test_quota_on_cpu_rejects_pods_that_set_no_cpu_request(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    create(kube_admin, namespace, deployment())
    create_quota(kube_admin, namespace, {"requests.cpu": "4"})

    report = preflight(kube_admin, namespace)

    assert [f.message for f in report.blocking] == [
        "ResourceQuota `team-quota` would reject the new pods: they must specify "
        "`requests.cpu` for `app` (set resources on the containers, or a LimitRange default)."
    ]


def test_quota_scoped_to_best_effort_pods_does_not_cover_pods_with_requests(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    create(kube_admin, namespace, deployment(containers=[container(resources=REQUESTS)]))
    create_quota(kube_admin, namespace, {"pods": "0"}, scopes=["BestEffort"])

    report = preflight(kube_admin, namespace)

    assert not report.blocked, report.blocking
    assert only(report, "quota").message == "ResourceQuota `team-quota` does not cover these pods."


# --- Deployment, container and image ---------------------------------------------------------


def test_unknown_deployment_blocks_with_a_clear_message(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    report = preflight(kube_admin, namespace, deployment="no-such-app")

    assert report.blocked and report.new_image is None
    assert report.findings == (
        Finding(
            "deployment",
            Severity.BLOCK,
            f"Deployment `no-such-app` not found in namespace `{namespace}`: "
            "check the app's workload name and namespace in the bot's configuration.",
        ),
    )


def test_unknown_container_blocks_naming_the_ones_there(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    containers = [container("app"), container("proxy", image="envoy/envoy:v1.31")]
    create(kube_admin, namespace, deployment(containers=containers))

    unknown = preflight(kube_admin, namespace, container="web")
    unnamed = preflight(kube_admin, namespace, container=None)

    assert [f.message for f in unknown.blocking] == [
        f"Deployment `{APP}` has no container `web` (it has `app`, `proxy`)."
    ]
    assert [f.message for f in unnamed.blocking] == [
        f"Deployment `{APP}` has several containers (`app`, `proxy`): "
        "name the one to release in the app's configuration."
    ]


def test_sole_container_needs_no_name_and_tags_keep_the_registry(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    image = "registry.example.com:5000/shop/api:v2.4.0"
    create(kube_admin, namespace, deployment(containers=[container(image=image)]))

    report = preflight(kube_admin, namespace, container=None, version="v2.5.0")

    assert not report.blocked
    assert report.new_image == "registry.example.com:5000/shop/api:v2.5.0"


@pytest.mark.parametrize(
    ("version", "severity", "fragment"),
    [
        ("v2 4", Severity.BLOCK, "the tag `v2 4` may contain only letters, digits"),
        ("Shop/API:v2", Severity.BLOCK, "the repository `Shop/API` must be lower-case"),
        ("shop/api:latest", Severity.WARN, "moving tag"),
        ("v2.4.0", Severity.WARN, "is what `app` runs already"),
    ],
)
def test_image_problems(
    kube_admin: k8s.ApiClient, namespace: str, version: str, severity: Severity, fragment: str
) -> None:
    create(kube_admin, namespace, deployment())

    report = preflight(kube_admin, namespace, version=version)

    image = only(report, "image")
    assert image.severity is severity and fragment in image.message, image
    assert report.blocked is (severity is Severity.BLOCK)


# --- API errors and arguments ----------------------------------------------------------------


def test_missing_permissions_block_naming_them(
    kube_cluster: KubeCluster, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    """The restricted user may read Deployments in `default`, and nothing else."""
    restricted = kube_cluster.api_client(RESTRICTED_TOKEN)
    name = "pf-" + uuid.uuid4().hex[:8]
    volumes = [{"name": "settings", "configMap": {"name": "shop-settings"}}]
    body = deployment(name=name, volumes=volumes)
    create(kube_admin, "default", body)
    router = istio_router(restricted, "default", name)
    try:
        in_default = preflight(
            restricted, "default", deployment=name, routing=lambda: router.check("v2.4.1")
        )
    finally:
        k8s.AppsV1Api(kube_admin).delete_namespaced_deployment(name, "default")
    elsewhere = preflight(restricted, namespace)

    assert {f.check: f.message for f in in_default.blocking} == {
        "configmaps": "the bot may not get configmaps in namespace `default` (403 Forbidden): "
        "grant its service account `get` on `configmaps` in that namespace.",
        "quota": "the bot may not list resourcequotas in namespace `default` (403 Forbidden): "
        "grant its service account `list` on `resourcequotas` in that namespace.",
        "routing": "the bot may not get virtualservices.networking.istio.io in namespace "
        "`default` (403 Forbidden): grant its service account `get` on "
        "`virtualservices.networking.istio.io` in that namespace.",
    }
    assert [f.message for f in elsewhere.findings] == [
        f"the bot may not get deployments.apps in namespace `{namespace}` (403 Forbidden): "
        "grant its service account `get` on `deployments.apps` in that namespace."
    ]


def istio_router(api: k8s.ApiClient, namespace: str, deployment: str) -> TrafficRouter:
    config = IstioRouter(
        provider="istio", virtual_service=APP, destination_rule=APP, host=APP, route_index=0
    )
    workloads = CanaryWorkloads(api, AppWorkload(namespace, deployment, "app"))
    return build_router(config, api=api, workloads=workloads)


def test_what_the_router_would_refuse_blocks_one_finding_per_problem(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    create(kube_admin, namespace, deployment())
    router = istio_router(kube_admin, namespace, APP)
    refused = preflight(
        kube_admin, namespace, version="v2.4.0", routing=lambda: router.check("v2.4.0")
    )
    assert [(f.severity, f.message) for f in refused.findings if f.check == "routing"] == [
        (
            Severity.BLOCK,
            f"virtualservices.networking.istio.io {namespace}/{APP} not found: name the "
            "VirtualService that routes the app's host in the router's virtual_service "
            "(release-bot adopts it; it does not create one).",
        ),
        (
            Severity.BLOCK,
            "the new version's label `version: v2.4.0` is the stable pods' too, so stable and "
            "canary could not be routed apart: release a version with another tag.",
        ),
    ]
    assert NamespacedResources(kube_admin, DESTINATION_RULES, namespace).get(APP) is None

    NamespacedResources(kube_admin, VIRTUAL_SERVICES, namespace).reconcile(
        APP, lambda current: virtual_service()
    )
    allowed = preflight(kube_admin, namespace, routing=lambda: router.check("v2.4.1"))
    assert only(allowed, "routing") == Finding(
        "routing", Severity.PASS, "The routing objects can split the traffic."
    )
    assert preflight(kube_admin, namespace, routing=None).findings == tuple(
        finding for finding in allowed.findings if finding.check != "routing"
    )


def test_a_router_that_refuses_the_stable_deployment_blocks_saying_why(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    create(
        kube_admin, namespace, deployment(labels={"app": APP, "version": "v1", "track": "canary"})
    )
    router = istio_router(kube_admin, namespace, APP)
    assert only(
        preflight(kube_admin, namespace, routing=lambda: router.check("v2")), "routing"
    ) == (
        Finding(
            "routing",
            Severity.BLOCK,
            f"stable Deployment {namespace}/{APP} pods are labelled track: canary.",
        )
    )


def virtual_service() -> dict[str, Any]:
    route = {"route": [{"destination": {"host": APP}}]}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": APP},
        "spec": {"hosts": [APP], "http": [route]},
    }


def test_unreachable_apiserver_is_a_temporary_error() -> None:
    config = k8s.Configuration()
    config.host = f"https://127.0.0.1:{free_port()}"
    config.retries = False
    with pytest.raises(
        TemporaryError, match=r"Kubernetes API unreachable to get deployments\.apps"
    ):
        preflight(k8s.ApiClient(config), "shop")


def test_rejected_credentials_are_a_permanent_error(kube_cluster: KubeCluster) -> None:
    with pytest.raises(PermanentError, match=r"rejected the bot's credentials \(401\)"):
        preflight(kube_cluster.api_client("not-a-token"), "default")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "rolling"}, "release kind must be one of"),
        ({"extra_replicas": None}, "a canary preflight needs extra_replicas"),
        ({"extra_replicas": 0}, "extra_replicas must be at least 1"),
    ],
)
def test_bad_arguments_are_refused_before_any_api_call(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        preflight(k8s.ApiClient(k8s.Configuration()), "shop", **overrides)


# --- GitOps --------------------------------------------------------------------------------


def managed_deployment(
    *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    body = deployment(containers=[container("sidecar", image="envoy:v1"), container()])
    body["metadata"] |= {"labels": labels or {}, "annotations": annotations or {}}
    return body


def test_a_deployment_argo_cd_tracks_warns_naming_the_fields_to_ignore(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    tracking = {"argocd.argoproj.io/tracking-id": f"shop:apps/Deployment:{namespace}/{APP}"}
    create(kube_admin, namespace, managed_deployment(annotations=tracking))

    report = preflight(kube_admin, namespace)

    gitops = only(report, "gitops")
    assert gitops.severity is Severity.WARN
    assert not report.blocked, report.findings
    assert "managed by Argo CD (Application `shop`)" in gitops.message
    # The released container is the second one: its image pointer says so.
    assert "`/spec/template/spec/containers/1/image` and `/spec/replicas`" in gitops.message
    assert "ignoreDifferences" in gitops.message and "self-heal" in gitops.message


def test_argo_cd_instance_label_is_recognised_too(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    labels = {"argocd.argoproj.io/instance": "shop-prod"}
    create(kube_admin, namespace, managed_deployment(labels=labels))

    assert "(Application `shop-prod`)" in only(preflight(kube_admin, namespace), "gitops").message


@pytest.mark.parametrize(
    "label, kind",
    [
        ("kustomize.toolkit.fluxcd.io/name", "Kustomization"),
        ("helm.toolkit.fluxcd.io/name", "HelmRelease"),
    ],
)
def test_a_deployment_flux_applies_warns_until_its_reconcile_is_disabled(
    kube_admin: k8s.ApiClient, namespace: str, label: str, kind: str
) -> None:
    create(kube_admin, namespace, managed_deployment(labels={label: "shop"}))

    gitops = only(preflight(kube_admin, namespace), "gitops")

    assert gitops.severity is Severity.WARN
    assert f"managed by Flux ({kind} `shop`)" in gitops.message
    assert "`kustomize.toolkit.fluxcd.io/reconcile: disabled`" in gitops.message
    patch = {"metadata": {"annotations": {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}}}
    k8s.AppsV1Api(kube_admin).patch_namespaced_deployment(APP, namespace, patch)
    assert severities(preflight(kube_admin, namespace), "gitops") == []


def test_a_deployment_no_gitops_tool_tracks_gets_no_gitops_finding(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    create(kube_admin, namespace, managed_deployment(labels={"app.kubernetes.io/name": APP}))

    assert severities(preflight(kube_admin, namespace), "gitops") == []
