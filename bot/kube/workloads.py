"""The canary and stable Deployments of one app; called by the reconciler, routers and preflight.

The release reconciler (bot.kube.reconciler) drives CanaryWorkloads; the traffic routers read
labels, scale and wait for rollouts through it; preflight resolves versions with
`resolve_version`.

The canary is `<stable>-canary`, derived from the stable Deployment on every call: the same pod
spec with the named container's image replaced, and the pod labels `<version label>: <version>`
and `track: canary`. The version label is whichever of VERSION_LABELS the stable pods carry
(`version`, the Kubernetes recommended `app.kubernetes.io/version`, or both; `version` when
they carry neither), and promotion sets it on the stable pods the same way; nothing else of the
stable pod template ever changes. The canary's selector is the stable selector plus
`track: canary`, so it can never select (or adopt the ReplicaSets of) the stable pods; the
stable selector may match canary pods, which is harmless because ReplicaSets only count pods
they own (controllerRef). Every method is idempotent: it reads what is there and writes only
what differs.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from kubernetes import client as k8s

from bot.core.errors import PermanentError
from bot.core.images import parse_version
from bot.kube.client import DEPLOYMENTS, PODS, NamespacedResources, Object

TRACK_LABEL = "track"
STABLE_TRACK: Final = "stable"
CANARY_TRACK: Final = "canary"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "release-bot"
CANARY_OF_ANNOTATION = "release-bot.io/canary-of"
VERSION_ANNOTATION = "release-bot.io/version"
VERSION_LABELS = ("version", "app.kubernetes.io/version")

Track = Literal["stable", "canary"]

# Image reference grammar (distribution/reference), reduced to what we must tell apart.
_LABEL_VALUE_RE = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


class NotReadyError(PermanentError):
    """A Deployment did not finish rolling out before its deadline."""


@dataclass(frozen=True, slots=True)
class AppWorkload:
    """Which Deployment and container a release changes."""

    namespace: str
    stable_deployment: str
    container: str

    @property
    def canary_deployment(self) -> str:
        return f"{self.stable_deployment}-canary"


@dataclass(frozen=True, slots=True)
class ResolvedVersion:
    """What a release's `<version>` means for one container: its image and its label value."""

    image: str
    label: str


@dataclass(frozen=True, slots=True)
class ReplicaCount:
    desired: int
    ready: int


