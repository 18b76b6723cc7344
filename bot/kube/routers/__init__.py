"""Traffic routers: how much of an app's traffic reaches its canary. The release reconciler
builds one with `build_router` and drives it through the `TrafficRouter` interface; the step
logic decides every weight, a router only applies what it is told and reports what it sees.

`build_router` takes the app's router model from the apps file (bot.core.apps.Router; "none"
for an app without one) as it is and picks the router class by its `provider`, one module per
router; what the apps file does not say (the replicas router's ready timeout, the canary
header) comes in RouterOptions. MeshRouter is what the istio and gateway-api routers share.

Order of calls in a release:
- start: `workloads.ensure_canary(...)`, `ensure_routes()` (safe to repeat on every tick: it
  never changes the weights of a route that is already split), then `set_weight` per stage;
- success: `set_weight(canary_weight=100, ...)`, `workloads.roll_stable(...)` until stable is
  rolled out, `finalize()`, `workloads.remove_canary()`;
- rollback: `finalize()` then `workloads.remove_canary()`.

Before any of these, preflight calls `check(version)`: every problem that would make
`ensure_routes` refuse, read from the cluster and said as what to change, so a start that could
not route is refused before anything is created. `ensure_routes` runs the same checks and
raises PermanentError on what they find.

Providers: "replicas" (replica ratio behind one Service, no mesh), "istio" (VirtualService
weights between DestinationRule subsets), "gateway-api" (HTTPRoute backendRef weights between
a stable and a canary Service), "none" (an app without a router: nothing is split, so its check
refuses a canary; blue-green moves traffic by switching a Service selector and needs none).
No router needs a change to the stable pod template, so onboarding an app
never restarts its pods: they route by what tells the canary pods from the stable ones today.
Canary pods carry the stable pods' labels except two: the version label, set to the new
version, and `track: canary` (CanaryWorkloads). The istio router keys its subsets on the version
label by default (subset `stable` follows the stable's version: `finalize` moves it once every
stable replica runs the new version, while the canary still takes the traffic) or, with
`subset_label: track`, on `track: stable` / `track: canary`; the gateway-api router's canary
Service selects what the user's stable Service selects with those two labels swapped; the
replicas router needs a Service that selects on neither.
"""

from __future__ import annotations

import copy
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from kubernetes import client as k8s

from bot.core import apps
from bot.core.errors import PermanentError, TemporaryError
from bot.kube.client import NamespacedResources, Object, ResourceType
from bot.kube.workloads import STABLE_TRACK, TRACK_LABEL, VERSION_LABELS, CanaryWorkloads

HEADER_ENTRY_NAME = "release-bot-canary-header"
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
    def check(self, version: str) -> list[str]:
        """What keeps this router from routing a canary of `version`, each problem said as what
        to change; [] when nothing does. Reads only."""

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
class RouterOptions:
    """What the apps file does not say, the same for every app: how long the replicas router
    waits for a side it grew, and the header that reaches the canary of a mesh router."""

    ready_timeout_s: float = 300.0
    header: CanaryHeader = field(default_factory=CanaryHeader)


DEFAULT_OPTIONS = RouterOptions()


RouterConfig = apps.Router


class _RouterClass(Protocol):
    def __call__(
        self,
        config: Any,
        /,
        *,
        api: k8s.ApiClient,
        workloads: CanaryWorkloads,
        options: RouterOptions,
    ) -> TrafficRouter: ...


def build_router(
    config: RouterConfig,
    *,
    api: k8s.ApiClient,
    workloads: CanaryWorkloads,
    options: RouterOptions = DEFAULT_OPTIONS,
) -> TrafficRouter:
    """The router for `config.provider`; an unknown provider is an error, never a silent
    default."""
    router_class = _ROUTERS.get(config.provider)
    if router_class is None:
        raise PermanentError(
            f"unknown traffic router provider {config.provider!r}; "
            f"known providers: {', '.join(PROVIDERS)}"
        )
    return router_class(config, api=api, workloads=workloads, options=options)


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


DISTINGUISHING_LABELS = (TRACK_LABEL, *VERSION_LABELS)
"""The pod labels that differ between stable and canary pods (workloads.CanaryWorkloads)."""


