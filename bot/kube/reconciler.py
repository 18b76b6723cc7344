"""The cluster side of a release; the ReleaseService calls KubernetesCluster as its ClusterPort.

`KubernetesCluster` implements bot.core.ports.ClusterPort. The server (bot.entrypoints.server)
builds one around the bot's ApiClient and hands it to the ReleaseService (bot.application),
which calls `stable_version` and `preflight` when a release starts, and `reconcile` after every
transition and on every scheduler tick.

`reconcile` is level-triggered: it reads what the cluster runs, brings it towards what the
release's phase wants (bot.core.release.desired_traffic) and reports what it sees. Every step is an
idempotent call of bot.kube.workloads or bot.kube.routers, so a second call in a row changes
nothing, and a crash between two steps is repaired by the next call, which redoes the steps
still needed. By phase:
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

from collections.abc import Iterable
from dataclasses import dataclass

from kubernetes import client as k8s

from bot.core.apps import AppConfig, ReplicasRouter
from bot.core.errors import PermanentError
from bot.core.images import parse_version
from bot.core.ports import Observation, PreflightResult
from bot.core.release import Phase, Release, desired_traffic
from bot.kube.client import DEPLOYMENTS, NamespacedResources, Object
from bot.kube.preflight import Finding, Severity, run_preflight
from bot.kube.routers import RouterOptions, TrafficRouter, build_router
from bot.kube.verification import VerificationJobs
from bot.kube.workloads import (
    STABLE_TRACK,
    AppWorkload,
    CanaryWorkloads,
    resolve_version,
    version_keys,
)

_CANARY_PHASES = frozenset(
    {Phase.STARTING, Phase.VERIFYING, Phase.RUNNING, Phase.AWAITING_APPROVAL, Phase.PAUSED}
)
_SEVERITY_MARKS = {Severity.BLOCK: "⛔", Severity.WARN: "⚠️", Severity.PASS: "✅"}
_SEVERITY_ORDER = (Severity.BLOCK, Severity.WARN, Severity.PASS)
# The replicas router does not wait for a side it grew: until it is ready, set_weight raises
# TemporaryError having scaled nothing down, and the next pass resumes.
_ROUTER_OPTIONS = RouterOptions(ready_timeout_s=0)


class KubernetesCluster:
    """Releases on Kubernetes through one ApiClient. A reconcile never waits for pods: what is
    not ready yet (a canary, a scaled-up side, a rolling stable) is checked again by the next
    scheduler pass, so one slow rollout holds up no other release."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self._api = api
        self._apps: dict[str, _AppCluster] = {}

    def stable_version(self, app: AppConfig) -> str:
        """The stable pod template's version label, else the tag of the released container."""
        workloads = self._app_cluster(app).workloads
        labels = workloads.stable_pod_labels()
        label = labels.get(version_keys(labels)[0])
        return label or _image_version(workloads.stable_image())

    def preflight(self, app: AppConfig, version: str) -> PreflightResult:
        """Preflight of a canary whose pods peak at the stable's count (at promotion), and of
        everything its router needs."""
        stable = NamespacedResources(self._api, DEPLOYMENTS, app.namespace).get(app.workload)
        replicas = int(stable["spec"].get("replicas", 1)) if stable else 1
        report = run_preflight(
            api=self._api,
            namespace=app.namespace,
            deployment=app.workload,
            container=app.container or (_first_container(stable) if stable else None),
            version=version,
            kind="canary",
            extra_replicas=max(replicas, 1),
            routing=lambda: self._app_cluster(app).router.check(version),
        )
        findings = list(report.findings)
        if stable is not None and replicas == 0:
            findings.append(_scaled_to_zero(app.workload))
        blocked = any(finding.severity is Severity.BLOCK for finding in findings)
        return PreflightResult(blocked=blocked, summary=_preflight_summary(findings))

    def reconcile(self, release: Release, app: AppConfig) -> Observation:
        cluster = self._app_cluster(app)
        if release.phase in _CANARY_PHASES:
            return cluster.run_canary(release)
        if release.phase is Phase.PROMOTING:
            return cluster.promote(release)
        if release.phase in (Phase.ROLLING_BACK, Phase.FAILED):
            return cluster.roll_back(release)
        if release.phase is Phase.SUCCEEDED:
            cluster.retreat(release)
            return Observation(promotion_complete=cluster.promotion_complete(release.version))
        return Observation()  # ROLLED_BACK: the rollback left nothing to do

    def _app_cluster(self, app: AppConfig) -> _AppCluster:
        """Built on first use and again only when the app's configuration changes."""
        cached = self._apps.get(app.name)
        if cached is None or cached.config != app:
            cached = self._apps[app.name] = self._build(app)
        return cached

    def _build(self, app: AppConfig) -> _AppCluster:
        deployments = NamespacedResources(self._api, DEPLOYMENTS, app.namespace)
        container = app.container
        if container is None:
            stable = deployments.get(app.workload)
            if stable is None:
                raise PermanentError(
                    f"stable Deployment {app.namespace}/{app.workload} not found: check the "
                    f"namespace and workload of app {app.name} in the bot's configuration"
                )
            container = _first_container(stable)
        workload = AppWorkload(
            namespace=app.namespace, stable_deployment=app.workload, container=container
        )
        workloads = CanaryWorkloads(self._api, workload)
        router = build_router(
            app.router, api=self._api, workloads=workloads, options=_ROUTER_OPTIONS
        )
        return _AppCluster(
            config=app,
            deployments=deployments,
            workloads=workloads,
            router=router,
            verifications=VerificationJobs(self._api, app),
        )


@dataclass(frozen=True, slots=True)
class _AppCluster:
    """One app's Deployments and traffic router, and the steps of each phase."""

    config: AppConfig
    deployments: NamespacedResources
    workloads: CanaryWorkloads
    router: TrafficRouter
    verifications: VerificationJobs

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


def _first_container(deployment: Object) -> str:
    name: str = deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    return name


def _image_version(image: str) -> str:
    """The tag of `image`; an image pinned by digest only is its own version (a full reference
    that can be released again); no tag at all means `latest`."""
    try:
        reference = parse_version(image)
    except ValueError:
        return image  # the apiserver accepts image strings the reference grammar does not
    if reference.tag:
        return reference.tag
    return image if reference.digest else "latest"


def _preflight_summary(findings: Iterable[Finding]) -> str:
    """One mrkdwn line per finding with its mark, blocking ones first, then warnings."""
    ordered = sorted(findings, key=lambda finding: _SEVERITY_ORDER.index(finding.severity))
    return "\n".join(
        f"{_SEVERITY_MARKS[finding.severity]} {finding.message}" for finding in ordered
    )


def _scaled_to_zero(deployment: str) -> Finding:
    return Finding(
        "replicas",
        Severity.BLOCK,
        f"Deployment `{deployment}` runs 0 replicas: there is no traffic to try the new version "
        "on. Scale it up before releasing.",
    )
