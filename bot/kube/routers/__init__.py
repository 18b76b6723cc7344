"""Traffic routers: how much of an app's traffic reaches its canary. The release reconciler
builds one with `build_router` and drives it through the `TrafficRouter` interface; the step
logic decides every weight, a router only applies what it is told and reports what it sees.

Order of calls in a release:
- start: `workloads.ensure_canary(...)`, `ensure_routes()` (safe to repeat on every tick: it
  never changes the weights of a route that is already split), then `set_weight` per stage;
- success: `set_weight(canary_weight=100, ...)`, `workloads.roll_stable(...)` until stable is
  rolled out, `finalize()`, `workloads.remove_canary()`;
- rollback: `finalize()` then `workloads.remove_canary()`.

Providers: "replicas" (replica ratio behind one Service, no mesh), "istio" (VirtualService
weights between DestinationRule subsets), "gateway-api" (HTTPRoute backendRef weights between
a stable and a canary Service), "none" (nothing is split: blue-green moves traffic by switching a
Service selector). The mesh routers tell stable from canary pods by the `track` label: canary
pods carry `track: canary` (set by CanaryWorkloads) and stable pods must carry `track: stable`,
a label that, unlike the version label, stays put when the stable Deployment is promoted, so the
routing objects are valid before, during and after every release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from kubernetes import client as k8s

from bot.core.errors import PermanentError
from bot.kube.client import Object
from bot.kube.workloads import STABLE_TRACK, TRACK_LABEL, CanaryWorkloads

PROVIDERS = ("replicas", "istio", "gateway-api", "none")

_HEADER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True, slots=True)
class TrafficSplit:
    """Shares of traffic in percent. 0/0 means nothing is served (no ready pod at all).
    `header_routed`: requests carrying the canary header go to the canary whatever the weights."""

    stable_percent: int
    canary_percent: int
    header_routed: bool

    def __post_init__(self) -> None:
        total = self.stable_percent + self.canary_percent
        if min(self.stable_percent, self.canary_percent) < 0 or total not in (0, 100):
            raise ValueError(f"not a traffic split: {self.stable_percent}/{self.canary_percent}")


class TrafficRouter(Protocol):
    def ensure_routes(self) -> None:
        """Create or adopt the routing objects so that a split is possible."""

    def set_weight(self, *, canary_weight: int, header_routed: bool) -> None:
        """Send `canary_weight` % to the canary (0..100), and header-matching requests to the
        canary when `header_routed`; exactly that, never a weight of its own choosing."""

    def current_split(self) -> TrafficSplit:
        """The split the cluster applies now, read back from the cluster."""

    def finalize(self) -> None:
        """100 % to stable, canary routes removed; the routing objects stay valid."""


@dataclass(frozen=True, slots=True)
class CanaryHeader:
    """The request header that reaches the canary in a header-routed stage."""

    name: str = "x-canary"
    value: str = "always"

    def __post_init__(self) -> None:
        if not _HEADER_NAME_RE.fullmatch(self.name):
            raise ValueError(
                f"header name must be lowercase letters, digits and '-': {self.name!r}"
            )
        if not self.value:
            raise ValueError("header value must not be empty")


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """provider "replicas": the one Service in front of the stable and canary pods."""

    service: str
    ready_timeout_s: float = 300.0


@dataclass(frozen=True, slots=True)
class IstioSettings:
    """provider "istio": the VirtualService http route at `route_index` (counting the user's
    routes only) splits `host` between the subsets of `destination_rule`."""

    virtual_service: str
    destination_rule: str
    host: str
    route_index: int = 0
    header: CanaryHeader = field(default_factory=CanaryHeader)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """provider "gateway-api": the HTTPRoute rule at `rule_index` (counting the user's rules
    only) splits between `stable_service` and `canary_service`."""

    http_route: str
    stable_service: str
    canary_service: str
    rule_index: int = 0
    header: CanaryHeader = field(default_factory=CanaryHeader)


RouterSettings = ReplicaSettings | IstioSettings | GatewaySettings
_Settings = TypeVar("_Settings", ReplicaSettings, IstioSettings, GatewaySettings)


def build_router(
    provider: str,
    *,
    api: k8s.ApiClient,
    workloads: CanaryWorkloads,
    settings: RouterSettings | None = None,
) -> TrafficRouter:
    """The router for `provider`; an unknown provider is an error, never a silent default."""
    if provider == "none":
        from bot.kube.routers.noop import NoopRouter

        return NoopRouter()
    if provider == "replicas":
        from bot.kube.routers.replicas import ReplicaRouter

        return ReplicaRouter(api, workloads, _require(ReplicaSettings, provider, settings))
    if provider == "istio":
        from bot.kube.routers.istio import IstioRouter

        return IstioRouter(api, workloads, _require(IstioSettings, provider, settings))
    if provider == "gateway-api":
        from bot.kube.routers.gateway_api import GatewayApiRouter

        return GatewayApiRouter(api, workloads, _require(GatewaySettings, provider, settings))
    raise PermanentError(
        f"unknown traffic router provider {provider!r}; known providers: {', '.join(PROVIDERS)}"
    )


def _require(kind: type[_Settings], provider: str, settings: RouterSettings | None) -> _Settings:
    if not isinstance(settings, kind):
        raise PermanentError(
            f"traffic router provider {provider!r} needs {kind.__name__}, "
            f"got {type(settings).__name__}"
        )
    return settings


def validate_weight(canary_weight: int) -> None:
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"canary weight must be 0..100, got {canary_weight}")


def split_of(*, stable: int, canary: int, header_routed: bool) -> TrafficSplit:
    """Percentages from two shares (route weights or ready pods), rounded half up."""
    total = stable + canary
    if total == 0:
        return TrafficSplit(stable_percent=0, canary_percent=0, header_routed=header_routed)
    canary_percent = (200 * canary + total) // (2 * total)
    return TrafficSplit(
        stable_percent=100 - canary_percent,
        canary_percent=canary_percent,
        header_routed=header_routed,
    )


def require_stable_track(workloads: CanaryWorkloads) -> None:
    """Mesh routers send stable traffic to pods labelled track: stable; without the label the
    stable subset or Service would be empty, and every request to it would fail."""
    if workloads.stable_pod_labels().get(TRACK_LABEL) != STABLE_TRACK:
        app = workloads.app
        raise PermanentError(
            f"stable Deployment {app.namespace}/{app.stable_deployment}: its pod template needs "
            f"the label {TRACK_LABEL}: {STABLE_TRACK} so that stable routing leaves canary pods "
            "out; add it (one rollout of the stable pods) before the first release"
        )


def users_entries(
    entries: list[Object], *, own_name: str, index: int, what: str
) -> tuple[list[Object], int]:
    """`entries` without the one release-bot added (named `own_name`), and `index` checked
    against them: the index a user configures counts only the user's own routes or rules."""
    theirs = [entry for entry in entries if entry.get("name") != own_name]
    if not 0 <= index < len(theirs):
        raise PermanentError(f"{what} has {len(theirs)} entries; index {index} is out of range")
    return theirs, index
