"""Run by pytest (scripts/test.sh): installing the bot in Kubernetes, the two supported ways.

The Helm chart deploy/helm/release-bot and the kustomize base deploy/kustomize (with the overlay
deploy/overlays/namespace-scoped).

Both are rendered with the helm and kubectl that scripts/build-tools.sh builds (fixture
`kube_tools`), applied with `kubectl apply --server-side --dry-run=server` to the real test
API server (fixture `kube_cluster`), and compared object by object.

Normalization for the comparison (`normalized`): objects are keyed by (apiVersion, kind,
namespace, name) and compared as parsed YAML, so field order, quoting, flow vs block style and
comments do not count; the only change made to an object is dropping the two labels only helm
sets, helm.sh/chart and app.kubernetes.io/managed-by, from metadata.labels. Nothing else is
ignored: ConfigMap names are compared in full, because the chart computes the content hash of
the apps ConfigMap exactly like kustomize's configMapGenerator (see `configMapName` in
templates/_helpers.tpl).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.infra.kube import KubeCluster, create_namespace
from tests.infra.processes import wait_until
from tests.infra.tools import KubeTools

# scripts/setup.sh builds helm and kubectl; without it, the first test to ask for `kube_tools`
# builds them from source (minutes, cold), inside its own timeout.
pytestmark = pytest.mark.timeout(1200)

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART = REPO_ROOT / "deploy/helm/release-bot"
KUSTOMIZE_BASE = REPO_ROOT / "deploy/kustomize"
NAMESPACE_SCOPED_OVERLAY = REPO_ROOT / "deploy/overlays/namespace-scoped"
RELEASE = "release-bot"
NAMESPACE = "release-bot"
TARGET_NAMESPACES = ["shop", "payments"]
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")

NAMESPACE_SCOPED = ("--set-json", f"rbac.namespaces={json.dumps(TARGET_NAMESPACES)}")
INGRESS_AND_MONITOR = (
    "--set",
    "ingress.enabled=true,ingress.className=nginx,serviceMonitor.enabled=true",
)

Key = tuple[str, str, str | None, str]


# ---------------------------------------------------------------- rendering and comparing


def helm_template(tools: KubeTools, *args: str) -> list[dict[str, Any]]:
    rendered = tools.helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    return parse(rendered.stdout)


def kustomize(tools: KubeTools, directory: Path) -> list[dict[str, Any]]:
    return parse(tools.kubectl("kustomize", str(directory)).stdout)


def parse(text: str) -> list[dict[str, Any]]:
    objects = [document for document in yaml.safe_load_all(text) if document]
    assert objects, "nothing rendered"
    return objects


def key(obj: dict[str, Any]) -> Key:
    metadata = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], metadata.get("namespace"), metadata["name"])


def normalized(objects: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """The objects by key, without the helm-only labels (see the module docstring)."""
    by_key: dict[Key, dict[str, Any]] = {}
    for obj in objects:
        assert key(obj) not in by_key, f"rendered twice: {key(obj)}"
        clean = copy.deepcopy(obj)
        labels = clean["metadata"].get("labels", {})
        for label in HELM_ONLY_LABELS:
            labels.pop(label, None)
        by_key[key(obj)] = clean
    return by_key


def field_differences(helm: Any, kustomized: Any, path: str) -> list[str]:
    if isinstance(helm, dict) and isinstance(kustomized, dict):
        found = []
        for name in sorted(set(helm) | set(kustomized)):
            where = f"{path}.{name}"
            if name not in kustomized:
                found.append(f"{where}: only in helm")
            elif name not in helm:
                found.append(f"{where}: only in kustomize")
            else:
                found += field_differences(helm[name], kustomized[name], where)
        return found
    if isinstance(helm, list) and isinstance(kustomized, list) and len(helm) == len(kustomized):
        found = []
        for index, (left, right) in enumerate(zip(helm, kustomized, strict=True)):
            found += field_differences(left, right, f"{path}[{index}]")
        return found
    return [] if helm == kustomized else [f"{path}: helm {helm!r} != kustomize {kustomized!r}"]


def differences(helm: list[dict[str, Any]], kustomized: list[dict[str, Any]]) -> list[str]:
    """Every difference after normalization, one line each; [] when the renderings are equal."""
    left, right = normalized(helm), normalized(kustomized)
    found = [f"{k}: only in helm" for k in sorted(left.keys() - right.keys(), key=str)]
    found += [f"{k}: only in kustomize" for k in sorted(right.keys() - left.keys(), key=str)]
    for common in sorted(left.keys() & right.keys(), key=str):
        found += [
            f"{common}: {line}" for line in field_differences(left[common], right[common], "")
        ]
    return found


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[key(obj) for obj in found]}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        entry["name"]: entry.get("value", entry.get("valueFrom"))
        for entry in container(objects)["env"]
    }


# ---------------------------------------------------------------- the API server side


def servicemonitor_crd() -> dict[str, Any]:
    """The Prometheus Operator's ServiceMonitor kind, minimal: the test API server has no
    operator, and a dry-run apply needs the kind to exist; the schema accepts any spec."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "plural": "servicemonitors",
                "singular": "servicemonitor",
                "kind": "ServiceMonitor",
                "listKind": "ServiceMonitorList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def install_cluster(kube_cluster: KubeCluster) -> Iterator[KubeCluster]:
    """The test API server with the namespaces the renderings target and the ServiceMonitor
    CRD; other tests never use these names."""
    api = kube_cluster.api_client()
    for name in [NAMESPACE, *TARGET_NAMESPACES]:
        create_namespace(api, name)
    extensions = k8s.ApiextensionsV1Api(api)
    crd = servicemonitor_crd()
    try:
        extensions.create_custom_resource_definition(crd)
    except ApiException as error:
        if error.status != 409:
            raise

    def established() -> bool:
        status = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status
        return any(c.type == "Established" and c.status == "True" for c in status.conditions or [])

    wait_until(established, timeout_s=30, what="ServiceMonitor CRD established")
    yield kube_cluster
    api.close()


