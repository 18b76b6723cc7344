"""The cluster side of a release; the ReleaseService calls KubernetesCluster as its ClusterPort.

`KubernetesCluster` implements bot.core.ports.ClusterPort. The server (bot.entrypoints.server)
builds one around the bot's ApiClient and hands it to the ReleaseService (bot.application),
which calls `stable_version` and `preflight` when a release starts, and `reconcile` after every
transition and on every scheduler tick. Each call goes to the strategy of the release's kind
(`build_strategy`: the canary's below, blue-green's in bot.kube.bluegreen, an Argo Rollout's in
bot.kube.argo), one per app and kind.

The canary strategy, by phase:

`reconcile` is level-triggered: it reads what the cluster runs, brings it towards what the
release's phase wants (bot.core.release.desired_traffic) and reports what it sees. Every step is an
idempotent call of bot.kube.workloads or bot.kube.routers, so a second call in a row changes
nothing, and a crash between two steps is repaired by the next call, which redoes the steps
still needed.
- STARTING, RUNNING, AWAITING_APPROVAL, PAUSED: canary, routes, the stage's weight;
- VERIFYING: the same at the traffic held, and the gate's verification Job (bot.kube.verification),
  whose status the observation carries;
- PROMOTING: canary takes 100 %, stable is rolled to the new version, traffic goes back to
  stable and the canary is removed (skipped once stable runs the version without a canary);
- ROLLING_BACK, FAILED, SUCCEEDED: traffic back to stable first, then the canary is removed;
  the release's verification Jobs are deleted with it (PROMOTING too, once stable has rolled);
- ROLLED_BACK: nothing.
TemporaryError and PermanentError from the kube layer propagate: the service retries the first
on the next tick and fails the release on the second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from kubernetes import client as k8s

from bot.core.apps import AppConfig, ReplicasRouter
from bot.core.errors import PermanentError
from bot.core.ports import Observation, PreflightResult
from bot.core.release import Phase, Release, ReleaseKind, desired_traffic
from bot.kube.argo import argo_strategy
from bot.kube.bluegreen import BlueGreenStrategy, PreviewService, ProductionSlots
from bot.kube.client import DEPLOYMENTS, SERVICES, NamespacedResources, Object
from bot.kube.preflight import Finding, Severity, preflight_result, run_preflight
from bot.kube.routers import RouterOptions, TrafficRouter, build_router
from bot.kube.verification import VerificationJobs
from bot.kube.workloads import (
    STABLE_TRACK,
    AppWorkload,
    CanaryWorkloads,
    image_version,
    resolve_version,
    version_keys,
)

_CANARY_PHASES = frozenset(
    {Phase.STARTING, Phase.VERIFYING, Phase.RUNNING, Phase.AWAITING_APPROVAL, Phase.PAUSED}
)
# The replicas router does not wait for a side it grew: until it is ready, set_weight raises
# TemporaryError having scaled nothing down, and the next pass resumes.
_ROUTER_OPTIONS = RouterOptions(ready_timeout_s=0)


class ReleaseStrategy(Protocol):
    """One app's releases of one kind on the cluster."""

    @property
    def config(self) -> AppConfig:
        """The app's configuration the strategy was built from."""
        ...

    def stable_version(self) -> str:
        """The version production runs now."""
        ...

    def preflight(self, version: str) -> PreflightResult: ...

    def reconcile(self, release: Release) -> Observation: ...


