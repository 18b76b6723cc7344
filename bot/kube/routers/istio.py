"""Istio router (provider "istio"), built by build_router: the weights of one VirtualService
http route between the DestinationRule subsets `stable` (pods labelled track: stable) and
`canary` (track: canary).

Only the managed route changes, and the header route release-bot inserts right before it
(named `release-bot-canary-header`: the managed route's matches, each ANDed with the canary
header, so it catches exactly the requests the managed route would and nothing more). Every
other route of the user's VirtualService, and every other subset of the DestinationRule, is
left as it is. A missing DestinationRule or VirtualService is created.
"""

from __future__ import annotations

import copy

from kubernetes import client as k8s

from bot.core.errors import PermanentError
from bot.kube.client import DESTINATION_RULES, VIRTUAL_SERVICES, NamespacedResources, Object
from bot.kube.routers import (
    IstioSettings,
    TrafficSplit,
    require_stable_track,
    split_of,
    users_entries,
    validate_weight,
)
from bot.kube.workloads import (
    CANARY_TRACK,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    STABLE_TRACK,
    TRACK_LABEL,
    CanaryWorkloads,
)

HEADER_ROUTE_NAME = "release-bot-canary-header"
STABLE_SUBSET = "stable"
CANARY_SUBSET = "canary"
_SUBSETS = {STABLE_SUBSET: STABLE_TRACK, CANARY_SUBSET: CANARY_TRACK}


