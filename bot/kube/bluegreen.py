"""Blue-green releases on Kubernetes: the strategy KubernetesCluster (bot.kube.reconciler) builds
for a blue-green release, behind the same small interface as the canary's.

Two Deployment slots take turns: the app's `workload` and `<workload>-green`. Blue is the one the
production Service selects when the release starts; green, the new version, goes into the other
slot: a copy of blue with the new image and version label, annotated with the release's id. The
production Service selects its app labels plus `<version label>: <blue's version>`, so the switch
is one update of its selector (with the resourceVersion it was read at); the preview Service
(`<app>-green` by default) selects only green's pods. Green's own selector is blue's plus
`release-bot.io/slot: <its slot>`, never its version: selectors are immutable, and a later canary
of that slot rolls its version like any stable's. Once one slot is left (blue retired or green
removed) the production Service's version pin is dropped again.

What each phase wants (bot.core.release.desired_traffic's weight says which colour serves):
- STARTING, VERIFYING and the preview (weight 0): production pinned to blue's version, green and
  the preview Service in place; `canary_ready` once green is rolled out. While VERIFYING, the
  preview's verification Job too (bot.kube.verification, aimed at the preview Service), whose
  status the observation carries.
- SWITCHING: the selector moves to green in one update, then the reconcile waits (at most
  ENDPOINTS_WAIT_S) for the EndpointSlices to list only green's pods, and reports both times.
- the watch window, KEEPING_BLUE (weight 100): production on green; blue left as it is.
- PROMOTING (blue retired): blue scaled to 0; once its pods are gone and its grace is over
  (`blue_due_at`), blue and the preview Service are deleted.
- ROLLING_BACK, FAILED: production back on blue first, then green, the preview Service and the
  release's verification Jobs deleted (blue retired: the Jobs too).
Every step reads what is there and writes only what differs, so a repeat changes nothing.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client as k8s

from bot.core.apps import AppConfig
from bot.core.errors import PermanentError, TemporaryError
from bot.core.ports import Observation, PreflightResult, SwitchTiming
from bot.core.release import BlueGreenPods, Phase, Release, desired_traffic
from bot.kube.client import (
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    PODS,
    SERVICES,
    NamespacedResources,
    Object,
)
from bot.kube.preflight import Finding, Severity, preflight_result, run_preflight
from bot.kube.verification import VerificationJobs
from bot.kube.workloads import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    VERSION_ANNOTATION,
    VERSION_LABELS,
    image_version,
    is_rolled_out,
    released_container,
    resolve_version,
    version_keys,
)

SLOT_SUFFIX = "-green"
SLOT_LABEL = "release-bot.io/slot"
RELEASE_ANNOTATION = "release-bot.io/release-id"
ENDPOINTS_WAIT_S = 5.0
_ENDPOINTS_POLL_S = 0.005
_SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_COPIED_SPEC = ("strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit")


@dataclass(frozen=True, slots=True)
class _Pair:
    """Blue's and green's slot names and their Deployments as read (None: absent)."""

    blue_name: str
    blue: Object | None
    green_name: str
    green: Object | None


class ProductionSlots:
    """An app's two Deployment slots (`workload`, `<workload>-green`) and the production Service
    in front of them: which slot serves production today. Blue-green starts from it, and the
    canary and hybrid strategies (bot.kube.reconciler) release the Deployment it names."""

    def __init__(self, app: AppConfig, *, api: k8s.ApiClient) -> None:
        self._app = app
        self._deployments = NamespacedResources(api, DEPLOYMENTS, app.namespace)
        self._services = NamespacedResources(api, SERVICES, app.namespace)
        self.names = (app.workload, f"{app.workload}{SLOT_SUFFIX}")
        self.service = app.bluegreen.service or app.workload

    def serving_name(self) -> str:
        """The slot that exists; when both do, the one the production Service selects; the
        app's `workload` when neither does (preflight then says it is missing)."""
        present = [name for name in self.names if self._deployments.get(name) is not None]
        if len(present) < len(self.names):
            return (present or [self._app.workload])[0]
        name: str = self.serving()["metadata"]["name"]
        return name

    def serving(self) -> Object:
        """The Deployment whose pods the production Service selects (exactly one of the two)."""
        service = self._services.get(self.service)
        if service is None:
            raise PermanentError(
                f"production Service `{self.service}` not found in namespace "
                f"`{self._app.namespace}`: set apps.{self._app.name}.bluegreen.service"
            )
        selector = service["spec"].get("selector") or {}
        serving = [
            deployment
            for name in self.names
            if (deployment := self._deployments.get(name)) is not None
            and selector
            and selector.items() <= _template_labels(deployment).items()
        ]
        if len(serving) != 1:
            names = " and ".join(f"`{name}`" for name in self.names)
            count = "none" if not serving else "both"
            raise PermanentError(
                f"production Service `{self.service}` (selector {selector}) selects the pods of "
                f"{count} of the Deployments {names}; exactly one must serve production"
            )
        return serving[0]