def dry_run_apply(
    tools: KubeTools, cluster: KubeCluster, objects: list[dict[str, Any]], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return tools.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=release-bot-install-test",
        "-o",
        "name",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(objects),
        kubeconfig=cluster.kubeconfig(),
        check=check,
    )


def applied_name(obj: dict[str, Any]) -> str:
    """How `kubectl apply -o name` names an object: kind.group/name."""
    group = obj["apiVersion"].rpartition("/")[0]
    kind = obj["kind"].lower()
    name = obj["metadata"]["name"]
    return f"{kind}.{group}/{name}" if group else f"{kind}/{name}"


# ---------------------------------------------------------------- the chart alone


def test_chart_version_is_the_bots_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


@pytest.mark.parametrize(
    "values",
    [(), NAMESPACE_SCOPED, INGRESS_AND_MONITOR],
    ids=["defaults", "namespace-scoped", "ingress-and-servicemonitor"],
)
def test_helm_lint_passes(kube_tools: KubeTools, values: tuple[str, ...]) -> None:
    linted = kube_tools.helm("lint", "--strict", str(CHART), *values)
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout


def test_helm_lint_fails_on_a_broken_chart(kube_tools: KubeTools, tmp_path: Path) -> None:
    broken = tmp_path / "release-bot"
    shutil.copytree(CHART, broken)
    service = broken / "templates/service.yaml"
    service.write_text(service.read_text().replace("{{ .Values.service.port }}", "{{ .Values"))
    linted = kube_tools.helm("lint", "--strict", str(broken), check=False)
    assert linted.returncode != 0
    assert "1 chart(s) failed" in linted.stdout + linted.stderr


