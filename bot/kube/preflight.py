"""Preflight checks before a release starts; called by KubernetesCluster.preflight (reconciler).

`run_preflight` reads the cluster (never writes) and returns a `PreflightReport`: one finding per
check, each `pass`, `warn` or `block`, with a message written for a person in a Slack thread.
A release may start only when nothing blocks.

Checks, in order: the stable Deployment exists; the named container exists; the new image
reference is well-formed; every container has a readiness probe (block); the pod template carries
a version label (block, see `_check_version_label`); the ConfigMaps the pods use are versioned
(warn); the namespace's ResourceQuotas have room for the pods the release adds (block); a
Deployment managed by Argo CD or Flux says which settings keep it from reverting the release
(warn, see `_check_gitops` and docs/gitops.md); the app's traffic router finds every object
and label it routes by (block, see `_check_routing`).

The cluster is read through bot.kube.client, objects as plain dicts, and its errors are that
module's: a 403 (ForbiddenError) becomes a blocking finding that names the missing permission (a
check that cannot run never passes); every other TemporaryError or PermanentError propagates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Literal, get_args

from kubernetes import client as k8s
from kubernetes.utils import parse_quantity

from bot.core.errors import PermanentError, TemporaryError
from bot.core.images import parse_version
from bot.core.ports import PreflightResult
from bot.kube.client import (
    CONFIG_MAPS,
    DEPLOYMENTS,
    LIMIT_RANGES,
    RESOURCE_QUOTAS,
    ForbiddenError,
    NamespacedResources,
    Object,
    ResourceType,
)
from bot.kube.workloads import VERSION_LABELS, resolve_version

ReleaseKind = Literal["canary", "bluegreen"]
_NOUNS = {"deployments": "Deployment", "rollouts": "Rollout"}
"""How a finding names the workload, by its resource."""
# Besides pods, a release adds one Deployment (canary or green) and the ReplicaSet under it.
OBJECTS_A_RELEASE_ADDS: Mapping[str, int] = {
    "count/deployments.apps": 1,
    "count/replicasets.apps": 1,
}


class Severity(StrEnum):
    PASS = "pass"
    WARN = "warn"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class PreflightReport:
    """What preflight found; `new_image` is None when the image could not be resolved."""

    namespace: str
    deployment: str
    kind: ReleaseKind
    new_image: str | None
    findings: tuple[Finding, ...]

    @property
    def blocked(self) -> bool:
        return bool(self.blocking)

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return self._with(Severity.BLOCK)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return self._with(Severity.WARN)

    def _with(self, severity: Severity) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.severity is severity)


def run_preflight(
    *,
    api: k8s.ApiClient,
    namespace: str,
    deployment: str,
    container: str | None,
    version: str,
    kind: ReleaseKind,
    extra_replicas: int | None = None,
    routing: Callable[[], Sequence[str]] | None = None,
    workload_type: ResourceType = DEPLOYMENTS,
) -> PreflightReport:
    """Check that `deployment` can be released to `version` (an image tag or a full reference).

    `container` names the container whose image changes; None means the pod's only container.
    `extra_replicas` is how many pods the release adds at its peak: required for a canary; for
    blue-green None means a full second copy (as many pods as the stable runs: twice the resources).
    `routing` lists what keeps the app's traffic router from routing the release (its
    TrafficRouter.check); it runs once the container and image are found. `workload_type`:
    what `deployment` names, a Deployment or an Argo Rollout (whose pod template is read alike).
    """
    _validate_arguments(kind=kind, extra_replicas=extra_replicas)
    kube = _Kube(api=api, namespace=namespace)
    workloads = NamespacedResources(api, workload_type, namespace)
    noun = _NOUNS[workload_type.plural]
    subject = f"{noun} `{deployment}`"

    def report(new_image: str | None, findings: Sequence[Finding]) -> PreflightReport:
        return PreflightReport(namespace, deployment, kind, new_image, tuple(findings))

    try:
        stable = workloads.get(deployment)
    except ForbiddenError as denied:
        return report(None, [_forbidden("deployment", denied)])
    if stable is None:
        return report(None, [_deployment_missing(subject, namespace)])
    found = Finding("deployment", Severity.PASS, f"{subject} found.")
    template = stable["spec"]["template"]
    pod_spec: Object = template["spec"]
    target, picked = _pick_container(pod_spec["containers"], container, subject)
    if target is None:
        return report(None, [found, picked])
    new_image, image_findings = _check_image(
        current=target["image"], version=version, container=target["name"]
    )
    pods = extra_replicas if extra_replicas is not None else int(stable["spec"].get("replicas", 1))
    findings = [
        found,
        picked,
        *image_findings,
        _check_readiness_probes(pod_spec, subject),
        _check_version_label(template.get("metadata", {}).get("labels") or {}, subject),
        *_check_gitops(stable, pod_spec["containers"].index(target)),
        *_guarded("configmaps", lambda: _check_configmaps(kube, pod_spec)),
        *_guarded("quota", lambda: _check_quota(kube, pod_spec, pods=pods, kind=kind)),
    ]
    if routing is not None and new_image is not None:
        findings += _guarded("routing", lambda: _check_routing(routing))
    return report(new_image, findings)


_SEVERITY_MARKS = {Severity.BLOCK: "⛔", Severity.WARN: "⚠️", Severity.PASS: "✅"}
_SEVERITY_ORDER = (Severity.BLOCK, Severity.WARN, Severity.PASS)


def preflight_result(findings: Sequence[Finding]) -> PreflightResult:
    """What the release service gets: blocked or not, and one mrkdwn line per finding with its
    mark, blocking ones first, then warnings."""
    ordered = sorted(findings, key=lambda finding: _SEVERITY_ORDER.index(finding.severity))
    summary = "\n".join(
        f"{_SEVERITY_MARKS[finding.severity]} {finding.message}" for finding in ordered
    )
    blocked = any(finding.severity is Severity.BLOCK for finding in findings)
    return PreflightResult(blocked=blocked, summary=summary)


def _validate_arguments(*, kind: str, extra_replicas: int | None) -> None:
    if kind not in get_args(ReleaseKind):
        raise ValueError(f"release kind must be one of {get_args(ReleaseKind)}, got {kind!r}")
    if kind == "canary" and extra_replicas is None:
        raise ValueError("a canary preflight needs extra_replicas (the pods the canary adds)")
    if extra_replicas is not None and extra_replicas < 1:
        raise ValueError(f"extra_replicas must be at least 1, got {extra_replicas}")


def _deployment_missing(subject: str, namespace: str) -> Finding:
    return Finding(
        "deployment",
        Severity.BLOCK,
        f"{subject} not found in namespace `{namespace}`: "
        "check the app's workload name and namespace in the bot's configuration.",
    )


# --- Kubernetes API access -------------------------------------------------------------------


class _Kube:
    """The objects preflight reads (it never writes), through bot.kube.client."""

    def __init__(self, *, api: k8s.ApiClient, namespace: str) -> None:
        self.configmaps = NamespacedResources(api, CONFIG_MAPS, namespace)
        self.resource_quotas = NamespacedResources(api, RESOURCE_QUOTAS, namespace)
        self.limit_ranges = NamespacedResources(api, LIMIT_RANGES, namespace)


def _guarded(check: str, run: Callable[[], list[Finding]]) -> list[Finding]:
    """Run a check that reads the API; a missing permission blocks instead of passing."""
    try:
        return run()
    except ForbiddenError as denied:
        return [_forbidden(check, denied)]


def _forbidden(check: str, denied: ForbiddenError) -> Finding:
    return Finding(
        check,
        Severity.BLOCK,
        f"the bot may not {denied.verb} {denied.resource} in namespace `{denied.namespace}` "
        f"(403 Forbidden): grant its service account `{denied.verb}` on `{denied.resource}` "
        "in that namespace.",
    )


# --- container and image -------------------------------------------------------------------


def _pick_container(
    containers: list[Object], wanted: str | None, subject: str
) -> tuple[Object | None, Finding]:
    names = ", ".join(f"`{container['name']}`" for container in containers)
    if wanted is None:
        if len(containers) == 1:
            return containers[0], _container_found(containers[0]["name"])
        return None, Finding(
            "container",
            Severity.BLOCK,
            f"{subject} has several containers ({names}): "
            "name the one to release in the app's configuration.",
        )
    for container in containers:
        if container["name"] == wanted:
            return container, _container_found(wanted)
    return None, Finding(
        "container",
        Severity.BLOCK,
        f"{subject} has no container `{wanted}` (it has {names}).",
    )


def _container_found(name: str) -> Finding:
    return Finding("container", Severity.PASS, f"Container `{name}` found.")


def _check_image(*, current: str, version: str, container: str) -> tuple[str | None, list[Finding]]:
    try:
        new_image = resolve_version(current_image=current, version=version).image
    except PermanentError as malformed:
        return None, [Finding("image", Severity.BLOCK, f"{malformed}.")]
    reference = parse_version(version)
    findings: list[Finding] = []
    if new_image == current:
        findings.append(
            Finding("image", Severity.WARN, f"`{new_image}` is what `{container}` runs already.")
        )
    if reference.digest is None and reference.tag in (None, "latest"):
        findings.append(
            Finding(
                "image",
                Severity.WARN,
                f"`{new_image}` is a moving tag: canary pods may not all run the same build, "
                "and a rollback may not bring the old one back. Prefer a version tag or a digest.",
            )
        )
    return new_image, findings or [
        Finding("image", Severity.PASS, f"`{container}` goes from `{current}` to `{new_image}`.")
    ]


# --- readiness probes and version label ----------------------------------------------------


def _check_readiness_probes(pod_spec: Object, subject: str) -> Finding:
    missing = [c["name"] for c in pod_spec["containers"] if c.get("readinessProbe") is None]
    if not missing:
        return Finding("readiness-probe", Severity.PASS, "Every container has a readiness probe.")
    names = ", ".join(f"`{name}`" for name in missing)
    return Finding(
        "readiness-probe",
        Severity.BLOCK,
        f"Container {names} of {subject} has no readinessProbe: a new pod would "
        "get traffic before it can serve, and a broken version would still look Ready. "
        "Add a readinessProbe before releasing.",
    )


def _check_version_label(labels: Mapping[str, str], subject: str) -> Finding:
    """Blocking, not a warning: canary metrics, logs, mesh subsets and the blue-green selector
    (`version: green`) all tell versions apart by this label. Without it the canary's metrics mix
    with the stable's, so no stage could ever be judged. The bot does not add the label itself:
    editing the stable's template restarts every stable pod, which is the team's call to make."""
    for key in VERSION_LABELS:
        if labels.get(key):
            return Finding(
                "version-label", Severity.PASS, f"Pods carry the label `{key}={labels[key]}`."
            )
    return Finding(
        "version-label",
        Severity.BLOCK,
        f"The pod template of {subject} has no version label "
        f"(`{VERSION_LABELS[0]}` or `{VERSION_LABELS[1]}`): metrics and logs of the new version "
        "could not be told apart from the stable's. Add e.g. `version: <current tag>` to "
        "spec.template.metadata.labels (this rolls the stable pods once).",
    )


# --- traffic routing -------------------------------------------------------------------


def _check_routing(routing: Callable[[], Sequence[str]]) -> list[Finding]:
    """Blocking: what the router would refuse once the canary exists is refused now, before
    anything is created."""
    try:
        problems = routing()
    except ForbiddenError:
        raise  # _guarded names the missing permission
    except PermanentError as refused:
        problems = [str(refused)]
    if not problems:
        return [Finding("routing", Severity.PASS, "The routing objects can split the traffic.")]
    return [Finding("routing", Severity.BLOCK, f"{problem}.") for problem in problems]


# --- GitOps ------------------------------------------------------------------------------

ARGOCD_TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
ARGOCD_INSTANCE_LABEL = "argocd.argoproj.io/instance"
FLUX_KUSTOMIZE_LABEL = "kustomize.toolkit.fluxcd.io/name"
FLUX_HELM_LABEL = "helm.toolkit.fluxcd.io/name"
FLUX_RECONCILE_ANNOTATION = "kustomize.toolkit.fluxcd.io/reconcile"


def _check_gitops(stable: Object, container_index: int) -> list[Finding]:
    """A warning, not a block: the bot changes the stable Deployment's image and replicas at
    promotion (and the replicas router scales it at every stage); a GitOps tool that syncs the
    Deployment back to git reverts that, unless told to leave those fields alone. Nothing is
    said of a Deployment no such tool tracks."""
    metadata = stable["metadata"]
    name = metadata["name"]
    labels: Mapping[str, str] = metadata.get("labels") or {}
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    fields = f"`/spec/template/spec/containers/{container_index}/image` and `/spec/replicas`"
    tracking = annotations.get(ARGOCD_TRACKING_ANNOTATION) or labels.get(ARGOCD_INSTANCE_LABEL)
    findings = []
    if tracking:
        application = tracking.split(":", 1)[0]
        findings.append(
            Finding(
                "gitops",
                Severity.WARN,
                f"Deployment `{name}` is managed by Argo CD (Application `{application}`): with "
                "self-heal on, Argo CD reverts the promoted image and the replica counts to "
                "what git says. In the Application, add `ignoreDifferences` for group `apps`, "
                f"kind `Deployment`, name `{name}` with jsonPointers {fields} (and the sync "
                "option `RespectIgnoreDifferences=true`), or turn self-heal off; then commit "
                "the new version to git after the promotion.",
            )
        )
    flux = labels.get(FLUX_KUSTOMIZE_LABEL) or labels.get(FLUX_HELM_LABEL)
    if flux and annotations.get(FLUX_RECONCILE_ANNOTATION) != "disabled":
        kind = "Kustomization" if labels.get(FLUX_KUSTOMIZE_LABEL) else "HelmRelease"
        findings.append(
            Finding(
                "gitops",
                Severity.WARN,
                f"Deployment `{name}` is managed by Flux ({kind} `{flux}`): every reconcile "
                f"reapplies git and reverts the promoted image and the replica counts ({fields}). "
                f"Annotate the Deployment with `{FLUX_RECONCILE_ANNOTATION}: disabled` during "
                "releases, or drop those fields from what Flux applies with a patch; then "
                "commit the new version to git after the promotion.",
            )
        )
    return findings


# --- ConfigMaps ----------------------------------------------------------------------------

_HEX_HASH_SUFFIX = re.compile(r"-(?=[0-9a-f]{6,}$)[0-9a-f]*[0-9][0-9a-f]*$")
_KUSTOMIZE_HASH_SUFFIX = re.compile(r"-[bcdfghjklmnpqrstvwxz2456789]{10}$")
_VERSION_SUFFIX = re.compile(r"[-.]v?[0-9]+(?:[.-][0-9]+)*$")


@dataclass(frozen=True, slots=True)
class _ConfigMapUse:
    name: str
    where: str
    optional: bool


def _configmap_uses(pod_spec: Object) -> Iterator[_ConfigMapUse]:
    """Every place the pod reads a ConfigMap: volumes, projected volumes, envFrom, env valueFrom."""

    def use(ref: Object, where: str) -> _ConfigMapUse:
        return _ConfigMapUse(ref.get("name", ""), where, bool(ref.get("optional")))

    for volume in pod_spec.get("volumes") or []:
        where = f"volume `{volume['name']}`"
        if volume.get("configMap") is not None:
            yield use(volume["configMap"], where)
        for source in (volume.get("projected") or {}).get("sources") or []:
            if source.get("configMap") is not None:
                yield use(source["configMap"], f"projected {where}")
    for container in [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]:
        of = f"of container `{container['name']}`"
        for env_from in container.get("envFrom") or []:
            if env_from.get("configMapRef") is not None:
                yield use(env_from["configMapRef"], f"envFrom {of}")
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
            if ref is not None:
                yield use(ref, f"env `{env['name']}` {of}")


def _versioned_by_name(name: str) -> str | None:
    """Why the name alone makes the ConfigMap versioned, or None."""
    if _HEX_HASH_SUFFIX.search(name) or _KUSTOMIZE_HASH_SUFFIX.search(name):
        return "hash suffix"
    if _VERSION_SUFFIX.search(name):
        return "version suffix"
    return None


def _check_configmaps(kube: _Kube, pod_spec: Object) -> list[Finding]:
    uses: dict[str, list[_ConfigMapUse]] = {}
    for use in _configmap_uses(pod_spec):
        uses.setdefault(use.name, []).append(use)
    if not uses:
        return [Finding("configmaps", Severity.PASS, "The pods use no ConfigMap.")]
    return [_check_configmap(kube, name, name_uses) for name, name_uses in uses.items()]


def _check_configmap(kube: _Kube, name: str, uses: list[_ConfigMapUse]) -> Finding:
    places = ", ".join(use.where for use in uses)
    by_name = _versioned_by_name(name)
    if by_name is not None:
        return Finding("configmaps", Severity.PASS, f"ConfigMap `{name}` is versioned ({by_name}).")
    configmap = kube.configmaps.get(name)
    if configmap is None:
        if all(use.optional for use in uses):
            return Finding(
                "configmaps", Severity.PASS, f"Optional ConfigMap `{name}` ({places}) is absent."
            )
        return Finding(
            "configmaps",
            Severity.BLOCK,
            f"ConfigMap `{name}` ({places}) does not exist: new pods would not start.",
        )
    if configmap.get("immutable"):
        return Finding("configmaps", Severity.PASS, f"ConfigMap `{name}` is immutable.")
    return Finding(
        "configmaps",
        Severity.WARN,
        f"ConfigMap `{name}` ({places}) is neither immutable nor name-versioned: an edit reaches "
        "stable and new pods alike, and a rollback cannot bring the old settings back. Give it a "
        "hash or version suffix (e.g. kustomize's configMapGenerator) or set `immutable: true`.",
    )


# --- quota ---------------------------------------------------------------------------------

_COMPUTE = ("cpu", "memory", "ephemeral-storage")
_QOS = frozenset(
    {"cpu", "memory"}
)  # the resources that decide a pod's QoS class (BestEffort or not)
# Quota admission rejects a pod whose containers leave these unset while a quota tracks them.
_MUST_BE_SET = frozenset(
    {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
)
_BINARY_UNITS = (
    ("Ei", 2**60),
    ("Pi", 2**50),
    ("Ti", 2**40),
    ("Gi", 2**30),
    ("Mi", 2**20),
    ("Ki", 2**10),
)

ResourceList = dict[str, Decimal]


@dataclass(frozen=True, slots=True)
class _PodShape:
    """One new pod as quota admission sees it, after request and LimitRange defaulting."""

    usage: ResourceList  # quota resource name -> amount one pod is charged
    unset: dict[str, list[str]]  # quota resource that must be set -> containers leaving it unset
    best_effort: bool
    pod_spec: Object


@dataclass(frozen=True, slots=True)
class _Demand:
    """What the new pods add to one resource of one quota, beside what the quota allows."""

    resource: str
    each: Decimal  # per pod; 0 for objects counted once per release
    need: Decimal
    used: Decimal
    hard: Decimal

    @property
    def room(self) -> Decimal:
        return max(self.hard - self.used, Decimal(0))

    @property
    def fits(self) -> bool:
        return self.need <= self.hard - self.used


def _check_quota(kube: _Kube, pod_spec: Object, *, pods: int, kind: ReleaseKind) -> list[Finding]:
    quotas = kube.resource_quotas.list_all()
    if not quotas:
        return [Finding("quota", Severity.PASS, "No ResourceQuota in the namespace: no limit.")]
    shape = _pod_shape(pod_spec, kube.limit_ranges.list_all())
    what = f"{pods} new pod{'s' if pods != 1 else ''}"
    if kind == "bluegreen":
        what += " (blue-green: a full second copy)"
    findings: list[Finding] = []
    for quota in quotas:
        findings.extend(_check_one_quota(quota, shape, pods=pods, what=what))
    return findings


def _check_one_quota(quota: Object, shape: _PodShape, *, pods: int, what: str) -> list[Finding]:
    name = quota["metadata"]["name"]
    if not _quota_applies(quota.get("spec") or {}, shape):
        return [
            Finding("quota", Severity.PASS, f"ResourceQuota `{name}` does not cover these pods.")
        ]
    hard = _quantities((quota.get("spec") or {}).get("hard"))
    unset = {resource: names for resource, names in shape.unset.items() if resource in hard}
    if unset:
        return [_unset_finding(name, unset)]
    demands = _demands(quota, hard, shape.usage, pods=pods)
    shortfalls = [_shortfall(name, what, demand) for demand in demands if not demand.fits]
    if shortfalls:
        return shortfalls
    figures = ", ".join(
        f"{d.resource} {_show(d.resource, d.need)} of {_show(d.resource, d.room)} free"
        for d in demands
    )
    return [
        Finding(
            "quota",
            Severity.PASS,
            f"ResourceQuota `{name}` has room for {what}: {figures or 'nothing it tracks'}.",
        )
    ]


def _demands(quota: Object, hard: ResourceList, usage: ResourceList, *, pods: int) -> list[_Demand]:
    needs = {
        resource: usage.get(resource, Decimal(0)) * pods + OBJECTS_A_RELEASE_ADDS.get(resource, 0)
        for resource in sorted(hard)
    }
    tracked = [resource for resource, need in needs.items() if need > 0]
    used = _quantities((quota.get("status") or {}).get("used"))
    if not set(tracked) <= set(used):
        raise TemporaryError(
            f"ResourceQuota `{quota['metadata']['name']}` has no usage figures yet "
            "(the quota controller has not counted them): try again in a few seconds."
        )
    return [_Demand(r, usage.get(r, Decimal(0)), needs[r], used[r], hard[r]) for r in tracked]


def _shortfall(quota: str, what: str, demand: _Demand) -> Finding:
    resource = demand.resource
    per_pod = ""
    if demand.each and demand.need != demand.each and resource not in ("pods", "count/pods"):
        per_pod = f" ({_show(resource, demand.each)} each)"
    return Finding(
        "quota",
        Severity.BLOCK,
        f"ResourceQuota `{quota}` is short of `{resource}`: {what} need "
        f"{_show(resource, demand.need)}{per_pod}, room is {_show(resource, demand.room)} "
        f"(used {_show(resource, demand.used)} of {_show(resource, demand.hard)}). "
        "Raise the quota or free room before releasing.",
    )


def _unset_finding(quota: str, unset: dict[str, list[str]]) -> Finding:
    missing = "; ".join(
        f"`{resource}` for {', '.join(f'`{c}`' for c in containers)}"
        for resource, containers in sorted(unset.items())
    )
    return Finding(
        "quota",
        Severity.BLOCK,
        f"ResourceQuota `{quota}` would reject the new pods: they must specify {missing} "
        "(set resources on the containers, or a LimitRange default).",
    )


def _pod_shape(pod_spec: Object, limit_ranges: list[Object]) -> _PodShape:
    defaults = _limit_range_defaults(limit_ranges)
    containers = [*pod_spec["containers"], *(pod_spec.get("initContainers") or [])]
    effective = {c["name"]: _effective_resources(c, defaults) for c in containers}
    requests = _pod_total(pod_spec, {name: pair[0] for name, pair in effective.items()}, "requests")
    limits = _pod_total(pod_spec, {name: pair[1] for name, pair in effective.items()}, "limits")
    return _PodShape(
        usage=_quota_usage(requests, limits),
        unset={} if _has_pod_level_resources(pod_spec) else _unset_by_container(effective),
        best_effort=not any(_QOS & (set(req) | set(lim)) for req, lim in effective.values()),
        pod_spec=pod_spec,
    )


def _quantities(values: Mapping[str, str] | None) -> ResourceList:
    return {name: _parse_quantity(value) for name, value in (values or {}).items()}


def _parse_quantity(value: str) -> Decimal:
    return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]


def _limit_range_defaults(limit_ranges: list[Object]) -> tuple[ResourceList, ResourceList]:
    """Container (requests, limits) defaults; as in the LimitRanger, the first range wins."""
    requests: ResourceList = {}
    limits: ResourceList = {}
    for limit_range in limit_ranges:
        for item in (limit_range.get("spec") or {}).get("limits") or []:
            if item.get("type") == "Container":
                requests = _quantities(item.get("defaultRequest")) | requests
                limits = _quantities(item.get("default")) | limits
    return requests, limits


def _effective_resources(
    container: Object, defaults: tuple[ResourceList, ResourceList]
) -> tuple[ResourceList, ResourceList]:
    """Requests default to limits (pod defaulting), then unset values to the LimitRange's."""
    resources = container.get("resources") or {}
    requests = _quantities(resources.get("requests"))
    limits = _quantities(resources.get("limits"))
    requests = limits | requests
    return defaults[0] | requests, defaults[1] | limits


