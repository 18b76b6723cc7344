"""Istio router (provider "istio"), built by build_router: the weights of one VirtualService
http route between the DestinationRule subsets `stable` and `canary`.

What the subsets select by is the app's `subset_label`:
- `version` (the default, as the production guide's own objects do it): the version label the
  pods carry (`version`, else `app.kubernetes.io/version`); subset `stable` selects the stable
  pods' version and `canary` the new one's. The stable subset follows the stable version: at
  `finalize` it moves to the version the stable pods run (after a promotion: the new one) once
  every stable replica runs it (until then finalize raises TemporaryError and the canary keeps
  its share, so a rollback during promotion never empties the stable subset), and only then
  does traffic go back to it;
- `track`: `track: stable` and `track: canary`; the stable pods must carry `track: stable`.
The user's subsets of those names are adopted: their other labels (say `app`) are kept, as long
as the pods they must select carry them; any other track or version label is dropped, since it
would go stale at the next promotion. Subsets of other names, the traffic policy and every other
field are left as they are; a missing DestinationRule, or subset, is created. The VirtualService
is the user's and must exist.

Only the managed route changes, and the header route release-bot inserts right before it
(named `release-bot-canary-header`: the managed route's matches, each ANDed with the canary
header, so it catches exactly the requests the managed route would and nothing more; the part
shared with the gateway-api router is MeshRouter in bot.kube.routers). Every other route of the
user's VirtualService is left as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import ClassVar

from bot.core import apps
from bot.core.errors import PermanentError
from bot.kube.client import DESTINATION_RULES, VIRTUAL_SERVICES, Object
from bot.kube.routers import (
    DISTINGUISHING_LABELS,
    MeshRouter,
    PodLabels,
    selects,
    show_labels,
)
from bot.kube.workloads import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TRACK_LABEL,
    version_keys,
)

STABLE_SUBSET = "stable"
CANARY_SUBSET = "canary"
_SUBSETS = (STABLE_SUBSET, CANARY_SUBSET)


class IstioRouter(MeshRouter[apps.IstioRouter]):
    ROUTE_KIND = VIRTUAL_SERVICES
    BACKEND_KIND = DESTINATION_RULES
    ENTRIES = "http"
    MATCHES = "match"
    TARGETS = "route"
    DEFAULT_MATCH: ClassVar[Object] = {}
    MISSING_HINT = (
        "name the VirtualService that routes the app's host in the router's virtual_service "
        "(release-bot adopts it; it does not create one)"
    )
    INDEX_FIELD = "route_index"

    def _managed_entry(self) -> tuple[str, int]:
        return self._config.virtual_service, self._config.route_index

    def _subset_key(self, pods: PodLabels) -> str:
        if self._config.subset_label == TRACK_LABEL:
            return TRACK_LABEL
        return version_keys(pods.stable)[0]

    def _backend_problems(self, pods: PodLabels) -> list[str]:
        key = self._subset_key(pods)
        rule = self._backends.get(self._config.destination_rule)
        found = (self._key_problem(key, pods), self._host_problem(rule))
        problems = [problem for problem in found if problem]
        if problems:
            return problems
        for name, subset in zip(_SUBSETS, self._subsets(rule, key, pods), strict=True):
            labels = pods.stable if name == STABLE_SUBSET else pods.canary
            if not selects(subset["labels"], labels):
                problems.append(self._subset_problem(name, subset["labels"], labels, key))
        return problems

    def _key_problem(self, key: str, pods: PodLabels) -> str | None:
        describe = f"stable Deployment {self._workloads.app.stable_deployment}"
        if key not in pods.stable:
            if key == TRACK_LABEL:
                return (
                    f"{describe}: its pods have no label track: stable, which the subsets select "
                    "by (router subset_label: track); set subset_label: version to route by "
                    "the version label they carry (no restart), or add the label (one rollout "
                    "of the stable pods)"
                )
            return (
                f"{describe}: its pods have no version label (`version` or "
                "`app.kubernetes.io/version`), which the subsets select by"
            )
        if key == TRACK_LABEL:
            return None
        return pods.same_version(key)

    def _host_problem(self, rule: Object | None) -> str | None:
        host = None if rule is None else rule["spec"].get("host")
        if rule is None or host == self._config.host:
            return None
        return (
            f"{self._backends.describe(self._config.destination_rule)} is for host {host!r}, "
            f"not {self._config.host!r}: set the router's host, or name the DestinationRule "
            f"of {self._config.host!r} in destination_rule"
        )

    def _subset_problem(
        self, name: str, subset: Mapping[str, str], pods: Mapping[str, str], key: str
    ) -> str:
        missing = {k: v for k, v in subset.items() if pods.get(k) != v}
        whose = "stable pods" if name == STABLE_SUBSET else "canary pods would"
        return (
            f"{self._backends.describe(self._config.destination_rule)} subset {name!r} selects "
            f"{show_labels(subset)}, but the {whose} carry {show_labels(pods)}: remove "
            f"{show_labels(missing)} from the subset's labels (release-bot keeps {key!r} on it)"
        )

    def _subsets(self, rule: Object | None, key: str, pods: PodLabels) -> list[Object]:
        """The stable and canary subsets as release-bot keeps them: the user's, if any, with
        `key` set to what the pods carry and no other track or version label."""
        existing = {s["name"]: s for s in (rule or {}).get("spec", {}).get("subsets", [])}
        values = {STABLE_SUBSET: pods.stable[key], CANARY_SUBSET: pods.canary[key]}
        return [_keyed(existing.get(name, {"name": name}), key, values[name]) for name in _SUBSETS]

    def _ensure_backends(self, pods: PodLabels) -> None:
        key = self._subset_key(pods)

        def render(current: Object | None) -> Object:
            if current is None:
                return {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "DestinationRule",
                    "metadata": {
                        "name": self._config.destination_rule,
                        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                    },
                    "spec": {"host": self._config.host, "subsets": self._subsets(None, key, pods)},
                }
            _put_subsets(current, self._subsets(current, key, pods))
            return current

        self._backends.reconcile(self._config.destination_rule, render)

    def _follow_stable(self, stable_labels: Mapping[str, str]) -> None:
        if self._config.subset_label == TRACK_LABEL:
            return
        key = version_keys(stable_labels)[0]
        rule = self._backends.get(self._config.destination_rule)
        subsets = [] if rule is None else rule["spec"].get("subsets", [])
        stable = next((s for s in subsets if s["name"] == STABLE_SUBSET), None)
        if stable is None or key not in stable_labels:
            return
        moved = _keyed(stable, key, stable_labels[key])
        if moved == stable:
            return
        self._stable_rolled_out({key: stable_labels[key]})

        def render(current: Object | None) -> Object:
            if current is None:
                raise PermanentError(
                    f"{self._backends.describe(self._config.destination_rule)} not found"
                )
            _put_subsets(current, [moved])
            return current

        self._backends.reconcile(self._config.destination_rule, render)

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
        if not managed.get("route"):
            raise PermanentError(f"{where} {managed.get('name', '')!r} has no destinations")
        hosts = {entry["destination"]["host"] for entry in managed["route"]}
        if hosts - {self._config.host}:
            raise PermanentError(
                f"{where} {managed.get('name', '')!r} also routes to {sorted(hosts)}; "
                f"release-bot splits a route only when all of it goes to {self._config.host!r}: "
                "set route_index to that route, or the router's host"
            )
        return self._split(managed["route"][0], stable_weight, canary_weight)

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


def _keyed(subset: Object, key: str, value: str) -> Object:
    """`subset` selecting `key: value`, without the other labels that differ between stable and
    canary pods."""
    labels = {
        k: v for k, v in (subset.get("labels") or {}).items() if k not in DISTINGUISHING_LABELS
    }
    return {**copy.deepcopy(subset), "labels": {**labels, key: value}}


def _put_subsets(rule: Object, wanted: list[Object]) -> None:
    """Replace the rule's subsets of the same names as `wanted`'s in place, append the others."""
    subsets: list[Object] = rule["spec"].setdefault("subsets", [])
    for subset in wanted:
        index = next((i for i, s in enumerate(subsets) if s["name"] == subset["name"]), None)
        if index is None:
            subsets.append(subset)
        else:
            subsets[index] = subset
