"""The cluster half of `release-bot check-config --live`; called by bot.entrypoints.check_config.

`check_app_live` reads (never writes) what an app of the apps file names: its namespace, the
Deployment that serves production (bot.kube.bluegreen.ProductionSlots: after a blue-green release
it may be `<workload>-green`) and the released container, then asks the app's router the same
`check` preflight asks before a canary starts (bot.kube.routers.TrafficRouter.check), so the two
never disagree: what the router creates at the first release (a DestinationRule, a canary
Service) is no problem, what it needs and cannot create is, said as what to change. For the
replicas router it also says which stage weights the Deployment's pod count can honour: the
canary's share is its share of the pods (bot.kube.routers.replicas.replica_counts), so 1 % of 4
pods runs as 25 %.

Objects are read through bot.kube.client; a missing permission, an apiserver error or an
unreachable apiserver is a problem of the app (the check cannot vouch for it), never a crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kubernetes import client as k8s

from bot.core.apps import AppConfig, NoRouter, ReplicasRouter
from bot.core.argo import RolloutSpecError, rollout_plan
from bot.core.errors import PermanentError, TemporaryError
from bot.core.text import plan_text
from bot.kube.bluegreen import ProductionSlots
from bot.kube.client import DEPLOYMENTS, NAMESPACES, ROLLOUTS, NamespacedResources, Object
from bot.kube.routers import build_router
from bot.kube.routers.replicas import BASELINE_ANNOTATION, replica_counts
from bot.kube.workloads import AppWorkload, CanaryWorkloads

PROBE_VERSION = "release-bot-live-check"
"""The version the router is checked for: any tag other than the one production runs."""


@dataclass(frozen=True, slots=True)
class LiveFinding:
    """One line of the live check: `ok` False is a problem the file or the cluster must fix."""

    ok: bool
    message: str


def check_app_live(api: k8s.ApiClient, app: AppConfig) -> list[LiveFinding]:
    """What the cluster has of everything `app` names, one finding per object or problem."""
    try:
        return list(_checks(api, app))
    except (PermanentError, TemporaryError) as error:
        return [LiveFinding(ok=False, message=f"cannot check against the cluster: {error}")]


def _checks(api: k8s.ApiClient, app: AppConfig) -> Iterator[LiveFinding]:
    if NamespacedResources(api, NAMESPACES, "").get(app.namespace) is None:
        yield _problem(f"namespace {app.namespace} does not exist")
        return
    if app.workload_kind == "Rollout":
        yield from _rollout(api, app)
        return
    name = ProductionSlots(app, api=api).serving_name()
    stable = NamespacedResources(api, DEPLOYMENTS, app.namespace).get(name)
    where = f"{app.namespace}/{name}"
    if stable is None:
        yield _problem(f"Deployment {where} does not exist")
        return
    container = _container(stable, app, where)
    if not container.ok:
        yield container
        return
    yield container
    if isinstance(app.router, NoRouter):
        yield _ok("router none: blue-green only (a canary or hybrid start needs a router)")
        return
    yield from _routing(api, app, stable)
    if isinstance(app.router, ReplicasRouter):
        yield from _replica_shares(stable, app, where)


def _rollout(api: k8s.ApiClient, app: AppConfig) -> Iterator[LiveFinding]:
    """An Argo Rollout: it exists, with its own pod template, the container, steps that make
    the plan its releases walk (what the card will show)."""
    where = f"{app.namespace}/{app.workload}"
    rollout = NamespacedResources(api, ROLLOUTS, app.namespace).get(app.workload)
    if rollout is None:
        yield _problem(f"Rollout {where} does not exist")
        return
    if "template" not in rollout["spec"]:
        yield _problem(f"Rollout {where} has no spec.template (workloadRef is not supported)")
        return
    yield _container(rollout, app, where, noun="Rollout")
    try:
        planned = rollout_plan(rollout["spec"])
    except RolloutSpecError as error:
        yield _problem(f"Rollout {where}: {error}")
        return
    yield _ok(f"Rollout {where} ({planned.strategy}) walks: {plan_text(planned.plan)}")


def _routing(api: k8s.ApiClient, app: AppConfig, stable: Object) -> Iterator[LiveFinding]:
    """The router's own check, as preflight runs it before a canary of `stable`."""
    workload = AppWorkload(
        namespace=app.namespace,
        stable_deployment=stable["metadata"]["name"],
        container=app.container or _names(stable)[0],
    )
    router = build_router(app.router, api=api, workloads=CanaryWorkloads(api, workload))
    try:
        found = router.check(PROBE_VERSION)
    except PermanentError as error:
        found = [str(error)]
    if not found:
        yield _ok(f"router {app.router.provider}: a canary can be routed")
    for problem in found:
        yield _problem(f"router {app.router.provider}: {problem}")


