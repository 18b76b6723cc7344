"""Gateway API router (provider "gateway-api"), built by build_router: the backendRef weights
of one HTTPRoute rule between a stable Service (selecting track: stable pods) and a canary
Service (selecting track: canary pods).

The HTTPRoute must exist: it carries the parentRefs to the user's Gateway, which release-bot
cannot invent. The canary Service is created from the stable one when missing (same ports,
selector with track: canary) and kept after finalize, unreferenced, for the next release.
Header routing adds a rule named `release-bot-canary-header` with the managed rule's matches,
each with the canary header added; more header matches make it win over the managed rule
under the Gateway API precedence rules, whatever its position.
"""

from __future__ import annotations

import copy

from kubernetes import client as k8s

from bot.core.errors import PermanentError
from bot.kube.client import HTTP_ROUTES, SERVICES, NamespacedResources, Object
from bot.kube.routers import (
    GatewaySettings,
    TrafficSplit,
    require_stable_track,
    split_of,
    users_entries,
    validate_weight,
)
from bot.kube.workloads import (
    CANARY_OF_ANNOTATION,
    CANARY_TRACK,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    STABLE_TRACK,
    TRACK_LABEL,
    CanaryWorkloads,
)

HEADER_RULE_NAME = "release-bot-canary-header"


