"""Replica-ratio router (provider "replicas"), built by build_router: no mesh, one Service in
front of both Deployments, so each ready pod gets about the same share of connections and the
canary's share is its share of the ready pods.

How a weight becomes replica counts (`replica_counts`): N is the stable Deployment's replica
count when ensure_routes first ran (kept in its annotation `release-bot.io/baseline-replicas`,
so it survives restarts while the stable is scaled down). Total capacity stays N:
- 0 %: N stable, 0 canary; 100 %: 0 stable, N canary;
- otherwise canary = N * weight / 100 rounded half up, but at least 1 and at most N - 1, and
  stable = N - canary. With few replicas the share achieved differs from the one asked:
  N = 4 gives 25 % for 5 %, 50 % for 50 %, 75 % for 95 %. `current_split` reports the share
  achieved, from the pods that are ready now, never the weight asked.
- N = 1 cannot be split within capacity: any weight strictly between 0 and 100 runs 1 + 1.
Scaling grows first: the side that gains pods is scaled up and must be ready before the other
side is scaled down, so capacity never dips. If it is not ready within the RouterOptions'
`ready_timeout_s` the call raises TemporaryError with nothing scaled down; calling again
resumes.

Header routing is impossible here: every pod behind the Service gets its share of all requests,
so `header_routed=True` is refused with a PermanentError (at 0 % the canary has no pods at all),
and current_split always reports header_routed=False. An HPA on the stable Deployment would
fight the scaling; do not combine the two.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client as k8s

from bot.core import apps
from bot.core.errors import PermanentError, TemporaryError
from bot.kube.client import SERVICES, NamespacedResources
from bot.kube.routers import (
    PodLabels,
    RouterOptions,
    TrafficSplit,
    refuse,
    selects,
    show_labels,
    split_of,
    validate_weight,
)
from bot.kube.workloads import (
    CANARY_TRACK,
    STABLE_TRACK,
    CanaryWorkloads,
    NotReadyError,
    Track,
)

BASELINE_ANNOTATION = "release-bot.io/baseline-replicas"
_TRACKS: tuple[Track, Track] = (STABLE_TRACK, CANARY_TRACK)


@dataclass(frozen=True, slots=True)
class ReplicaTargets:
    stable: int
    canary: int

    def of(self, track: Track) -> int:
        return self.stable if track == STABLE_TRACK else self.canary


def replica_counts(*, total: int, canary_weight: int) -> ReplicaTargets:
    """Replica counts for `canary_weight` % out of `total` pods (see the module docstring)."""
    validate_weight(canary_weight)
    if total < 1:
        raise ValueError(f"total replicas must be >= 1, got {total}")
    if canary_weight == 0:
        return ReplicaTargets(stable=total, canary=0)
    if canary_weight == 100:
        return ReplicaTargets(stable=0, canary=total)
    if total == 1:
        return ReplicaTargets(stable=1, canary=1)
    canary = min(total - 1, max(1, (total * canary_weight + 50) // 100))
    return ReplicaTargets(stable=total - canary, canary=canary)


class ReplicaRouter:
    def __init__(
        self,
        config: apps.ReplicasRouter,
        *,
        api: k8s.ApiClient,
        workloads: CanaryWorkloads,
        options: RouterOptions,
    ) -> None:
        self._workloads = workloads
        self._service = config.service or workloads.app.stable_deployment
        self._ready_timeout_s = options.ready_timeout_s
        self._services = NamespacedResources(api, SERVICES, workloads.app.namespace)

    def check(self, version: str) -> list[str]:
        return self._service_problems(PodLabels.of(self._workloads, version))

    def ensure_routes(self) -> None:
        """Check the Service selects stable and canary pods alike; record N once."""
        refuse(self._service_problems(PodLabels.of(self._workloads)))
        if self._baseline() is None:
            total = self._workloads.replicas(STABLE_TRACK).desired
            if total < 1:
                raise PermanentError(
                    f"stable Deployment {self._workloads.app.stable_deployment} has 0 replicas: "
                    "there is no traffic to split"
                )
            self._workloads.set_stable_annotation(BASELINE_ANNOTATION, str(total))

    def set_weight(self, *, canary_weight: int, header_routed: bool) -> None:
        validate_weight(canary_weight)
        if header_routed:
            raise PermanentError(
                "traffic router 'replicas' cannot route by header: every pod behind the Service "
                "gets its share of all requests. Use provider istio or gateway-api for a "
                "header-routed stage, or a plan without one"
            )
        total = self._baseline()
        if total is None:
            raise PermanentError(
                f"stable Deployment {self._workloads.app.stable_deployment} has no "
                f"{BASELINE_ANNOTATION} annotation: ensure_routes must run first"
            )
        self._scale_to(replica_counts(total=total, canary_weight=canary_weight))

    def current_split(self) -> TrafficSplit:
        return split_of(
            stable=self._workloads.replicas(STABLE_TRACK).ready,
            canary=self._workloads.replicas(CANARY_TRACK).ready,
            header_routed=False,
        )

    def finalize(self) -> None:
        """Stable back to N (ready first), canary to 0, the baseline annotation removed."""
        baseline = self._baseline()
        total = baseline or self._workloads.replicas(STABLE_TRACK).desired
        self._scale_to(ReplicaTargets(stable=total, canary=0))
        if baseline is not None:
            self._workloads.set_stable_annotation(BASELINE_ANNOTATION, None)

    def _scale_to(self, targets: ReplicaTargets) -> None:
        current = {track: self._workloads.replicas(track).desired for track in _TRACKS}
        growing = [track for track in _TRACKS if targets.of(track) > current[track]]
        for track in growing:
            self._workloads.scale(track, targets.of(track))
        for track in growing:
            try:
                self._workloads.wait_rolled_out(track, deadline_s=self._ready_timeout_s)
            except NotReadyError as error:
                raise TemporaryError(
                    f"{error}; nothing was scaled down, the next call resumes"
                ) from error
        for track in _TRACKS:
            if targets.of(track) < current[track]:
                self._workloads.scale(track, targets.of(track))

    def _baseline(self) -> int | None:
        value = self._workloads.stable_annotation(BASELINE_ANNOTATION)
        if value is None:
            return None
        if not value.isdigit() or int(value) < 1:
            raise PermanentError(f"annotation {BASELINE_ANNOTATION}={value!r} is not a count >= 1")
        return int(value)

    def _service_problems(self, pods: PodLabels) -> list[str]:
        name = self._service
        service = self._services.get(name)
        if service is None:
            return [
                f"{self._services.describe(name)} not found: name the Service in front of the "
                "app's pods in the router's service (default: the workload's name)"
            ]
        selector: dict[str, str] = service["spec"].get("selector") or {}
        differing = sorted(key for key in selector if pods.stable.get(key) != pods.canary.get(key))
        problem = None
        if not selector:
            problem = "has no selector"
        elif not selects(selector, pods.stable):
            problem = f"does not select the stable pods (labelled {show_labels(pods.stable)})"
        elif differing:
            problem = (
                f"selects on {differing}, which differ between stable and canary pods: "
                f"drop {differing} from its selector"
            )
        if problem is None:
            return []
        return [
            f"{self._services.describe(name)} (selector {show_labels(selector)}) {problem}; the "
            "replicas router needs one Service selecting stable and canary pods alike"
        ]
