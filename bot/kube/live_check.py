"""The cluster half of `release-bot check-config --live`; called by bot.entrypoints.check_config.

`check_app_live` reads (never writes) what an app of the apps file names: its namespace, the
stable Deployment and the released container, and the router's objects (replicas: the Service;
istio: the VirtualService with the weighted route and the DestinationRule; gateway-api: the
HTTPRoute with the weighted rule and the stable Service; the canary Service is created at the
first release when missing). For the replicas router it also says which stage weights the
Deployment's pod count can honour: the canary's share is its share of the pods
(bot.kube.routers.replicas.replica_counts), so 1 % of 4 pods runs as 25 %.

Objects are read through bot.kube.client; a missing permission, an apiserver error or an
unreachable apiserver is a problem of the app (the check cannot vouch for it), never a crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kubernetes import client as k8s

from bot.core.apps import AppConfig, GatewayApiRouter, IstioRouter, ReplicasRouter
from bot.core.errors import PermanentError, TemporaryError
from bot.kube.client import (
    DEPLOYMENTS,
    DESTINATION_RULES,
    HTTP_ROUTES,
    NAMESPACES,
    SERVICES,
    VIRTUAL_SERVICES,
    NamespacedResources,
    Object,
    ResourceType,
)
from bot.kube.routers.replicas import BASELINE_ANNOTATION, replica_counts


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
    def read(kind: ResourceType, name: str) -> Object | None:
        return NamespacedResources(api, kind, app.namespace).get(name)

    if NamespacedResources(api, NAMESPACES, "").get(app.namespace) is None:
        yield _problem(f"namespace {app.namespace} does not exist")
        return
    stable = read(DEPLOYMENTS, app.workload)
    where = f"{app.namespace}/{app.workload}"
    if stable is None:
        yield _problem(f"Deployment {where} does not exist")
        return
    yield from _container(stable, app, where)
    router = app.router
    if isinstance(router, ReplicasRouter):
        service = router.service or app.workload
        yield _exists(read(SERVICES, service), f"Service {app.namespace}/{service}")
        yield from _replica_shares(stable, app, where)
    elif isinstance(router, IstioRouter):
        virtual_service = read(VIRTUAL_SERVICES, router.virtual_service)
        name = f"VirtualService {app.namespace}/{router.virtual_service}"
        yield _with_index(virtual_service, name, "http", "route", router.route_index)
        rule = read(DESTINATION_RULES, router.destination_rule)
        yield _exists(rule, f"DestinationRule {app.namespace}/{router.destination_rule}")
    elif isinstance(router, GatewayApiRouter):
        route = read(HTTP_ROUTES, router.http_route)
        name = f"HTTPRoute {app.namespace}/{router.http_route}"
        yield _with_index(route, name, "rules", "rule", router.rule_index)
        stable_service = read(SERVICES, router.stable_service)
        yield _exists(stable_service, f"Service {app.namespace}/{router.stable_service}")
        canary = f"Service {app.namespace}/{router.canary_service}"
        if read(SERVICES, router.canary_service) is None:
            yield _ok(f"{canary} absent: the first release creates it from the stable one")
        else:
            yield _ok(f"{canary} found")


def _ok(message: str) -> LiveFinding:
    return LiveFinding(ok=True, message=message)


def _problem(message: str) -> LiveFinding:
    return LiveFinding(ok=False, message=message)


def _exists(found: Object | None, what: str) -> LiveFinding:
    return _ok(f"{what} found") if found is not None else _problem(f"{what} does not exist")


def _with_index(found: Object | None, what: str, field: str, item: str, index: int) -> LiveFinding:
    if found is None:
        return _problem(f"{what} does not exist")
    count = len((found.get("spec") or {}).get(field) or [])
    if index >= count:
        return _problem(
            f"{what} has {count} {field} entries, so it has no {item} [{index}] to weight "
            f"(the app's router names {item} index {index})"
        )
    return _ok(f"{what} found, {item} [{index}] of {count}")


def _container(stable: Object, app: AppConfig, where: str) -> Iterator[LiveFinding]:
    containers = stable["spec"]["template"]["spec"]["containers"]
    names = [container["name"] for container in containers]
    if app.container is None and len(names) > 1:
        yield _problem(
            f"Deployment {where} has several containers ({', '.join(names)}): "
            "set the app's container to the one to release"
        )
    elif app.container is not None and app.container not in names:
        yield _problem(
            f"Deployment {where} has no container {app.container} (it has {', '.join(names)})"
        )
    else:
        yield _ok(f"Deployment {where} found, container {app.container or names[0]}")


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