def resolve_version(*, current_image: str, version: str) -> ResolvedVersion:
    """A tag replaces the tag (and any digest) of `current_image`; a full reference (with a tag
    or a digest) replaces the image whole. The label is the tag, else `<algorithm>-<12 hex>`."""
    try:
        parsed = parse_version(version)
    except ValueError as malformed:
        raise PermanentError(
            f"version {version!r} is neither an image tag (like v2.4.1) nor a full image "
            f"reference with a tag or digest (like registry.example.com/shop/api:v2.4.1): "
            f"{malformed}"
        ) from malformed
    image = f"{_repository(current_image)}:{version}" if parsed.is_tag else version
    resolved = ResolvedVersion(image=image, label=parsed.label)
    if not _LABEL_VALUE_RE.fullmatch(resolved.label):
        raise PermanentError(
            f"{resolved.label!r} (from version {version!r}) cannot be a label value: at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return resolved


def version_keys(pod_labels: Mapping[str, str]) -> tuple[str, ...]:
    """The version labels `pod_labels` carry (VERSION_LABELS' order); `version` when none."""
    present = tuple(key for key in VERSION_LABELS if key in pod_labels)
    return present or VERSION_LABELS[:1]


def with_version(labels: Mapping[str, str], keys: Iterable[str], value: str) -> dict[str, str]:
    """`labels` with each of the version labels `keys` set to `value`."""
    return {**labels, **dict.fromkeys(keys, value)}


def image_version(image: str) -> str:
    """The tag of `image`; an image pinned by digest only is its own version (a full reference
    that can be released again); no tag at all means `latest`."""
    try:
        reference = parse_version(image)
    except ValueError:
        return image  # the apiserver accepts image strings the reference grammar does not
    if reference.tag:
        return reference.tag
    return image if reference.digest else "latest"


def released_container(template: Object, *, wanted: str | None, app: str) -> Object:
    """The container of pod `template` whose image a release changes: the one named `wanted`,
    else the first; PermanentError when there is no such container."""
    containers: list[Object] = template["spec"]["containers"]
    for container in containers:
        if wanted is None or container["name"] == wanted:
            return container
    raise PermanentError(f"no container {wanted!r} in the pod template of app {app}")


def _repository(image: str) -> str:
    """`registry:5000/shop/api:v1@sha256:...` -> `registry:5000/shop/api`."""
    without_digest = image.split("@", 1)[0]
    slash = without_digest.rfind("/")
    colon = without_digest.rfind(":")
    return without_digest[:colon] if colon > slash else without_digest


class CanaryWorkloads:
    """The stable and canary Deployments of one app."""

    def __init__(self, api: k8s.ApiClient, app: AppWorkload, *, poll_interval_s: float = 0.5):
        self.app = app
        self._deployments = NamespacedResources(api, DEPLOYMENTS, app.namespace)
        self._pods = NamespacedResources(api, PODS, app.namespace)
        self._poll_interval_s = poll_interval_s

    def _name(self, track: Track) -> str:
        return self.app.canary_deployment if track == CANARY_TRACK else self.app.stable_deployment

    def stable_pod_labels(self) -> dict[str, str]:
        return _pod_labels(self._require_stable())

    def canary_pod_labels(self, version: str | None = None) -> dict[str, str]:
        """The canary pods' labels: those a canary of `version` would get from the stable
        Deployment as it is now, or, without `version`, those of the canary that runs."""
        if version is None:
            canary = self._deployments.get(self.app.canary_deployment)
            if canary is None:
                raise PermanentError(f"{self._describe('canary')} not found: ensure_canary first")
            return _pod_labels(canary)
        stable = self._require_stable()
        container = self._container(stable["spec"]["template"])
        target = resolve_version(current_image=container["image"], version=version)
        return self._canary_labels(_pod_labels(stable), target)

    def _canary_labels(
        self, stable_labels: dict[str, str], target: ResolvedVersion
    ) -> dict[str, str]:
        if stable_labels.get(TRACK_LABEL) == CANARY_TRACK:
            raise PermanentError(f"{self._describe('stable')} pods are labelled track: canary")
        labels = with_version(stable_labels, version_keys(stable_labels), target.label)
        return {**labels, TRACK_LABEL: CANARY_TRACK}

    def ensure_canary(self, version: str, *, initial_replicas: int) -> None:
        """Create or update the canary to run `version`.

        `initial_replicas` is used only when the canary is created; afterwards its replica count
        belongs to whoever scales it (the replicas router), so calling again never resets it.
        With the replicas router create it with 0 replicas, or it takes traffic at once.
        """
        if initial_replicas < 0:
            raise ValueError(f"initial_replicas must be >= 0, got {initial_replicas}")
        stable = self._require_stable()
        container = self._container(stable["spec"]["template"])
        target = resolve_version(current_image=container["image"], version=version)
        selector = self._canary_selector(stable)
        spec = self._canary_spec(stable, target, selector)
        version_labels = version_keys(_pod_labels(stable))
        metadata_labels = {
            **with_version(stable["metadata"].get("labels", {}), version_labels, target.label),
            TRACK_LABEL: CANARY_TRACK,
            MANAGED_BY_LABEL: MANAGED_BY,
        }
        annotations = {
            CANARY_OF_ANNOTATION: self.app.stable_deployment,
            VERSION_ANNOTATION: version,
        }

        def render(current: Object | None) -> Object:
            if current is None:
                return {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {
                        "name": self.app.canary_deployment,
                        "labels": metadata_labels,
                        "annotations": annotations,
                        "ownerReferences": [_owner_reference(stable)],
                    },
                    "spec": {"replicas": initial_replicas, **spec},
                }
            self._require_managed(current)
            if current["spec"]["selector"] != selector:
                raise PermanentError(
                    f"{self._describe('canary')} selects {current['spec']['selector']}, but the "
                    f"stable Deployment now needs {selector}; selectors are immutable: run "
                    "/release rollback to remove the canary, then start again"
                )
            current["metadata"].setdefault("labels", {}).update(metadata_labels)
            current["metadata"].setdefault("annotations", {}).update(annotations)
            current["spec"].update(spec)
            return current

        self._deployments.reconcile(self.app.canary_deployment, render)

    def stable_image(self) -> str:
        """The image the stable Deployment's container runs (its pod template's)."""
        image: str = self._container(self._require_stable()["spec"]["template"])["image"]
        return image

    def canary_ready(self) -> bool:
        """True when every canary replica runs the current template and is available."""
        return self.rolled_out(CANARY_TRACK)

    def rolled_out(self, track: Track) -> bool:
        """True when `track` exists and every replica runs its current template, available."""
        deployment = self._deployments.get(self._name(track))
        return deployment is not None and is_rolled_out(deployment)

    def roll_stable(self, version: str) -> None:
        """Start rolling the stable Deployment to `version` (image and version label)."""

        def render(current: Object | None) -> Object:
            if current is None:
                raise PermanentError(f"{self._describe('stable')} not found")
            container = self._container(current["spec"]["template"])
            target = resolve_version(current_image=container["image"], version=version)
            container["image"] = target.image
            template_metadata = current["spec"]["template"]["metadata"]
            pod_labels = template_metadata.get("labels", {})
            keys = version_keys(pod_labels)
            template_metadata["labels"] = with_version(pod_labels, keys, target.label)
            labels = current["metadata"].get("labels", {})
            present = [key for key in keys if key in labels]
            if present:
                current["metadata"]["labels"] = with_version(labels, present, target.label)
            return current

        self._deployments.reconcile(self.app.stable_deployment, render)

    def remove_canary(self) -> None:
        """Delete the canary Deployment (its ReplicaSets and pods follow); absent is fine."""
        canary = self._deployments.get(self.app.canary_deployment)
        if canary is None:
            return
        self._require_managed(canary)
        self._deployments.delete(self.app.canary_deployment)

    def replicas(self, track: Track) -> ReplicaCount:
        """Desired and ready replicas; a canary that does not exist has 0 of both."""
        deployment = self._deployments.get(self._name(track))
        if deployment is None:
            if track == STABLE_TRACK:
                raise PermanentError(f"{self._describe('stable')} not found")
            return ReplicaCount(desired=0, ready=0)
        return ReplicaCount(
            desired=deployment["spec"].get("replicas", 1),
            ready=deployment.get("status", {}).get("readyReplicas", 0),
        )

    def scale(self, track: Track, replicas: int) -> None:
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        self._deployments.merge_patch(self._name(track), {"spec": {"replicas": replicas}})

    def stable_annotation(self, key: str) -> str | None:
        annotations: dict[str, str] = self._require_stable()["metadata"].get("annotations", {})
        return annotations.get(key)

    def set_stable_annotation(self, key: str, value: str | None) -> None:
        """Set (or, with None, remove) one annotation of the stable Deployment."""
        self._deployments.merge_patch(
            self.app.stable_deployment, {"metadata": {"annotations": {key: value}}}
        )

    def wait_rolled_out(self, track: Track, *, deadline_s: float) -> None:
        """Return once `track` is rolled out; raise NotReadyError saying why after `deadline_s`."""
        deadline = time.monotonic() + deadline_s
        while True:
            deployment = self._deployments.get(self._name(track))
            if deployment is not None and is_rolled_out(deployment):
                return
            if time.monotonic() >= deadline:
                raise NotReadyError(self._not_ready_message(track, deployment, deadline_s))
            time.sleep(self._poll_interval_s)

    def _not_ready_message(self, track: Track, deployment: Object | None, deadline_s: float) -> str:
        prefix = f"{self._describe(track)} not ready after {deadline_s:g} s"
        if deployment is None:
            return f"{prefix}: it does not exist"
        status = deployment.get("status", {})
        parts = [
            f"{status.get('availableReplicas', 0)}/{deployment['spec'].get('replicas', 1)} "
            f"available, {status.get('updatedReplicas', 0)} updated"
        ]
        parts += [
            f"{c['type']}={c['status']} {c.get('reason', '')}: {c.get('message', '')}"
            for c in status.get("conditions", [])
            if c["status"] != "True"
        ]
        selector = deployment["spec"]["selector"].get("matchLabels", {})
        pods = self._pods.list_matching(
            label_selector=",".join(f"{k}={v}" for k, v in selector.items())
        )
        parts += [problem for pod in pods if (problem := _pod_problem(pod))][:3]
        return f"{prefix}: " + "; ".join(parts)

    def _require_stable(self) -> Object:
        stable = self._deployments.get(self.app.stable_deployment)
        if stable is None:
            raise PermanentError(f"{self._describe('stable')} not found")
        return stable

    def _container(self, pod_template: Object) -> Object:
        containers: list[Object] = pod_template["spec"]["containers"]
        for container in containers:
            if container["name"] == self.app.container:
                return container
        names = ", ".join(c["name"] for c in containers)
        raise PermanentError(
            f"{self._describe('stable')} has no container {self.app.container!r} (it has: {names})"
        )

    def _canary_selector(self, stable: Object) -> Object:
        selector: Object = copy.deepcopy(stable["spec"]["selector"])
        expressions = selector.get("matchExpressions", [])
        keys = set(selector.get("matchLabels", {})) | {e["key"] for e in expressions}
        if selected := sorted(keys & set(VERSION_LABELS)):
            raise PermanentError(
                f"{self._describe('stable')} selects on the {selected[0]!r} label; "
                "selectors are immutable and versions change every release: select on app "
                "labels only"
            )
        if any(e["key"] == TRACK_LABEL for e in expressions):
            raise PermanentError(
                f"{self._describe('stable')} has a matchExpression on {TRACK_LABEL!r}; "
                f"use matchLabels {TRACK_LABEL}: {STABLE_TRACK} or none"
            )
        selector.setdefault("matchLabels", {})[TRACK_LABEL] = CANARY_TRACK
        return selector

    def _canary_spec(self, stable: Object, target: ResolvedVersion, selector: Object) -> Object:
        """The canary's spec without `replicas`."""
        template = copy.deepcopy(stable["spec"]["template"])
        template["metadata"]["labels"] = self._canary_labels(_pod_labels(stable), target)
        self._container(template)["image"] = target.image
        copied = ("strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit")
        return {
            "selector": selector,
            "template": template,
            **{key: stable["spec"][key] for key in copied if key in stable["spec"]},
        }

    def _require_managed(self, canary: Object) -> None:
        if canary["metadata"].get("labels", {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
            raise PermanentError(
                f"{self._describe('canary')} exists but is not managed by release-bot "
                f"(label {MANAGED_BY_LABEL}={MANAGED_BY} missing): rename or delete it"
            )

    def _describe(self, track: Track) -> str:
        return f"{track} Deployment {self.app.namespace}/{self._name(track)}"


def _pod_labels(deployment: Object) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"].get("labels") or {}
    return dict(labels)


def _owner_reference(stable: Object) -> Object:
    """The stable Deployment owns its canary: deleting it garbage-collects the canary."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": stable["metadata"]["name"],
        "uid": stable["metadata"]["uid"],
        "controller": False,
        "blockOwnerDeletion": False,
    }


def is_rolled_out(deployment: Object) -> bool:
    """Like `kubectl rollout status`: the controller saw the latest spec, and every wanted
    replica runs the current template and is available (no old replica left)."""
    wanted = deployment["spec"].get("replicas", 1)
    status = deployment.get("status", {})
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
    )


def _pod_problem(pod: Object) -> str | None:
    """Why a pod is not ready, in one line, or None when it is ready."""
    status = pod.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    if conditions.get("Ready", {}).get("status") == "True":
        return None
    name = pod["metadata"]["name"]
    scheduled = conditions.get("PodScheduled")
    if scheduled is not None and scheduled["status"] != "True":
        return (
            f"pod {name} {scheduled.get('reason', 'not scheduled')}: {scheduled.get('message', '')}"
        )
    for container in status.get("containerStatuses", []):
        waiting = container.get("state", {}).get("waiting")
        if waiting:
            reason = waiting.get("reason", "waiting")
            return (
                f"pod {name} container {container['name']} {reason}: {waiting.get('message', '')}"
            )
    return f"pod {name} {status.get('phase', 'Pending')}, not ready"