class KubernetesCluster:
    """Releases on Kubernetes through one ApiClient. A reconcile never waits for pods: what is
    not ready yet (a canary, a scaled-up side, a rolling stable) is checked again by the next
    scheduler pass, so one slow rollout holds up no other release."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self._api = api
        self._strategies: dict[tuple[str, ReleaseKind], ReleaseStrategy] = {}

    def stable_version(self, app: AppConfig, kind: ReleaseKind) -> str:
        return self._strategy(app, kind, starting=True).stable_version()

    def preflight(self, app: AppConfig, version: str, kind: ReleaseKind) -> PreflightResult:
        return self._strategy(app, kind, starting=True).preflight(version)

    def reconcile(self, release: Release, app: AppConfig) -> Observation:
        return self._strategy(app, release.kind).reconcile(release)

    def _strategy(
        self, app: AppConfig, kind: ReleaseKind, *, starting: bool = False
    ) -> ReleaseStrategy:
        """Built on first use, again when the app's configuration changes, and at every start:
        which Deployment slot serves production (ProductionSlots) may have changed since, by a
        blue-green release; within one release it does not change."""
        cached = self._strategies.get((app.name, kind))
        if starting or cached is None or cached.config != app:
            cached = self._strategies[app.name, kind] = build_strategy(kind, self._api, app)
        return cached


def build_strategy(kind: str, api: k8s.ApiClient, app: AppConfig) -> ReleaseStrategy:
    """The strategy for release kind `kind`; an unknown kind is an error, never a default."""
    build = _STRATEGIES.get(kind)
    if build is None:
        known = ", ".join(_STRATEGIES)
        raise PermanentError(f"unknown release kind {kind!r}; known kinds: {known}")
    return build(api, app)


def _canary_strategy(api: k8s.ApiClient, app: AppConfig) -> _CanaryStrategy:
    """The canary of the Deployment slot that serves production (after a blue-green release
    that may be `<workload>-green`)."""
    deployments = NamespacedResources(api, DEPLOYMENTS, app.namespace)
    stable_name = ProductionSlots(app, api=api).serving_name()
    container = app.container
    if container is None:
        stable = deployments.get(stable_name)
        if stable is None:
            raise PermanentError(
                f"stable Deployment {app.namespace}/{stable_name} not found: check the "
                f"namespace and workload of app {app.name} in the bot's configuration"
            )
        container = _first_container(stable)
    workload = AppWorkload(
        namespace=app.namespace, stable_deployment=stable_name, container=container
    )
    workloads = CanaryWorkloads(api, workload)
    router = build_router(app.router, api=api, workloads=workloads, options=_ROUTER_OPTIONS)
    return _CanaryStrategy(
        config=app,
        api=api,
        deployments=deployments,
        workloads=workloads,
        router=router,
        verifications=VerificationJobs(api, app),
    )


def _blue_green_strategy(api: k8s.ApiClient, app: AppConfig) -> ReleaseStrategy:
    return BlueGreenStrategy(app, api=api)


def _hybrid_strategy(api: k8s.ApiClient, app: AppConfig) -> ReleaseStrategy:
    services = NamespacedResources(api, SERVICES, app.namespace)
    preview = PreviewService(
        services,
        name=app.bluegreen.preview_service_of(app.name),
        production=app.bluegreen.service or app.workload,
    )
    return _HybridStrategy(canary=_canary_strategy(api, app), preview=preview)


_STRATEGIES: dict[str, Callable[[k8s.ApiClient, AppConfig], ReleaseStrategy]] = {
    ReleaseKind.CANARY: _canary_strategy,
    ReleaseKind.BLUE_GREEN: _blue_green_strategy,
    ReleaseKind.HYBRID: _hybrid_strategy,
    ReleaseKind.ARGO_CANARY: partial(argo_strategy, ReleaseKind.ARGO_CANARY),
    ReleaseKind.ARGO_BLUE_GREEN: partial(argo_strategy, ReleaseKind.ARGO_BLUE_GREEN),
}


@dataclass(frozen=True, slots=True)
class _CanaryStrategy:
    """One app's Deployments and traffic router, and the steps of each phase."""

    config: AppConfig
    api: k8s.ApiClient
    deployments: NamespacedResources
    workloads: CanaryWorkloads
    router: TrafficRouter
    verifications: VerificationJobs

    def stable_version(self) -> str:
        """The stable pod template's version label, else the tag of the released container."""
        labels = self.workloads.stable_pod_labels()
        label = labels.get(version_keys(labels)[0])
        return label or image_version(self.workloads.stable_image())

    def preflight(self, version: str) -> PreflightResult:
        return preflight_result(self.findings(version))

    def findings(self, version: str) -> list[Finding]:
        """Preflight of a canary whose pods peak at the stable's count (at promotion), and of
        everything its router needs."""
        app = self.config
        stable_name = self.workloads.app.stable_deployment
        stable = self.deployments.get(stable_name)
        replicas = int(stable["spec"].get("replicas", 1)) if stable else 1
        report = run_preflight(
            api=self.api,
            namespace=app.namespace,
            deployment=stable_name,
            container=app.container or (_first_container(stable) if stable else None),
            version=version,
            kind="canary",
            extra_replicas=max(replicas, 1),
            routing=lambda: self.router.check(version),
        )
        findings = list(report.findings)
        if stable is not None and replicas == 0:
            findings.append(_scaled_to_zero(stable_name))
        return findings

    def reconcile(self, release: Release) -> Observation:
        if release.phase in _CANARY_PHASES:
            return self.run_canary(release)
        if release.phase is Phase.PROMOTING:
            return self.promote(release)
        if release.phase in (Phase.ROLLING_BACK, Phase.FAILED):
            return self.roll_back(release)
        if release.phase is Phase.SUCCEEDED:
            self.retreat(release)
            return Observation(promotion_complete=self.promotion_complete(release.version))
        return Observation()  # ROLLED_BACK: the rollback left nothing to do

    def run_canary(self, release: Release) -> Observation:
        """Canary running, routes in place, the phase's weight (the held one while a verification
        Job runs, which it starts or reads); never waits for the canary nor for the Job."""
        self._ensure_canary(release.version)
        self._route(release)
        verification = self.verifications.run(release) if release.verification else None
        return Observation(canary_ready=self.workloads.canary_ready(), verification=verification)

    def promote(self, release: Release) -> Observation:
        """Canary takes all traffic while stable rolls to the version, then stable takes it back.

        Never waits: each call moves one step further and the scheduler's next pass checks
        again, so a slow rollout holds up no other release. The canary must be ready before it
        takes 100 %: it is, unless it was recreated since."""
        version = release.version
        if not self._runs_without_canary(version):
            if not self._stable_on(version):  # once stable rolls, the canary's part is done
                self._ensure_canary(version)
                if not self.workloads.canary_ready():
                    return Observation()
                self._route(release)
                self.workloads.roll_stable(version)
            if not self.workloads.rolled_out(STABLE_TRACK):
                return Observation()
            self.retreat(release)
        return Observation(promotion_complete=self.promotion_complete(version))

    def roll_back(self, release: Release) -> Observation:
        self.retreat(release)
        split = self.router.current_split()
        stable_only = split.stable_percent == 100 and not split.header_routed
        return Observation(rollback_complete=stable_only and self._canary_gone())

    def retreat(self, release: Release) -> None:
        """Traffic back to stable first, then the canary removed; nothing else in between.
        The release's verification Jobs go last: they serve no traffic."""
        self.router.finalize()
        self.workloads.remove_canary()
        self.verifications.remove(release.id)

    def promotion_complete(self, version: str) -> bool:
        return self._runs_without_canary(version) and self.workloads.rolled_out(STABLE_TRACK)

    def _ensure_canary(self, version: str) -> None:
        """The replicas router scales the canary itself, so it starts empty (or it would take
        traffic at once); mesh routers send traffic by weight to a canary as big as stable."""
        if isinstance(self.config.router, ReplicasRouter):
            initial_replicas = 0
        else:
            initial_replicas = self.workloads.replicas(STABLE_TRACK).desired
        self.workloads.ensure_canary(version, initial_replicas=initial_replicas)

    def _route(self, release: Release) -> None:
        desired = desired_traffic(release)
        self.router.ensure_routes()
        self.router.set_weight(
            canary_weight=desired.canary_weight, header_routed=desired.header_routing
        )

    def _runs_without_canary(self, version: str) -> bool:
        return self._stable_on(version) and self._canary_gone()

    def _stable_on(self, version: str) -> bool:
        """The stable Deployment's template runs `version` (its pods may still be rolling)."""
        image = self.workloads.stable_image()
        return resolve_version(current_image=image, version=version).image == image

    def _canary_gone(self) -> bool:
        return self.deployments.get(self.workloads.app.canary_deployment) is None