def _ok(message: str) -> LiveFinding:
    return LiveFinding(ok=True, message=message)


def _problem(message: str) -> LiveFinding:
    return LiveFinding(ok=False, message=message)


def _names(stable: Object) -> list[str]:
    return [container["name"] for container in stable["spec"]["template"]["spec"]["containers"]]


def _container(
    stable: Object, app: AppConfig, where: str, *, noun: str = "Deployment"
) -> LiveFinding:
    names = _names(stable)
    if app.container is None and len(names) > 1:
        return _problem(
            f"{noun} {where} has several containers ({', '.join(names)}): "
            "set the app's container to the one to release"
        )
    if app.container is not None and app.container not in names:
        return _problem(
            f"{noun} {where} has no container {app.container} (it has {', '.join(names)})"
        )
    return _ok(f"{noun} {where} found, container {app.container or names[0]}")


def _pods(stable: Object) -> int:
    """The pod count the replicas router splits: its baseline once a release has begun."""
    baseline = (stable["metadata"].get("annotations") or {}).get(BASELINE_ANNOTATION)
    if baseline and baseline.isdigit():
        return int(baseline)
    return int(stable["spec"].get("replicas", 1))


def canary_share(*, pods: int, weight: int) -> float:
    """The share of traffic (0..100) the replicas router gives the canary for `weight` %."""
    targets = replica_counts(total=pods, canary_weight=weight)
    return 100 * targets.canary / (targets.canary + targets.stable)


def _shown(share: float) -> str:
    return f"{round(share, 1):g} %"


def _replica_shares(stable: Object, app: AppConfig, where: str) -> Iterator[LiveFinding]:
    pods = _pods(stable)
    if pods < 1:
        yield _problem(
            f"Deployment {where} runs 0 pods: the replicas router cannot split traffic; "
            "scale it up before releasing"
        )
        return
    achievable = sorted({canary_share(pods=pods, weight=weight) for weight in range(1, 100)})
    plan = app.plan
    wrong = []
    for index, stage in enumerate(plan.stages):
        if not 0 < stage.weight < 100:
            continue
        share = canary_share(pods=pods, weight=stage.weight)
        if round(share) == stage.weight:
            continue
        below = [s for s in achievable if s < stage.weight][-1:]
        above = [s for s in achievable if s > stage.weight][:1]
        near = " or ".join(_shown(s) for s in [*below, *above])
        wrong.append(
            f"stage [{index}] asks {stage.weight} % but runs as {_shown(share)} "
            f"(achievable near it: {near})"
        )
    if wrong:
        yield _problem(
            f"plan {plan.name!r} on the replicas router: with {pods} pods in Deployment "
            f"{where} the canary's share is a whole number of pods (one canary pod is "
            f"{_shown(achievable[0])}); " + "; ".join(wrong) + ". Change the weights, "
            "scale the Deployment, or use router istio or gateway-api"
        )
    else:
        yield _ok(f"plan {plan.name!r}: {pods} pods honour every stage weight")