def _pod_total(pod_spec: Object, per_container: dict[str, ResourceList], side: str) -> ResourceList:
    """The pod's total as Kubernetes computes it, sidecars (restartable init containers) too."""
    total: ResourceList = {}
    for container in pod_spec["containers"]:
        total = _add(total, per_container[container["name"]])
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for container in pod_spec.get("initContainers") or []:
        own = per_container[container["name"]]
        if container.get("restartPolicy") == "Always":
            total = _add(total, own)
            sidecars = _add(sidecars, own)
            init_peak = _max(init_peak, sidecars)
        else:
            init_peak = _max(init_peak, _add(own, sidecars))
    total = _max(total, init_peak)
    pod_level = (pod_spec.get("resources") or {}).get(side)
    return total | _quantities(pod_level)


def _has_pod_level_resources(pod_spec: Object) -> bool:
    resources = pod_spec.get("resources") or {}
    return bool(resources.get("requests") or resources.get("limits"))


def _add(left: ResourceList, right: ResourceList) -> ResourceList:
    return {name: left.get(name, Decimal(0)) + right.get(name, Decimal(0)) for name in left | right}


def _max(left: ResourceList, right: ResourceList) -> ResourceList:
    return {
        name: max(left.get(name, Decimal(0)), right.get(name, Decimal(0))) for name in left | right
    }