@dataclass(frozen=True, slots=True)
class _HybridStrategy:
    """A canary whose canary is green: as big as blue from the start (a mesh router keeps it at
    0 % meanwhile), reachable through its preview Service until the release ends; then the
    canary's stages shift production traffic onto it."""

    canary: _CanaryStrategy
    preview: PreviewService

    @property
    def config(self) -> AppConfig:
        return self.canary.config

    def stable_version(self) -> str:
        return self.canary.stable_version()

    def preflight(self, version: str) -> PreflightResult:
        findings = [*self.canary.findings(version), *self.preview.findings(self.config.name)]
        if isinstance(self.config.router, ReplicasRouter):
            findings.append(_green_needs_a_mesh(self.config.name))
        return preflight_result(findings)

    def reconcile(self, release: Release) -> Observation:
        seen = self.canary.reconcile(release)
        if release.phase in _CANARY_PHASES or release.phase is Phase.PROMOTING:
            canary = self.canary.deployments.get(self.canary.workloads.app.canary_deployment)
            if canary is not None:
                self.preview.ensure(dict(canary["spec"]["selector"]["matchLabels"]))
        else:
            self.preview.remove()
        return seen


def _green_needs_a_mesh(app: str) -> Finding:
    return Finding(
        "router",
        Severity.BLOCK,
        f"a hybrid release keeps green as big as blue with no production traffic until the "
        f"preview is approved; router `replicas` splits by pod count and cannot: give "
        f"apps.{app}.router provider istio or gateway-api, or run /release bluegreen.",
    )


def _first_container(deployment: Object) -> str:
    name: str = deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    return name


def _scaled_to_zero(deployment: str) -> Finding:
    return Finding(
        "replicas",
        Severity.BLOCK,
        f"Deployment `{deployment}` runs 0 replicas: there is no traffic to try the new version "
        "on. Scale it up before releasing.",
    )