class PreviewService:
    """The Service that selects only green's pods, so green can be tried before it gets users;
    its ports are the production Service's. Used by blue-green and hybrid releases."""

    def __init__(self, services: NamespacedResources, *, name: str, production: str) -> None:
        self._services = services
        self.name = name
        self._production = production

    def ensure(self, selector: dict[str, str]) -> None:
        production = _require(
            self._services.get(self._production), self._production, "production Service"
        )
        ports = [
            {key: value for key, value in port.items() if key != "nodePort"}
            for port in production["spec"].get("ports", [])
        ]

        def render(current: Object | None) -> Object:
            if current is None:
                metadata = {"name": self.name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}
                spec = {"type": "ClusterIP", "selector": selector, "ports": ports}
                return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}
            _require_managed(current, "preview Service")
            current["spec"]["selector"] = selector
            return current

        self._services.reconcile(self.name, render)

    def remove(self) -> None:
        """Delete it (only release-bot's); absent is fine."""
        preview = self._services.get(self.name)
        if preview is not None:
            _require_managed(preview, "preview Service")
            self._services.delete(self.name)

    def findings(self, app: str) -> list[Finding]:
        """What blocks a start: no production Service to copy ports from, a foreign Service
        already named like the preview."""
        findings = []
        if self._services.get(self._production) is None:
            findings.append(
                Finding(
                    "service",
                    Severity.BLOCK,
                    f"production Service `{self._production}` not found: the preview Service "
                    f"copies its ports; set apps.{app}.bluegreen.service",
                )
            )
        preview = self._services.get(self.name)
        if preview is not None and not _managed(preview):
            findings.append(
                Finding(
                    "preview",
                    Severity.BLOCK,
                    f"Service `{self.name}` exists and is not release-bot's: name another "
                    f"with apps.{app}.bluegreen.preview_service.",
                )
            )
        return findings