def _quota_usage(requests: ResourceList, limits: ResourceList) -> ResourceList:
    """What quota charges one pod, by quota resource name (as the apiserver's pod evaluator)."""
    usage: ResourceList = {"pods": Decimal(1), "count/pods": Decimal(1)}
    for name, amount in requests.items():
        usage[f"requests.{name}"] = amount
        if name in _COMPUTE or name.startswith("hugepages-"):
            usage[name] = amount
    for name in _COMPUTE:
        if name in limits:
            usage[f"limits.{name}"] = limits[name]
    return usage


def _unset_by_container(
    effective: dict[str, tuple[ResourceList, ResourceList]],
) -> dict[str, list[str]]:
    unset: dict[str, list[str]] = {}
    for container, (requests, limits) in effective.items():
        charged = _quota_usage(requests, limits)
        for resource in sorted(_MUST_BE_SET - set(charged)):
            unset.setdefault(resource, []).append(container)
    return unset


def _quota_applies(spec: Object, shape: _PodShape) -> bool:
    """Whether a quota's scopes select the new pods; an unknown scope is assumed to select them."""
    requirements: list[tuple[str, str, list[str]]] = [
        (scope, "Exists", []) for scope in spec.get("scopes") or []
    ]
    requirements += [
        (e["scopeName"], e["operator"], e.get("values") or [])
        for e in (spec.get("scopeSelector") or {}).get("matchExpressions") or []
    ]
    return all(_scope_matches(scope, op, values, shape) for scope, op, values in requirements)