@dataclass(frozen=True, slots=True)
class PodLabels:
    """The stable pods' labels and the canary pods': as they run, or, for a check before a
    start, as a canary of the version being released would get them."""

    stable: Mapping[str, str]
    canary: Mapping[str, str]

    @classmethod
    def of(cls, workloads: CanaryWorkloads, version: str | None = None) -> PodLabels:
        """The running canary's labels when `version` is None (it must exist)."""
        return cls(workloads.stable_pod_labels(), workloads.canary_pod_labels(version))

    def same_version(self, key: str) -> str | None:
        """The problem when the version label `key` does not tell the canary from stable."""
        if self.stable.get(key) != self.canary.get(key):
            return None
        return (
            f"the new version's label `{key}: {self.canary.get(key)}` is the stable pods' too, "
            "so stable and canary could not be routed apart: release a version with another tag"
        )


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service selector or subset labels `selector` selects pods labelled `labels`."""
    return all(labels.get(key) == value for key, value in selector.items())


def show_labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in sorted(labels.items())) + "}"


def refuse(problems: Iterable[str]) -> None:
    """PermanentError with every problem `check` finds, or nothing when there is none."""
    found = list(problems)
    if found:
        raise PermanentError("; ".join(found))


_MeshConfig = TypeVar("_MeshConfig", bound=apps.IstioRouter | apps.GatewayApiRouter)


class MeshRouter(ABC, Generic[_MeshConfig]):
    """The part the istio and gateway-api routers share: one route object (VirtualService,
    HTTPRoute) whose entry at `index` (an http route, a rule; counting the user's entries only)
    is the managed one. Its targets (destinations, backendRefs) are rewritten to [stable,
    canary] with the weights asked; a header-routed stage inserts, right before it, an entry
    named HEADER_ENTRY_NAME: the managed entry's matches, each with the canary header added, and
    the canary as its only target. Every other entry is left as it is.

    The route object is the user's: a missing one is a problem `check` reports, never created
    (a second route object for the same host would fight the user's). A subclass names the
    keys of its object's schema and says what differs: how the targets are built and read, how
    a header joins a match, and the other objects it checks and keeps (a DestinationRule, the
    stable and canary Services), including how they follow the stable's version."""

    ROUTE_KIND: ClassVar[ResourceType]  # the route object: VirtualService, HTTPRoute
    BACKEND_KIND: ClassVar[ResourceType]  # what `_backends` holds: DestinationRule, Service
    ENTRIES: ClassVar[str]  # the spec key of the list of entries: "http", "rules"
    MATCHES: ClassVar[str]  # an entry's key of its list of matches: "match", "matches"
    TARGETS: ClassVar[str]  # an entry's key of its weighted targets: "route", "backendRefs"
    DEFAULT_MATCH: ClassVar[Object]  # what an entry without matches matches
    MISSING_HINT: ClassVar[str]  # said after "<route object> not found: "
    INDEX_FIELD: ClassVar[str]  # the config field naming the managed entry's index

    def __init__(
        self,
        config: _MeshConfig,
        *,
        api: k8s.ApiClient,
        workloads: CanaryWorkloads,
        options: RouterOptions,
    ) -> None:
        namespace = workloads.app.namespace
        self._config: _MeshConfig = config
        self._workloads = workloads
        self._header = options.header
        self._routes = NamespacedResources(api, self.ROUTE_KIND, namespace)
        self._backends = NamespacedResources(api, self.BACKEND_KIND, namespace)
        self._name, self._index = self._managed_entry()

    @abstractmethod
    def _managed_entry(self) -> tuple[str, int]:
        """The route object's name and the index of the managed entry, from the config."""

    @abstractmethod
    def _backend_problems(self, pods: PodLabels) -> list[str]:
        """What keeps the objects the targets name from selecting `pods` apart."""

    @abstractmethod
    def _ensure_backends(self, pods: PodLabels) -> None:
        """Create or update the objects the targets name (checked), before the route is
        adopted."""

    @abstractmethod
    def _follow_stable(self, stable_labels: Mapping[str, str]) -> None:
        """Point what selects stable pods by version at the version the stable pods run."""

    @abstractmethod
    def _targets(self, managed: Object, *, stable_weight: int, canary_weight: int) -> list[Object]:
        """[stable, canary] targets for the managed entry, or PermanentError when it routes
        elsewhere too."""

    @abstractmethod
    def _is_split(self, managed: Object) -> bool:
        """The managed entry already splits between stable and canary: adopting keeps its
        weights."""

    @abstractmethod
    def _shares(self, managed: Object) -> tuple[int, int]:
        """(stable, canary) weights of the managed entry, as the cluster applies them."""

    @abstractmethod
    def _with_header(self, match: Object) -> Object:
        """`match` that also requires the canary header."""

    def check(self, version: str) -> list[str]:
        return self._problems(PodLabels.of(self._workloads, version))

    def ensure_routes(self) -> None:
        pods = PodLabels.of(self._workloads)
        refuse(self._problems(pods))  # before anything is written
        self._ensure_backends(pods)
        self._routes.reconcile(self._name, self._adopt)

    def _problems(self, pods: PodLabels) -> list[str]:
        return [*self._route_problems(), *self._backend_problems(pods)]

    def _route_problems(self) -> list[str]:
        route = self._routes.get(self._name)
        try:
            _, managed = self._users_entries(self._existing(route))
            self._targets(managed, stable_weight=100, canary_weight=0)
        except PermanentError as refused:
            return [str(refused)]
        return []

    def set_weight(self, *, canary_weight: int, header_routed: bool) -> None:
        validate_weight(canary_weight)

        def render(current: Object | None) -> Object:
            route = self._existing(current)
            entries, managed = self._users_entries(route)
            managed[self.TARGETS] = self._targets(
                managed, stable_weight=100 - canary_weight, canary_weight=canary_weight
            )
            if header_routed:
                entries.insert(self._index, self._header_entry(managed))
            route["spec"][self.ENTRIES] = entries
            return route

        self._routes.reconcile(self._name, render)

    def current_split(self) -> TrafficSplit:
        route = self._existing(self._routes.get(self._name))
        entries, managed = self._users_entries(route)
        stable, canary = self._shares(managed)
        return split_of(
            stable=stable,
            canary=canary,
            header_routed=len(entries) < len(route["spec"][self.ENTRIES]),
        )

    def finalize(self) -> None:
        if self._routes.get(self._name) is None:
            return  # nothing routes to the canary
        self._follow_stable(self._workloads.stable_pod_labels())

        def render(current: Object | None) -> Object:
            route = self._existing(current)
            entries, managed = self._users_entries(route)
            managed[self.TARGETS] = self._targets(managed, stable_weight=100, canary_weight=0)[:1]
            route["spec"][self.ENTRIES] = entries
            return route

        self._routes.reconcile(self._name, render)

    def _adopt(self, current: Object | None) -> Object:
        """Make the managed entry splittable (stable 100 %) unless it routes to the canary
        already: a running release keeps its weights."""
        route = self._existing(current)
        _, managed = self._users_entries(route)
        targets = self._targets(managed, stable_weight=100, canary_weight=0)
        if not self._is_split(managed):
            managed[self.TARGETS] = targets
        return route

    def _stable_rolled_out(self, moving_to: Mapping[str, str]) -> None:
        """Before what selects stable pods by version moves to `moving_to`: stable must run it
        on every replica, or the stable target would be short of pods (none, early in a
        rollout) when traffic goes back to it; meanwhile the canary keeps its share."""
        if not self._workloads.rolled_out(STABLE_TRACK):
            raise TemporaryError(
                f"stable Deployment {self._workloads.app.stable_deployment} is still rolling "
                f"out {show_labels(moving_to)}: traffic goes back to stable once it is done"
            )

    def _existing(self, current: Object | None) -> Object:
        if current is None:
            raise PermanentError(
                f"{self._routes.describe(self._name)} not found: {self.MISSING_HINT}"
            )
        return current

    def _users_entries(self, route: Object) -> tuple[list[Object], Object]:
        """The route's entries without the one release-bot added, and the managed one among
        them: the index a user configures counts only the user's own entries."""
        entries = route["spec"].get(self.ENTRIES, [])
        theirs = [entry for entry in entries if entry.get("name") != HEADER_ENTRY_NAME]
        if not 0 <= self._index < len(theirs):
            raise PermanentError(
                f"{self._routes.describe(self._name)} spec.{self.ENTRIES} has {len(theirs)} "
                f"entries; index {self._index} is out of range: set the router's "
                f"{self.INDEX_FIELD} to the entry to split (0: the first)"
            )
        return theirs, theirs[self._index]

    def _header_entry(self, managed: Object) -> Object:
        entry = {
            key: copy.deepcopy(value)
            for key, value in managed.items()
            if key not in ("name", self.MATCHES, self.TARGETS)
        }
        entry["name"] = HEADER_ENTRY_NAME
        entry[self.MATCHES] = [
            self._with_header(match)
            for match in managed.get(self.MATCHES) or [copy.deepcopy(self.DEFAULT_MATCH)]
        ]
        canary = self._targets(managed, stable_weight=0, canary_weight=100)[1]
        entry[self.TARGETS] = [canary]
        return entry


# The router modules import the shared parts above, so they are imported once those exist.
from bot.kube.routers.gateway_api import GatewayApiRouter  # noqa: E402
from bot.kube.routers.istio import IstioRouter  # noqa: E402
from bot.kube.routers.noop import NoopRouter  # noqa: E402
from bot.kube.routers.replicas import ReplicaRouter  # noqa: E402

_ROUTERS: dict[str, _RouterClass] = {
    "replicas": ReplicaRouter,
    "istio": IstioRouter,
    "gateway-api": GatewayApiRouter,
    "none": NoopRouter,
}
PROVIDERS = tuple(_ROUTERS)