def test_default_rendering_runs_the_bot_locked_down(kube_tools: KubeTools) -> None:
    objects = helm_template(kube_tools)
    assert sorted(obj["kind"] for obj in objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    bot = container(objects)
    assert deployment["spec"]["replicas"] == 2
    assert bot["image"] == "release-bot:0.1.0"
    assert bot["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert bot["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert bot["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert bot["securityContext"]["readOnlyRootFilesystem"] is True
    assert bot["securityContext"]["allowPrivilegeEscalation"] is False
    assert bot["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in bot["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}
    config_map_name = one(objects, "ConfigMap")["metadata"]["name"]
    assert volumes[mounts["/etc/release-bot"]]["configMap"]["name"] == config_map_name
    assert config_map_name.startswith("release-bot-apps-")
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]

    env = env_of(objects)
    assert env["RELEASE_BOT_CONFIG"] == "/etc/release-bot/apps.yaml"
    assert env["PORT"] == "3000"
    assert env["SLACK_BOT_TOKEN"] == {
        "secretKeyRef": {"name": "release-bot-slack", "key": "SLACK_BOT_TOKEN"}
    }
    assert env["SLACK_SIGNING_SECRET"] == {
        "secretKeyRef": {"name": "release-bot-slack", "key": "SLACK_SIGNING_SECRET"}
    }
    assert "SLACK_APP_TOKEN" not in env
    assert env["REDIS_URL"] == "redis://redis.release-bot.svc:6379/0"
    assert env["PROMETHEUS_URL"] == "http://prometheus.monitoring.svc:9090"
    assert not {"REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"} & env.keys()

    service = one(objects, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_rendered_apps_file_is_a_valid_bot_config(kube_tools: KubeTools, tmp_path: Path) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text(one(helm_template(kube_tools), "ConfigMap")["data"]["apps.yaml"])
    checked = subprocess.run(
        [sys.executable, "-m", "bot.entrypoints.cli", "check-config", str(apps)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_sentinel_and_socket_mode_render_their_env(kube_tools: KubeTools) -> None:
    sentinel = (
        '{"enabled": true, "masterName": "bots", "hosts": '
        '[{"host": "s0.redis", "port": 26379}, "s1.redis:26380", {"host": "s2.redis"}]}'
    )
    objects = helm_template(
        kube_tools,
        "--set-json",
        f"redis.sentinel={sentinel}",
        "--set-json",
        'slack.signingSecretKey=""',
        "--set",
        "slack.appTokenKey=app-token,slack.existingSecret=bot-slack",
    )
    env = env_of(objects)
    assert env["REDIS_SENTINELS"] == "s0.redis:26379,s1.redis:26380,s2.redis:26379"
    assert env["REDIS_SENTINEL_MASTER"] == "bots"
    assert "REDIS_URL" not in env
    assert env["SLACK_APP_TOKEN"] == {"secretKeyRef": {"name": "bot-slack", "key": "app-token"}}
    assert env["SLACK_BOT_TOKEN"] == {
        "secretKeyRef": {"name": "bot-slack", "key": "SLACK_BOT_TOKEN"}
    }
    assert "SLACK_SIGNING_SECRET" not in env


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (
            ("--set", "redis.sentinel.enabled=true"),
            "redis.sentinel.hosts must list at least one sentinel",
        ),
        (("--set-json", 'config.apps={"apps": {}}'), "config.apps must be the apps file as text"),
        (("--set", "slack.existingSecret="), "slack.existingSecret is required"),
    ],
    ids=["sentinel-without-hosts", "apps-not-text", "no-slack-secret"],
)
def test_invalid_values_are_refused(
    kube_tools: KubeTools, values: tuple[str, ...], error: str
) -> None:
    rendered = kube_tools.helm("template", RELEASE, str(CHART), *values, check=False)
    assert rendered.returncode != 0
    assert error in rendered.stderr


def test_ingress_and_servicemonitor_when_enabled(kube_tools: KubeTools) -> None:
    objects = helm_template(kube_tools, *INGRESS_AND_MONITOR)
    ingress = one(objects, "Ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [
        {"hosts": ["release-bot.example.com"], "secretName": "release-bot-tls"}
    ]
    path = ingress["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/slack/events"
    assert path["backend"]["service"] == {"name": "release-bot", "port": {"name": "http"}}
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"] == one(objects, "Deployment")["spec"]["selector"]
    assert not by_kind(helm_template(kube_tools), "Ingress")
    assert not by_kind(helm_template(kube_tools), "ServiceMonitor")


def test_namespace_scoped_rbac_is_a_role_and_binding_per_namespace(
    kube_tools: KubeTools,
) -> None:
    cluster_wide = helm_template(kube_tools)
    objects = helm_template(kube_tools, *NAMESPACE_SCOPED)
    assert not by_kind(objects, "ClusterRole")
    assert not by_kind(objects, "ClusterRoleBinding")
    roles = {obj["metadata"]["namespace"]: obj for obj in by_kind(objects, "Role")}
    bindings = {obj["metadata"]["namespace"]: obj for obj in by_kind(objects, "RoleBinding")}
    assert sorted(roles) == sorted(bindings) == sorted(TARGET_NAMESPACES)
    rules = one(cluster_wide, "ClusterRole")["rules"]
    for namespace in TARGET_NAMESPACES:
        assert roles[namespace]["rules"] == rules
        assert bindings[namespace]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[namespace]["metadata"]["name"],
        }
        assert bindings[namespace]["subjects"] == [
            {"kind": "ServiceAccount", "name": "release-bot", "namespace": NAMESPACE}
        ]


def test_rbac_rules_are_the_ones_of_deploy_rbac_yaml(kube_tools: KubeTools) -> None:
    """deploy/rbac.yaml (the plain manifests README points at) grants what the chart grants."""
    legacy = list(yaml.safe_load_all((REPO_ROOT / "deploy/rbac.yaml").read_text()))
    chart_rules = one(helm_template(kube_tools), "ClusterRole")["rules"]
    assert one(legacy, "ClusterRole")["rules"] == chart_rules
    resources = {
        (group, resource)
        for rule in chart_rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert resources == {
        ("apps", "deployments"),
        ("", "services"),
        ("", "pods"),
        ("", "configmaps"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("batch", "jobs"),
        ("", "pods/log"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.istio.io", "virtualservices"),
        ("networking.istio.io", "destinationrules"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("argoproj.io", "rollouts"),
        ("argoproj.io", "rollouts/status"),
        ("argoproj.io", "analysisruns"),
        ("apps", "replicasets"),
    }


# ---------------------------------------------------------------- helm == kustomize


def test_helm_and_kustomize_render_the_same_objects(kube_tools: KubeTools) -> None:
    helm, kustomized = helm_template(kube_tools), kustomize(kube_tools, KUSTOMIZE_BASE)
    assert differences(helm, kustomized) == []
    assert len(helm) == len(kustomized) == 7


def test_namespace_scoped_overlay_renders_the_charts_namespace_scoped_objects(
    kube_tools: KubeTools,
) -> None:
    helm = helm_template(kube_tools, *NAMESPACE_SCOPED)
    kustomized = kustomize(kube_tools, NAMESPACE_SCOPED_OVERLAY)
    assert differences(helm, kustomized) == []
    assert len(by_kind(kustomized, "Role")) == len(TARGET_NAMESPACES)


def test_any_apps_file_gets_the_same_configmap_name_both_ways(
    kube_tools: KubeTools, tmp_path: Path
) -> None:
    """The chart's hash is kustomize's, also for text JSON escapes (<, &, quotes, non-ASCII)."""
    apps = '# <!here> & "quoted" \u00e9t\u00e9 \u2713\napps:\n  checkout: {namespace: payments}\n\n'
    apps_file = tmp_path / "apps.yaml"
    apps_file.write_text(apps, encoding="utf-8")
    base = tmp_path / "kustomize"
    shutil.copytree(KUSTOMIZE_BASE, base)
    (base / "release-bot-apps.yaml").write_text(apps, encoding="utf-8")

    helm = helm_template(kube_tools, "--set-file", f"config.apps={apps_file}")
    kustomized = kustomize(kube_tools, base)
    assert one(helm, "ConfigMap")["data"] == {"apps.yaml": apps}
    assert differences(helm, kustomized) == []
    default_name = one(helm_template(kube_tools), "ConfigMap")["metadata"]["name"]
    assert one(helm, "ConfigMap")["metadata"]["name"] != default_name


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            ("--set", "replicas=3"),
            "('apps/v1', 'Deployment', 'release-bot', 'release-bot'): .spec.replicas: "
            "helm 3 != kustomize 2",
        ),
        (
            ("--set", "image.tag=0.2.0"),
            "('apps/v1', 'Deployment', 'release-bot', 'release-bot'): "
            ".spec.template.spec.containers[0].image: "
            "helm 'release-bot:0.2.0' != kustomize 'release-bot:0.1.0'",
        ),
        (
            ("--set", "securityContext.readOnlyRootFilesystem=false"),
            "('apps/v1', 'Deployment', 'release-bot', 'release-bot'): "
            ".spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem: "
            "helm False != kustomize True",
        ),
        (
            ("--set-json", 'config.apps="apps: {}\\n"'),
            "('v1', 'ConfigMap', 'release-bot', '{default_config_map}'): only in kustomize",
        ),
        (
            NAMESPACE_SCOPED,
            "('rbac.authorization.k8s.io/v1', 'ClusterRole', None, 'release-bot'): "
            "only in kustomize",
        ),
    ],
    ids=["replicas", "image", "read-only-root", "apps-file", "rbac-mode"],
)
def test_comparison_catches_a_changed_value(
    kube_tools: KubeTools, values: tuple[str, ...], expected: str
) -> None:
    kustomized = kustomize(kube_tools, KUSTOMIZE_BASE)
    found = differences(helm_template(kube_tools, *values), kustomized)
    default_config_map = one(kustomized, "ConfigMap")["metadata"]["name"]
    assert expected.format(default_config_map=default_config_map) in found, found


def test_normalization_ignores_only_helms_own_labels(kube_tools: KubeTools) -> None:
    helm = helm_template(kube_tools)
    labels = one(helm, "Deployment")["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["helm.sh/chart"] == "release-bot-0.1.0"
    relabelled = copy.deepcopy(helm)
    one(relabelled, "Service")["metadata"]["labels"]["app.kubernetes.io/part-of"] = "other"
    assert differences(relabelled, kustomize(kube_tools, KUSTOMIZE_BASE)) == [
        "('v1', 'Service', 'release-bot', 'release-bot'): "
        ".metadata.labels.app.kubernetes.io/part-of: helm 'other' != kustomize 'release-bot'"
    ]


# ---------------------------------------------------------------- accepted by a real API server


RENDERINGS = {
    "helm-defaults": helm_template,
    "helm-namespace-scoped": lambda tools: helm_template(tools, *NAMESPACE_SCOPED),
    "helm-ingress-and-servicemonitor": lambda tools: helm_template(tools, *INGRESS_AND_MONITOR),
    "helm-example-http-ingress": lambda tools: helm_template(
        tools, "-f", str(REPO_ROOT / "deploy/examples/values-http-ingress.yaml")
    ),
    "helm-example-socket-mode": lambda tools: helm_template(
        tools, "-f", str(REPO_ROOT / "deploy/examples/values-socket-mode.yaml")
    ),
    "kustomize-base": lambda tools: kustomize(tools, KUSTOMIZE_BASE),
    "kustomize-namespace-scoped": lambda tools: kustomize(tools, NAMESPACE_SCOPED_OVERLAY),
    "plain-manifests": lambda tools: [
        obj
        for manifest in ("deploy/deployment.yaml", "deploy/rbac.yaml")
        for obj in parse((REPO_ROOT / manifest).read_text())
    ],
}


@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
def test_api_server_accepts_the_rendering(
    kube_tools: KubeTools, install_cluster: KubeCluster, rendering: str
) -> None:
    objects = RENDERINGS[rendering](kube_tools)
    applied = dry_run_apply(kube_tools, install_cluster, objects)
    assert sorted(applied.stdout.split()) == sorted(applied_name(obj) for obj in objects)


def test_the_worked_examples_are_the_two_modes(kube_tools: KubeTools) -> None:
    http = RENDERINGS["helm-example-http-ingress"](kube_tools)
    ingress = one(http, "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"] == "release-bot-tls"
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/slack/events"
    assert "SLACK_SIGNING_SECRET" in env_of(http)
    assert "SLACK_APP_TOKEN" not in env_of(http)
    socket = RENDERINGS["helm-example-socket-mode"](kube_tools)
    assert not by_kind(socket, "Ingress")
    env = env_of(socket)
    assert "SLACK_APP_TOKEN" in env and "SLACK_SIGNING_SECRET" not in env
    assert env["REDIS_SENTINEL_MASTER"] == "mymaster"
    assert env["REDIS_SENTINELS"].count(":26379") == 3
    assert "REDIS_URL" not in env


def test_api_server_rejects_an_invalid_rendering(
    kube_tools: KubeTools, install_cluster: KubeCluster
) -> None:
    objects = helm_template(kube_tools, "--set", "replicas=-1")
    applied = dry_run_apply(kube_tools, install_cluster, objects, check=False)
    assert applied.returncode != 0
    assert "spec.replicas: Invalid value: -1" in applied.stderr
