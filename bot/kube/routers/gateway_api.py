"""Gateway API router (provider "gateway-api"), built by build_router: the backendRef weights
of one HTTPRoute rule between a stable Service (selecting track: stable pods) and a canary
Service (selecting track: canary pods).

The HTTPRoute must exist: it carries the parentRefs to the user's Gateway, which release-bot
cannot invent. The canary Service is created from the stable one when missing (same ports,
selector with track: canary) and kept after finalize, unreferenced, for the next release.
Header routing adds a rule named `release-bot-canary-header` with the managed rule's matches,
each with the canary header added; more header matches make it win over the managed rule
under the Gateway API precedence rules, whatever its position. The part shared with the istio
router is MeshRouter in bot.kube.routers.
"""

from __future__ import annotations

import copy
from typing import ClassVar

from bot.core import apps
from bot.core.errors import PermanentError
from bot.kube.client import HTTP_ROUTES, SERVICES, Object
from bot.kube.routers import MeshRouter
from bot.kube.workloads import (
    CANARY_OF_ANNOTATION,
    CANARY_TRACK,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    STABLE_TRACK,
    TRACK_LABEL,
)


class GatewayApiRouter(MeshRouter[apps.GatewayApiRouter]):
    ROUTE_KIND = HTTP_ROUTES
    BACKEND_KIND = SERVICES
    ENTRIES = "rules"
    MATCHES = "matches"
    TARGETS = "backendRefs"
    DEFAULT_MATCH: ClassVar[Object] = {"path": {"type": "PathPrefix", "value": "/"}}
    MISSING_HINT = (
        ": release-bot adopts an existing HTTPRoute (it holds the parentRefs to your Gateway)"
    )

    def _managed_entry(self) -> tuple[str, int]:
        return self._config.http_route, self._config.rule_index

    def _ensure_backends(self) -> None:
        stable_service = self._checked_stable_service()
        self._backends.reconcile(
            self._config.canary_service,
            lambda current: self._render_canary_service(current, stable_service),
        )

    def _checked_stable_service(self) -> Object:
        name = self._config.stable_service
        service = self._backends.get(name)
        if service is None:
            raise PermanentError(f"{self._backends.describe(name)} not found")
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
            raise PermanentError(f"{self._backends.describe(name)} (selector {selector}) {problem}")
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
                    "name": self._config.canary_service,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                    "annotations": {CANARY_OF_ANNOTATION: self._config.stable_service},
                },
                "spec": {"selector": selector, "ports": ports},
            }
        if current["metadata"].get("labels", {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
            current["spec"]["selector"] = selector
            current["spec"]["ports"] = ports
        elif (current["spec"].get("selector") or {}).get(TRACK_LABEL) != CANARY_TRACK:
            raise PermanentError(
                f"{self._backends.describe(self._config.canary_service)} must select "
                f"{TRACK_LABEL}: {CANARY_TRACK} pods"
            )
        return current

    def _is_split(self, managed: Object) -> bool:
        names = {ref["name"] for ref in managed.get("backendRefs", [])}
        return self._config.canary_service in names

    def _shares(self, managed: Object) -> tuple[int, int]:
        weights = {self._config.stable_service: 0, self._config.canary_service: 0}
        for ref in managed.get("backendRefs", []):
            if ref["name"] in weights:
                weights[ref["name"]] += ref.get("weight", 1)
        return weights[self._config.stable_service], weights[self._config.canary_service]

    def _targets(self, managed: Object, *, stable_weight: int, canary_weight: int) -> list[Object]:
        """[stable, canary] backendRefs, keeping the fields (port, filters) of the user's
        stable backendRef."""
        refs = managed.get("backendRefs", [])
        ours = {self._config.stable_service, self._config.canary_service}
        foreign = [
            ref["name"]
            for ref in refs
            if ref["name"] not in ours or ref.get("kind", "Service") != "Service"
        ]
        stable = next((ref for ref in refs if ref["name"] == self._config.stable_service), None)
        if foreign or stable is None:
            raise PermanentError(
                f"{self._routes.describe(self._name)} rule {self._index} routes to "
                f"{[ref['name'] for ref in refs]}; release-bot splits a rule whose backends are "
                f"the Services {self._config.stable_service!r} and "
                f"{self._config.canary_service!r} only"
            )
        return [
            {**copy.deepcopy(stable), "name": name, "weight": weight}
            for name, weight in (
                (self._config.stable_service, stable_weight),
                (self._config.canary_service, canary_weight),
            )
        ]

    def _with_header(self, match: Object) -> Object:
        header = self._header
        others = [h for h in match.get("headers", []) if h["name"].lower() != header.name]
        header_match = {"type": "Exact", "name": header.name, "value": header.value}
        return {**match, "headers": [*others, header_match]}