class BlueGreenStrategy:
    """One app's blue-green releases: two Deployment slots, the production and preview Services."""

    def __init__(self, app: AppConfig, *, api: k8s.ApiClient) -> None:
        self.config = app
        self._api = api
        self._deployments = NamespacedResources(api, DEPLOYMENTS, app.namespace)
        self._services = NamespacedResources(api, SERVICES, app.namespace)
        self._slices = NamespacedResources(api, ENDPOINT_SLICES, app.namespace)
        self._pods = NamespacedResources(api, PODS, app.namespace)
        self._production = ProductionSlots(app, api=api)
        self._service = self._production.service
        self._preview = PreviewService(
            self._services,
            name=app.bluegreen.preview_service_of(app.name),
            production=self._service,
        )
        self._slots = self._production.names
        self._verifications = VerificationJobs(api, app)

    def stable_version(self) -> str:
        """Blue's version label, else the tag of its released container."""
        blue = self._production.serving()
        label = _template_labels(blue).get(_version_label(blue))
        return label or image_version(self._container(blue)["image"])

    def preflight(self, version: str) -> PreflightResult:
        """The canary preflight's checks on blue, with quota for a full second copy, plus what
        the switch needs: a production Service selecting blue, free slots for green and its
        preview Service."""
        try:
            blue = self._production.serving()
        except PermanentError as error:
            return preflight_result([Finding("service", Severity.BLOCK, f"{error}.")])
        blue_name = blue["metadata"]["name"]
        report = run_preflight(
            api=self._api,
            namespace=self.config.namespace,
            deployment=blue_name,
            container=self.config.container or self._container(blue)["name"],
            version=version,
            kind="bluegreen",
        )
        return preflight_result([*report.findings, *self._switch_findings(blue_name)])

    def reconcile(self, release: Release) -> Observation:
        started = time.perf_counter()
        pair = self._pair(release)
        match release.phase:
            case Phase.ROLLING_BACK | Phase.FAILED:
                return self._back_to_blue(pair, release)
            case Phase.SUCCEEDED | Phase.ROLLED_BACK:
                return Observation()
            case Phase.PROMOTING:
                return self._retire_blue(pair, release)
            case Phase.SWITCHING:
                return self._switch(pair, started)
        if desired_traffic(release).canary_weight == 0:
            return self._preview_green(pair, release)
        self._point_production(_require(pair.green, pair.green_name, "green"))
        return Observation(pods=self._pods_of(pair))

    # the phases' steps

    def _preview_green(self, pair: _Pair, release: Release) -> Observation:
        blue = _require(pair.blue, pair.blue_name, "blue")
        self._point_production(blue)
        green = self._ensure_green(pair.green_name, blue, release)
        self._ensure_preview(green)
        verification = self._verifications.run(release) if release.verification else None
        return Observation(
            canary_ready=is_rolled_out(green), pods=self._pods_of(pair), verification=verification
        )

    def _switch(self, pair: _Pair, started: float) -> Observation:
        green = _require(pair.green, pair.green_name, "green")
        if not is_rolled_out(green):
            raise TemporaryError(f"green Deployment {pair.green_name} is not ready to switch to")
        switched = self._point_production(green)
        selector_s = time.perf_counter() - started if switched else None
        endpoints_s = self._wait_only(green, started)
        timing = SwitchTiming(selector_s=selector_s, endpoints_s=endpoints_s)
        return Observation(switched=timing, pods=self._pods_of(pair))

    def _retire_blue(self, pair: _Pair, release: Release) -> Observation:
        blue = pair.blue
        if blue is None:
            self._preview.remove()
            self._verifications.remove(release.id)
            self._unpin_production()
            return Observation(promotion_complete=True, pods=self._pods_of(pair))
        self._point_production(_require(pair.green, pair.green_name, "green"))
        if blue["spec"].get("replicas", 1) != 0:
            self._deployments.merge_patch(pair.blue_name, {"spec": {"replicas": 0}})
            return Observation(pods=self._pods_of(pair))
        due = release.blue_due_at
        if not blue.get("status", {}).get("replicas", 0) and not (due and datetime.now(UTC) < due):
            self._deployments.delete(pair.blue_name)
        return Observation(pods=self._pods_of(pair))

    def _back_to_blue(self, pair: _Pair, release: Release) -> Observation:
        if pair.blue is None:
            return Observation()  # blue is gone (retired): green goes on serving
        if pair.green is None:
            self._preview.remove()
            self._verifications.remove(release.id)
            self._unpin_production()
            return Observation(rollback_complete=True, pods=self._pods_of(pair))
        self._point_production(pair.blue)
        _require_managed(pair.green, "green")
        self._deployments.delete(pair.green_name)
        self._preview.remove()
        return Observation(pods=self._pods_of(pair))

    # the objects

    def _pair(self, release: Release) -> _Pair:
        """Green is the slot holding this release's Deployment, else the free one."""
        found = {name: self._deployments.get(name) for name in self._slots}
        ours = [
            name
            for name, deployment in found.items()
            if deployment is not None
            and _annotations(deployment).get(RELEASE_ANNOTATION) == release.id
        ]
        free = [name for name, deployment in found.items() if deployment is None]
        if not ours and not free:
            raise PermanentError(
                f"Deployments {' and '.join(self._slots)} both exist and neither is green of "
                f"this release: delete the one production does not select"
            )
        green_name = (ours or free)[0]
        blue_name = next(name for name in self._slots if name != green_name)
        return _Pair(blue_name, found[blue_name], green_name, found[green_name])

    def _ensure_green(self, name: str, blue: Object, release: Release) -> Object:
        label = _version_label(blue)
        container = self._container(blue)
        target = resolve_version(current_image=container["image"], version=release.version)
        template = copy.deepcopy(blue["spec"]["template"])
        labels_of_green = {label: target.label, SLOT_LABEL: name}
        template["metadata"].setdefault("labels", {}).update(labels_of_green)
        self._container_of(template)["image"] = target.image
        selector = copy.deepcopy(blue["spec"]["selector"])
        if any(e["key"] == label for e in selector.get("matchExpressions", [])):
            raise PermanentError(
                f"blue Deployment {blue['metadata']['name']} has a matchExpression on {label!r}"
            )
        match_labels = selector.setdefault("matchLabels", {})
        if label in match_labels:
            match_labels[label] = target.label
        match_labels[SLOT_LABEL] = name
        spec = {
            "selector": selector,
            "template": template,
            **{key: blue["spec"][key] for key in _COPIED_SPEC if key in blue["spec"]},
        }
        labels = {
            **blue["metadata"].get("labels", {}),
            label: target.label,
            MANAGED_BY_LABEL: MANAGED_BY,
        }
        annotations = {RELEASE_ANNOTATION: release.id, VERSION_ANNOTATION: release.version}

        def render(current: Object | None) -> Object:
            if current is None:
                metadata = {"name": name, "labels": labels, "annotations": annotations}
                replicas = blue["spec"].get("replicas", 1)
                body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata}
                return {**body, "spec": {"replicas": replicas, **spec}}
            current["metadata"].setdefault("labels", {}).update(labels)
            current["spec"].update(spec)
            return current

        return self._deployments.reconcile(name, render)

    def _ensure_preview(self, green: Object) -> None:
        production = _require(
            self._services.get(self._service), self._service, "production Service"
        )
        self._preview.ensure(self._selector_for(production, green))

    def _point_production(self, colour: Object) -> bool:
        """The production Service selects `colour`'s pods; True when this call changed it (one
        update, carrying the resourceVersion it was read at)."""
        service = _require(self._services.get(self._service), self._service, "production Service")
        return self._select_in_production(service, self._selector_for(service, colour))

    def _unpin_production(self) -> None:
        """Once one slot is left: the production Service's selector without the version label
        the release pinned, so it selects that slot's pods whatever their version (a later
        canary's pods too, and the stable pods a promotion rolls to a new version)."""
        service = _require(self._services.get(self._service), self._service, "production Service")
        pinned = service["spec"].get("selector") or {}
        unpinned = {key: value for key, value in pinned.items() if key not in VERSION_LABELS}
        if unpinned:  # a selector of the version alone stays: empty, it would select nothing
            self._select_in_production(service, unpinned)

    def _select_in_production(self, service: Object, selector: dict[str, str]) -> bool:
        """One update of the production Service's selector (carrying the resourceVersion it was
        read at); False when it already is `selector`."""
        if service["spec"].get("selector") == selector:
            return False

        def render(current: Object | None) -> Object:
            updated = _require(current, self._service, "production Service")
            updated["spec"]["selector"] = selector
            return updated

        self._services.reconcile(self._service, render)
        return True

    def _selector_for(self, service: Object, colour: Object) -> dict[str, str]:
        """The Service's own labels but the version one, plus `colour`'s version."""
        label = _version_label(colour)
        theirs = {
            k: v
            for k, v in (service["spec"].get("selector") or {}).items()
            if k not in VERSION_LABELS
        }
        return {**theirs, label: _template_labels(colour)[label]}

    def _wait_only(self, green: Object, started: float) -> float | None:
        """Seconds since `started` until the production EndpointSlices list only green's pods
        (and at least one); None when they do not within ENDPOINTS_WAIT_S."""
        selector = green["spec"]["selector"]["matchLabels"]
        query = ",".join(f"{key}={value}" for key, value in selector.items())
        deadline = started + ENDPOINTS_WAIT_S
        green_pods: set[str] = set()
        while time.perf_counter() < deadline:
            listed = self._listed_pods()
            if listed and not listed <= green_pods:
                green_pods = {
                    pod["metadata"]["name"]
                    for pod in self._pods.list_matching(label_selector=query)
                }
            if listed and listed <= green_pods:
                return time.perf_counter() - started
            time.sleep(_ENDPOINTS_POLL_S)
        return None

    def _listed_pods(self) -> set[str]:
        slices = self._slices.list_matching(label_selector=f"{_SERVICE_NAME_LABEL}={self._service}")
        return {
            endpoint["targetRef"]["name"]
            for endpoint_slice in slices
            for endpoint in endpoint_slice.get("endpoints") or []
            if endpoint.get("targetRef", {}).get("kind") == "Pod"
        }

    def _pods_of(self, pair: _Pair) -> BlueGreenPods:
        blue = self._deployments.get(pair.blue_name)
        green = self._deployments.get(pair.green_name)
        return BlueGreenPods(
            blue_ready=_ready(blue),
            blue_desired=_desired(blue),
            green_ready=_ready(green),
            green_desired=_desired(green),
        )

    def _switch_findings(self, blue_name: str) -> list[Finding]:
        green_name = next(name for name in self._slots if name != blue_name)
        findings = [
            Finding(
                "service",
                Severity.PASS,
                f"Production Service `{self._service}` selects blue `{blue_name}`; the switch "
                "moves it to green in one update.",
            )
        ]
        if self._deployments.get(green_name) is not None:
            findings.append(
                Finding(
                    "green",
                    Severity.BLOCK,
                    f"Deployment `{green_name}` exists but production does not select it: green "
                    "goes there; delete it (a leftover of an earlier release) first.",
                )
            )
        findings.extend(self._preview.findings(self.config.name))
        return findings

    def _container(self, deployment: Object) -> Object:
        return self._container_of(deployment["spec"]["template"])

    def _container_of(self, template: Object) -> Object:
        return released_container(template, wanted=self.config.container, app=self.config.name)


