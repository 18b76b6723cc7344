"""The router for provider "none" (an app without a `router`, which releases by blue-green
only), built by build_router: it splits nothing.

It cannot send traffic to a canary, so it refuses to pretend: `check` names what to add, so
preflight refuses a canary or hybrid start before anything is created; any weight above 0, or
header routing, is a PermanentError, and the split it reports is always 100 % stable.
"""

from __future__ import annotations

from kubernetes import client as k8s

from bot.core.apps import NoRouter
from bot.core.errors import PermanentError
from bot.kube.routers import RouterOptions, TrafficSplit, validate_weight
from bot.kube.workloads import CanaryWorkloads


class NoopRouter:
    def __init__(
        self,
        config: NoRouter,
        *,
        api: k8s.ApiClient,
        workloads: CanaryWorkloads,
        options: RouterOptions,
    ) -> None:
        """Nothing to keep: there is nothing to configure or route."""

    def check(self, version: str) -> list[str]:
        """A canary needs a router: what to add."""
        return [
            "the app names no router, so it releases by blue-green only (/release bluegreen): "
            "for a canary or hybrid release add `router:` to the app in the apps file "
            "(provider replicas, istio or gateway-api)"
        ]

    def ensure_routes(self) -> None:
        """Nothing to create: there are no routing objects."""

    def set_weight(self, *, canary_weight: int, header_routed: bool) -> None:
        validate_weight(canary_weight)
        if canary_weight or header_routed:
            raise PermanentError(
                f"traffic router 'none' cannot send {canary_weight} % of traffic"
                f"{' or header-matching requests' if header_routed else ''} to a canary; "
                "configure provider replicas, istio or gateway-api for canary releases"
            )

    def current_split(self) -> TrafficSplit:
        return TrafficSplit(stable_percent=100, canary_percent=0, header_routed=False)

    def finalize(self) -> None:
        """Nothing to undo."""
