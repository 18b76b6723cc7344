"""Istio router (provider "istio"), built by build_router: the weights of one VirtualService
http route between the DestinationRule subsets `stable` (pods labelled track: stable) and
`canary` (track: canary).

Only the managed route changes, and the header route release-bot inserts right before it
(named `release-bot-canary-header`: the managed route's matches, each ANDed with the canary
header, so it catches exactly the requests the managed route would and nothing more; the part
shared with the gateway-api router is MeshRouter in bot.kube.routers). Every other route of the
user's VirtualService, and every other subset of the DestinationRule, is left as it is. A
missing DestinationRule or VirtualService is created.
"""

from __future__ import annotations

import copy
from typing import ClassVar

from bot.core import apps
from bot.core.errors import PermanentError
from bot.kube.client import DESTINATION_RULES, VIRTUAL_SERVICES, Object
from bot.kube.routers import MeshRouter
from bot.kube.workloads import (
    CANARY_TRACK,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    STABLE_TRACK,
    TRACK_LABEL,
)

STABLE_SUBSET = "stable"
CANARY_SUBSET = "canary"
_SUBSETS = {STABLE_SUBSET: STABLE_TRACK, CANARY_SUBSET: CANARY_TRACK}


class IstioRouter(MeshRouter[apps.IstioRouter]):
    ROUTE_KIND = VIRTUAL_SERVICES
    BACKEND_KIND = DESTINATION_RULES
    ENTRIES = "http"
    MATCHES = "match"
    TARGETS = "route"
    DEFAULT_MATCH: ClassVar[Object] = {}
    MISSING_HINT = "; ensure_routes creates it"

    def _managed_entry(self) -> tuple[str, int]:
        return self._config.virtual_service, self._config.route_index

    def _ensure_backends(self) -> None:
        self._backends.reconcile(self._config.destination_rule, self._render_destination_rule)

    def _render_destination_rule(self, current: Object | None) -> Object:
        wanted = [
            {"name": subset, "labels": {TRACK_LABEL: track}} for subset, track in _SUBSETS.items()
        ]
        if current is None:
            return {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {
                    "name": self._config.destination_rule,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                },
                "spec": {"host": self._config.host, "subsets": wanted},
            }
        host = current["spec"].get("host")
        if host != self._config.host:
            raise PermanentError(
                f"{self._backends.describe(self._config.destination_rule)} is for "
                f"host {host!r}, not {self._config.host!r}"
            )
        subsets: list[Object] = current["spec"].setdefault("subsets", [])
        for subset in wanted:
            existing = next((s for s in subsets if s["name"] == subset["name"]), None)
            if existing is None:
                subsets.append(subset)
            else:
                existing["labels"] = subset["labels"]
        return current

    def _created(self) -> Object:
        """A VirtualService for the host with one route, all of it to stable."""
        return {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {
                "name": self._config.virtual_service,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            },
            "spec": {
                "hosts": [self._config.host],
                "http": [{"route": self._split(self._host_entry(), 100, 0)}],
            },
        }

    def _is_split(self, managed: Object) -> bool:
        subsets = {entry["destination"].get("subset") for entry in managed.get("route", [])}
        return subsets == set(_SUBSETS)

    def _shares(self, managed: Object) -> tuple[int, int]:
        destinations = managed.get("route", [])
        shares = {STABLE_SUBSET: 0, CANARY_SUBSET: 0}
        for entry in destinations:
            subset = entry["destination"].get("subset")
            weight = entry.get("weight", 100 if len(destinations) == 1 else 0)
            shares[CANARY_SUBSET if subset == CANARY_SUBSET else STABLE_SUBSET] += weight
        return shares[STABLE_SUBSET], shares[CANARY_SUBSET]

    def _targets(self, managed: Object, *, stable_weight: int, canary_weight: int) -> list[Object]:
        """[stable, canary] destinations of the managed route, keeping the fields (port,
        headers) of the user's destination for the host."""
        where = f"{self._routes.describe(self._name)} http route"
        if "route" not in managed:
            raise PermanentError(f"{where} {managed.get('name', '')!r} has no destinations")
        hosts = {entry["destination"]["host"] for entry in managed["route"]}
        if hosts - {self._config.host}:
            raise PermanentError(
                f"{where} {managed.get('name', '')!r} also routes to {sorted(hosts)}; "
                f"release-bot splits a route only when all of it goes to {self._config.host!r}"
            )
        template = managed["route"][0] if managed["route"] else self._host_entry()
        return self._split(template, stable_weight, canary_weight)

    def _host_entry(self) -> Object:
        return {"destination": {"host": self._config.host}}

    @staticmethod
    def _split(template: Object, stable_weight: int, canary_weight: int) -> list[Object]:
        entry = copy.deepcopy(template)
        return [
            {**entry, "destination": {**entry["destination"], "subset": subset}, "weight": weight}
            for subset, weight in ((STABLE_SUBSET, stable_weight), (CANARY_SUBSET, canary_weight))
        ]

    def _with_header(self, match: Object) -> Object:
        header = {self._header.name: {"exact": self._header.value}}
        return {**match, "headers": {**match.get("headers", {}), **header}}