def _template_labels(deployment: Object) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"].get("labels") or {}
    return labels


def _version_label(deployment: Object) -> str:
    """The version label blue's pods carry (`version` or `app.kubernetes.io/version`)."""
    return version_keys(_template_labels(deployment))[0]


def _annotations(deployment: Object) -> dict[str, str]:
    annotations: dict[str, str] = deployment["metadata"].get("annotations") or {}
    return annotations


def _require(found: Object | None, name: str, what: str) -> Object:
    if found is None:
        raise PermanentError(f"{what} `{name}` not found")
    return found


def _managed(found: Object) -> bool:
    return bool(found["metadata"].get("labels", {}).get(MANAGED_BY_LABEL) == MANAGED_BY)


def _require_managed(found: Object, what: str) -> None:
    if not _managed(found):
        raise PermanentError(
            f"{what} `{found['metadata']['name']}` is not managed by release-bot "
            f"(label {MANAGED_BY_LABEL}={MANAGED_BY} missing); nothing was deleted"
        )


def _ready(deployment: Object | None) -> int:
    return 0 if deployment is None else int(deployment.get("status", {}).get("readyReplicas", 0))


def _desired(deployment: Object | None) -> int:
    return 0 if deployment is None else int(deployment["spec"].get("replicas", 1))
