"""Gateway API router (provider "gateway-api"), built by build_router: the backendRef weights
of one HTTPRoute rule between the user's stable Service and a canary Service.

The stable Service is the user's, as it is: it must select the stable pods and leave the canary
pods out, by `track: stable` or by the stable pods' version label (`version: v1`); the canary
pods carry the stable pods' labels except those two. A selector on the version label follows
the stable version: `finalize` moves it to the version the stable pods run (after a promotion:
the new one) before traffic goes back to it, once every stable replica runs it (until then it
raises TemporaryError and the canary keeps its share). The canary Service is created from the
stable one when missing (same ports, the stable selector with the canary pods' track and
version) and kept after finalize, unreferenced, for the next release.

The HTTPRoute must exist: it carries the parentRefs to the user's Gateway, which release-bot
cannot invent. Header routing adds a rule named `release-bot-canary-header` with the managed
rule's matches, each with the canary header added; more header matches make it win over the
managed rule under the Gateway API precedence rules, whatever its position. The part shared
with the istio router is MeshRouter in bot.kube.routers.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import ClassVar

from bot.core import apps
from bot.core.errors import PermanentError
from bot.kube.client import HTTP_ROUTES, SERVICES, Object
from bot.kube.routers import DISTINGUISHING_LABELS, MeshRouter, PodLabels, selects, show_labels
from bot.kube.workloads import (
    CANARY_OF_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    VERSION_LABELS,
    version_keys,
)


class GatewayApiRouter(MeshRouter[apps.GatewayApiRouter]):
    ROUTE_KIND = HTTP_ROUTES
    BACKEND_KIND = SERVICES
    ENTRIES = "rules"
    MATCHES = "matches"
    TARGETS = "backendRefs"
    DEFAULT_MATCH: ClassVar[Object] = {"path": {"type": "PathPrefix", "value": "/"}}
    MISSING_HINT = (
        "name the HTTPRoute in the router's http_route; release-bot adopts an existing "
        "HTTPRoute (it holds the parentRefs to your Gateway)"
    )
    INDEX_FIELD = "rule_index"

    def _managed_entry(self) -> tuple[str, int]:
        return self._config.http_route, self._config.rule_index

    def _backend_problems(self, pods: PodLabels) -> list[str]:
        stable = self._backends.get(self._config.stable_service)
        problem = self._stable_service_problem(stable, pods)
        if problem is None:
            problem = self._canary_service_problem(pods)
        return [] if problem is None else [problem]

    def _stable_service_problem(self, service: Object | None, pods: PodLabels) -> str | None:
        name = self._config.stable_service
        describe = self._backends.describe(name)
        if service is None:
            return (
                f"{describe} not found: name the Service in front of the stable pods in the "
                "router's stable_service"
            )
        selector: dict[str, str] = service["spec"].get("selector") or {}
        version_key = version_keys(pods.stable)[0]
        if not selector:
            return f"{describe} has no selector: it must select the stable pods"
        if not selects(selector, pods.stable):
            return (
                f"{describe} (selector {show_labels(selector)}) does not select the stable pods "
                f"(labelled {show_labels(pods.stable)})"
            )
        if selects(selector, pods.canary):
            return (
                f"{describe} selects {show_labels(selector)}, which the canary pods carry too, so "
                f"its share of traffic would reach them: add `{version_key}: "
                f"{pods.stable.get(version_key)}` to its selector (no pod restarts; release-bot "
                "then keeps it on the version the stable pods run)"
            )
        return next((pods.same_version(key) for key in selector if key in VERSION_LABELS), None)

    def _canary_service_problem(self, pods: PodLabels) -> str | None:
        name = self._config.canary_service
        current = self._backends.get(name)
        if current is None or _managed(current):
            return None
        selector = current["spec"].get("selector") or {}
        if selector and selects(selector, pods.canary) and not selects(selector, pods.stable):
            return None
        return (
            f"{self._backends.describe(name)} exists, is not managed by release-bot, and does not "
            f"select only the canary pods (labelled {show_labels(pods.canary)}): delete it "
            "(release-bot creates it) or name another Service in the router's canary_service"
        )

    def _ensure_backends(self, pods: PodLabels) -> None:
        stable_service = self._backends.get(self._config.stable_service)
        if stable_service is None:
            raise PermanentError(
                f"{self._backends.describe(self._config.stable_service)} not found"
            )
        self._backends.reconcile(
            self._config.canary_service,
            lambda current: self._render_canary_service(current, stable_service, pods),
        )

    def _render_canary_service(
        self, current: Object | None, stable_service: Object, pods: PodLabels
    ) -> Object:
        selector = {
            key: pods.canary[key] if key in DISTINGUISHING_LABELS else value
            for key, value in stable_service["spec"]["selector"].items()
        }
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
        if _managed(current):
            current["spec"]["selector"] = selector
            current["spec"]["ports"] = ports
        return current

    def _follow_stable(self, stable_labels: Mapping[str, str]) -> None:
        name = self._config.stable_service
        service = self._backends.get(name)
        selector = (service or {}).get("spec", {}).get("selector") or {}
        moving_to = {
            key: stable_labels[key]
            for key in selector
            if key in VERSION_LABELS
            and key in stable_labels
            and selector[key] != stable_labels[key]
        }
        if not moving_to:
            return
        self._stable_rolled_out(moving_to)

        def render(current: Object | None) -> Object:
            if current is None:
                raise PermanentError(f"{self._backends.describe(name)} not found")
            current["spec"]["selector"] |= moving_to
            return current

        self._backends.reconcile(name, render)

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
                f"{self._config.canary_service!r} only: set rule_index to that rule, or the "
                "router's stable_service"
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


def _managed(service: Object) -> bool:
    return bool(service["metadata"].get("labels", {}).get(MANAGED_BY_LABEL) == MANAGED_BY)