def _scope_matches(scope: str, operator: str, values: list[str], shape: _PodShape) -> bool:
    pod_spec = shape.pod_spec
    if scope == "PriorityClass":
        priority_class = pod_spec.get("priorityClassName") or ""
        return {
            "Exists": bool(priority_class),
            "DoesNotExist": not priority_class,
            "In": priority_class in values,
            "NotIn": priority_class not in values,
        }.get(operator, True)
    terminating = pod_spec.get("activeDeadlineSeconds") is not None
    matched = {
        "Terminating": terminating,
        "NotTerminating": not terminating,
        "BestEffort": shape.best_effort,
        "NotBestEffort": not shape.best_effort,
        "CrossNamespacePodAffinity": _uses_cross_namespace_affinity(pod_spec),
    }.get(scope, True)
    return matched if operator != "DoesNotExist" else not matched


def _uses_cross_namespace_affinity(pod_spec: Object) -> bool:
    affinity = pod_spec.get("affinity") or {}
    terms: list[Object] = []
    for kind in (affinity.get("podAffinity"), affinity.get("podAntiAffinity")):
        if kind is not None:
            terms += kind.get("requiredDuringSchedulingIgnoredDuringExecution") or []
            terms += [
                weighted["podAffinityTerm"]
                for weighted in kind.get("preferredDuringSchedulingIgnoredDuringExecution") or []
            ]
    return any(
        term.get("namespaces") or term.get("namespaceSelector") is not None for term in terms
    )


def _show(resource: str, amount: Decimal) -> str:
    """An amount as people read it: 1500m or 2 for CPU, 768Mi or 1.5Gi for bytes, else a count."""
    base = resource.removeprefix("requests.").removeprefix("limits.")
    if base == "cpu":
        return _plain(amount) if amount == amount.to_integral() else f"{_plain(amount * 1000)}m"
    if base in ("memory", "ephemeral-storage") or base.startswith("hugepages-"):
        for suffix, size in _BINARY_UNITS:
            if amount >= size:
                return f"{_plain(amount / size)}{suffix}"
    return _plain(amount)


def _plain(amount: Decimal) -> str:
    return f"{round(amount, 2).normalize():f}"