class GatewayApiRouter:
    def __init__(
        self, api: k8s.ApiClient, workloads: CanaryWorkloads, settings: GatewaySettings
    ) -> None:
        self._workloads = workloads
        self._settings = settings
        namespace = workloads.app.namespace
        self._routes = NamespacedResources(api, HTTP_ROUTES, namespace)
        self._services = NamespacedResources(api, SERVICES, namespace)

    def ensure_routes(self) -> None:
        require_stable_track(self._workloads)
        stable_service = self._checked_stable_service()
        self._services.reconcile(
            self._settings.canary_service,
            lambda current: self._render_canary_service(current, stable_service),
        )
        self._routes.reconcile(self._settings.http_route, self._adopt)

    def set_weight(self, *, canary_weight: int, header_routed: bool) -> None:
        validate_weight(canary_weight)

        def render(current: Object | None) -> Object:
            route = self._existing(current)
            rules, index = self._users_rules(route)
            managed = rules[index]
            managed["backendRefs"] = self._backend_refs(
                managed, stable_weight=100 - canary_weight, canary_weight=canary_weight
            )
            if header_routed:
                rules.insert(index, self._header_rule(managed))
            route["spec"]["rules"] = rules
            return route

        self._routes.reconcile(self._settings.http_route, render)

    def current_split(self) -> TrafficSplit:
        route = self._existing(self._routes.get(self._settings.http_route))
        rules, index = self._users_rules(route)
        weights = {self._settings.stable_service: 0, self._settings.canary_service: 0}
        for ref in rules[index].get("backendRefs", []):
            if ref["name"] in weights:
                weights[ref["name"]] += ref.get("weight", 1)
        return split_of(
            stable=weights[self._settings.stable_service],
            canary=weights[self._settings.canary_service],
            header_routed=len(rules) < len(route["spec"]["rules"]),
        )

    def finalize(self) -> None:
        if self._routes.get(self._settings.http_route) is None:
            return  # nothing routes to the canary

        def render(current: Object | None) -> Object:
            route = self._existing(current)
            rules, index = self._users_rules(route)
            managed = rules[index]
            refs = self._backend_refs(managed, stable_weight=100, canary_weight=0)
            managed["backendRefs"] = refs[:1]
            route["spec"]["rules"] = rules
            return route

        self._routes.reconcile(self._settings.http_route, render)

    def _checked_stable_service(self) -> Object:
        name = self._settings.stable_service
        service = self._services.get(name)
        if service is None:
            raise PermanentError(f"{self._services.describe(name)} not found")
        selector: dict[str, str] = service["spec"].get("selector") or {}
        pod_labels = self._workloads.stable_pod_labels()
        problem = None
        if selector.get(TRACK_LABEL) != STABLE_TRACK:
            problem = f"must select {TRACK_LABEL}: {STABLE_TRACK}, or it also selects canary pods"
        elif self._workloads.app.version_label in selector:
            problem = f"must not select on {self._workloads.app.version_label!r}: it changes"
        elif any(pod_labels.get(key) != value for key, value in selector.items()):
            problem = f"does not select the stable pods (labelled {pod_labels})"
        if problem:
            raise PermanentError(f"{self._services.describe(name)} (selector {selector}) {problem}")
        return service

    def _render_canary_service(self, current: Object | None, stable_service: Object) -> Object:
        selector = {**stable_service["spec"]["selector"], TRACK_LABEL: CANARY_TRACK}
        ports = [
            {key: value for key, value in port.items() if key != "nodePort"}
            for port in stable_service["spec"]["ports"]
        ]
        if current is None:
            return {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": self._settings.canary_service,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                    "annotations": {CANARY_OF_ANNOTATION: self._settings.stable_service},
                },
                "spec": {"selector": selector, "ports": ports},
            }
        if current["metadata"].get("labels", {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
            current["spec"]["selector"] = selector
            current["spec"]["ports"] = ports
        elif (current["spec"].get("selector") or {}).get(TRACK_LABEL) != CANARY_TRACK:
            raise PermanentError(
                f"{self._services.describe(self._settings.canary_service)} must select "
                f"{TRACK_LABEL}: {CANARY_TRACK} pods"
            )
        return current

    def _adopt(self, current: Object | None) -> Object:
        """Add the canary backend (weight 0) to the managed rule unless it is there already:
        a running release keeps its weights."""
        route = self._existing(current)
        rules, index = self._users_rules(route)
        managed = rules[index]
        refs = self._backend_refs(managed, stable_weight=100, canary_weight=0)
        names = {ref["name"] for ref in managed.get("backendRefs", [])}
        if self._settings.canary_service not in names:
            managed["backendRefs"] = refs
        return route

    def _existing(self, current: Object | None) -> Object:
        if current is None:
            raise PermanentError(
                f"{self._routes.describe(self._settings.http_route)} not found: release-bot "
                "adopts an existing HTTPRoute (it holds the parentRefs to your Gateway)"
            )
        return current

    def _users_rules(self, route: Object) -> tuple[list[Object], int]:
        return users_entries(
            route["spec"].get("rules", []),
            own_name=HEADER_RULE_NAME,
            index=self._settings.rule_index,
            what=f"{self._routes.describe(self._settings.http_route)} spec.rules",
        )

    def _backend_refs(
        self, managed: Object, *, stable_weight: int, canary_weight: int
    ) -> list[Object]:
        """[stable, canary] backendRefs, keeping the fields (port, filters) of the user's
        stable backendRef."""
        refs = managed.get("backendRefs", [])
        ours = {self._settings.stable_service, self._settings.canary_service}
        foreign = [
            ref["name"]
            for ref in refs
            if ref["name"] not in ours or ref.get("kind", "Service") != "Service"
        ]
        stable = next((ref for ref in refs if ref["name"] == self._settings.stable_service), None)
        if foreign or stable is None:
            raise PermanentError(
                f"{self._routes.describe(self._settings.http_route)} rule "
                f"{self._settings.rule_index} routes to {[ref['name'] for ref in refs]}; "
                f"release-bot splits a rule whose backends are the Services "
                f"{self._settings.stable_service!r} and {self._settings.canary_service!r} only"
            )
        return [
            {**copy.deepcopy(stable), "name": name, "weight": weight}
            for name, weight in (
                (self._settings.stable_service, stable_weight),
                (self._settings.canary_service, canary_weight),
            )
        ]

    def _header_rule(self, managed: Object) -> Object:
        header = self._settings.header
        rule = {
            key: copy.deepcopy(value)
            for key, value in managed.items()
            if key not in ("name", "matches", "backendRefs")
        }
        header_match = {"type": "Exact", "name": header.name, "value": header.value}
        rule["name"] = HEADER_RULE_NAME
        rule["matches"] = [
            {
                **match,
                "headers": [
                    existing
                    for existing in match.get("headers", [])
                    if existing["name"].lower() != header.name
                ]
                + [header_match],
            }
            for match in managed.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
        ]
        canary = self._backend_refs(managed, stable_weight=0, canary_weight=100)[1]
        rule["backendRefs"] = [canary]
        return rule