class IstioRouter:
    def __init__(
        self, api: k8s.ApiClient, workloads: CanaryWorkloads, settings: IstioSettings
    ) -> None:
        self._workloads = workloads
        self._settings = settings
        namespace = workloads.app.namespace
        self._virtual_services = NamespacedResources(api, VIRTUAL_SERVICES, namespace)
        self._destination_rules = NamespacedResources(api, DESTINATION_RULES, namespace)

    def ensure_routes(self) -> None:
        require_stable_track(self._workloads)
        self._destination_rules.reconcile(
            self._settings.destination_rule, self._render_destination_rule
        )
        self._virtual_services.reconcile(self._settings.virtual_service, self._adopt)

    def set_weight(self, *, canary_weight: int, header_routed: bool) -> None:
        validate_weight(canary_weight)

        def render(current: Object | None) -> Object:
            virtual_service = self._existing(current)
            routes, index = self._users_routes(virtual_service)
            managed = routes[index]
            managed["route"] = self._destinations(
                managed, stable_weight=100 - canary_weight, canary_weight=canary_weight
            )
            if header_routed:
                routes.insert(index, self._header_route(managed))
            virtual_service["spec"]["http"] = routes
            return virtual_service

        self._virtual_services.reconcile(self._settings.virtual_service, render)

    def current_split(self) -> TrafficSplit:
        virtual_service = self._existing(self._virtual_services.get(self._settings.virtual_service))
        routes, index = self._users_routes(virtual_service)
        destinations = routes[index].get("route", [])
        shares = {STABLE_SUBSET: 0, CANARY_SUBSET: 0}
        for entry in destinations:
            subset = entry["destination"].get("subset")
            weight = entry.get("weight", 100 if len(destinations) == 1 else 0)
            shares[CANARY_SUBSET if subset == CANARY_SUBSET else STABLE_SUBSET] += weight
        return split_of(
            stable=shares[STABLE_SUBSET],
            canary=shares[CANARY_SUBSET],
            header_routed=len(routes) < len(virtual_service["spec"]["http"]),
        )

    def finalize(self) -> None:
        if self._virtual_services.get(self._settings.virtual_service) is None:
            return  # nothing routes to the canary

        def render(current: Object | None) -> Object:
            virtual_service = self._existing(current)
            routes, index = self._users_routes(virtual_service)
            managed = routes[index]
            managed["route"] = self._destinations(managed, stable_weight=100, canary_weight=0)[:1]
            virtual_service["spec"]["http"] = routes
            return virtual_service

        self._virtual_services.reconcile(self._settings.virtual_service, render)

    def _render_destination_rule(self, current: Object | None) -> Object:
        wanted = [
            {"name": subset, "labels": {TRACK_LABEL: track}} for subset, track in _SUBSETS.items()
        ]
        if current is None:
            return {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {
                    "name": self._settings.destination_rule,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                },
                "spec": {"host": self._settings.host, "subsets": wanted},
            }
        host = current["spec"].get("host")
        if host != self._settings.host:
            raise PermanentError(
                f"{self._destination_rules.describe(self._settings.destination_rule)} is for "
                f"host {host!r}, not {self._settings.host!r}"
            )
        subsets: list[Object] = current["spec"].setdefault("subsets", [])
        for subset in wanted:
            existing = next((s for s in subsets if s["name"] == subset["name"]), None)
            if existing is None:
                subsets.append(subset)
            else:
                existing["labels"] = subset["labels"]
        return current

    def _adopt(self, current: Object | None) -> Object:
        """Create the VirtualService, or make its managed route splittable (stable 100 %)
        unless it already routes to both subsets: a running release keeps its weights."""
        if current is None:
            return {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {
                    "name": self._settings.virtual_service,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                },
                "spec": {
                    "hosts": [self._settings.host],
                    "http": [{"route": self._split(self._host_entry(), 100, 0)}],
                },
            }
        routes, index = self._users_routes(current)
        managed = routes[index]
        destinations = self._destinations(managed, stable_weight=100, canary_weight=0)
        subsets = {entry["destination"].get("subset") for entry in managed.get("route", [])}
        if subsets != set(_SUBSETS):
            managed["route"] = destinations
        return current

    def _existing(self, current: Object | None) -> Object:
        if current is None:
            raise PermanentError(
                f"{self._virtual_services.describe(self._settings.virtual_service)} not found; "
                "ensure_routes creates it"
            )
        return current

    def _users_routes(self, virtual_service: Object) -> tuple[list[Object], int]:
        return users_entries(
            virtual_service["spec"].get("http", []),
            own_name=HEADER_ROUTE_NAME,
            index=self._settings.route_index,
            what=f"{self._virtual_services.describe(self._settings.virtual_service)} spec.http",
        )

    def _destinations(
        self, managed: Object, *, stable_weight: int, canary_weight: int
    ) -> list[Object]:
        """[stable, canary] destinations of the managed route, keeping the fields (port,
        headers) of the user's destination for the host."""
        where = f"{self._virtual_services.describe(self._settings.virtual_service)} http route"
        if "route" not in managed:
            raise PermanentError(f"{where} {managed.get('name', '')!r} has no destinations")
        hosts = {entry["destination"]["host"] for entry in managed["route"]}
        if hosts - {self._settings.host}:
            raise PermanentError(
                f"{where} {managed.get('name', '')!r} also routes to {sorted(hosts)}; "
                f"release-bot splits a route only when all of it goes to {self._settings.host!r}"
            )
        template = managed["route"][0] if managed["route"] else self._host_entry()
        return self._split(template, stable_weight, canary_weight)

    def _host_entry(self) -> Object:
        return {"destination": {"host": self._settings.host}}

    @staticmethod
    def _split(template: Object, stable_weight: int, canary_weight: int) -> list[Object]:
        entry = copy.deepcopy(template)
        return [
            {**entry, "destination": {**entry["destination"], "subset": subset}, "weight": weight}
            for subset, weight in ((STABLE_SUBSET, stable_weight), (CANARY_SUBSET, canary_weight))
        ]

    def _header_route(self, managed: Object) -> Object:
        header = self._settings.header
        route = {
            key: copy.deepcopy(value)
            for key, value in managed.items()
            if key not in ("name", "match", "route")
        }
        route["name"] = HEADER_ROUTE_NAME
        route["match"] = [
            {**match, "headers": {**match.get("headers", {}), header.name: {"exact": header.value}}}
            for match in managed.get("match") or [{}]
        ]
        canary = self._destinations(managed, stable_weight=0, canary_weight=100)[1]
        route["route"] = [canary]
        return route
