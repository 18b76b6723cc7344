"""A release world for end-to-end tests: one app in its own namespace of the real apiserver,
a real `release-bot serve` process on the real Redis (and Prometheus when asked), the Slack
stand-in, and helpers to drive it as a team does and to read back what happened.

A pytest plugin (listed in tests/conftest.py): fixture `world_for(provider, stages, ...)`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis
from kubernetes import client as k8s

from bot.core.apps import GatewayApiRouter, IstioRouter, ReplicasRouter, Router
from bot.core.release import Phase, Release
from bot.kube.client import DEPLOYMENTS, HTTP_ROUTES, SERVICES, VIRTUAL_SERVICES
from bot.kube.routers import TrafficSplit, build_router
from bot.kube.workloads import AppWorkload, CanaryWorkloads
from bot.redis.store import ReleaseStore
from tests.infra.kube import KubeCluster
from tests.infra.processes import wait_until
from tests.infra.redis_server import RedisServer
from tests.infra.slack import BotProcess, LaunchBot
from tests.infra.slack_requests import BOB, RELEASES, SignedRequest, SlackRequests
from tests.infra.slack_standin import SlackStandIn
from tests.kube_objects import Cluster, service, stable_deployment

APP = "shop-api"
STABLE_IMAGE = "registry.example/shop/api:v1"
ACK_LIMIT_S = 3.0
PHASE_TIMEOUT_S = 45.0

ROUTER_YAML = {
    "replicas": "{provider: replicas, service: shop-api}",
    "bluegreen": "{provider: replicas, service: shop-api}",
    "bluegreen-only": "",  # no router: the app releases by blue-green only
    "argo": "",  # an Argo Rollout routes its own traffic
    "istio": "{provider: istio, virtual_service: shop-api, destination_rule: shop-api, "
    "host: shop-api}",
    "gateway-api": "{provider: gateway-api, http_route: shop-api, stable_service: shop-api-stable, "
    "canary_service: shop-api-canary}",
}
ROUTERS: dict[str, Router] = {
    "replicas": ReplicasRouter(provider="replicas", service="shop-api"),
    "istio": IstioRouter(
        provider="istio", virtual_service="shop-api", destination_rule="shop-api", host="shop-api"
    ),
    "gateway-api": GatewayApiRouter(
        provider="gateway-api",
        http_route="shop-api",
        stable_service="shop-api-stable",
        canary_service="shop-api-canary",
    ),
}

# ---------------------------------------------------------------- the world of one test


def is_card(message: Mapping[str, Any]) -> bool:
    """A release card (it opens with a header), as opposed to the other channel posts: an
    approval request or an alert. `message`: a stored message or a chat.postMessage's params."""
    blocks = message.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return bool(blocks) and blocks[0].get("type") == "header"


def is_approval_request(message: Mapping[str, Any]) -> bool:
    """A channel post asking for an approval (bot.slack.cards titles it 'approval needed')."""
    blocks = message.get("blocks") or []
    return "approval needed" in (blocks if isinstance(blocks, str) else json.dumps(blocks))


@dataclass
class World:
    """One app in its own namespace, the bot serving it, and what a test needs to drive it."""

    bot: BotProcess
    slack: SlackStandIn
    requests: SlackRequests
    store: ReleaseStore
    redis: redis.Redis
    cluster: Cluster
    provider: str
    kube_admin: k8s.ApiClient
    launch: LaunchBot
    environment: dict[str, str]
    """What every bot of this world is configured with (Redis, apps file, cluster, tick)."""
    ack_seconds: list[float] = field(default_factory=list)

    def kill_bot(self) -> None:
        """SIGKILL the bot process: no shutdown, no cleanup, as when its node dies."""
        self.bot.process.kill()

    def relaunch(self, *, extra_env: Mapping[str, str] | None = None) -> BotProcess:
        """A new bot process with the world's configuration plus `extra_env`; it becomes
        `self.bot` once ready. Stop or kill the old one first: two would be two replicas."""
        self.bot = self.launch(extra_env={**self.environment, **(extra_env or {})})
        return self.bot

    def post(self, request: SignedRequest) -> str:
        """Post a request as Slack does; the acknowledgement's text ('' for none)."""
        started = time.monotonic()
        response = self.bot.client.post_events(request)
        elapsed = time.monotonic() - started
        self.ack_seconds.append(elapsed)
        assert response.status_code == 200, response.text
        assert elapsed < ACK_LIMIT_S, f"acknowledged after {elapsed:.2f} s"
        return str(response.json().get("text", "")) if response.content else ""

    def send(self, request: SignedRequest) -> str:
        """Post a request; the answer the person sees: the acknowledgement's text, or the first
        message sent to the request's response_url after it."""
        return self.post(request) or self.response_to(request)

    def response_to(self, request: SignedRequest, *, timeout_s: float = 20) -> str:
        url_id = _response_url(request).removeprefix(self.slack.response_url_base)
        found: list[str] = []

        def answered() -> bool:
            found[:] = [r["text"] for r in self.slack.responses() if r["response_url_id"] == url_id]
            return bool(found)

        wait_until(answered, timeout_s=timeout_s, what=f"an answer to {request.body[:60]}")
        return found[0]

    def command(self, text: str, **kwargs: Any) -> str:
        return self.send(self.requests.slash_command(text, **kwargs))

    def release(self) -> Release:
        stored = self.store.active(APP)
        assert stored is not None, "no active release"
        return stored.release

    def wait_for(self, phase: Phase, stage_index: int | None = None) -> Release:
        seen: list[Release] = []

        def reached() -> bool:
            stored = self.store.active(APP)
            latest = self._latest() if stored is None else stored.release
            if latest is not None:
                seen[:] = [latest]
            return (
                latest is not None
                and latest.phase is phase
                and (stage_index is None or latest.stage_index == stage_index)
            )

        try:
            wait_until(reached, timeout_s=PHASE_TIMEOUT_S, what=f"{phase} at stage {stage_index}")
        except TimeoutError as error:
            last = f"{seen[0].phase} at stage {seen[0].stage_index}" if seen else "no release"
            raise TimeoutError(f"{error}; the release was last {last}") from error
        return seen[0]

    def _latest(self) -> Release | None:
        keys = self.redis.keys("rb:release:*")
        releases = [Release.model_validate_json(self.redis.hget(key, "json")) for key in keys]
        return max(releases, key=lambda r: r.started_at, default=None)

    def card(self) -> dict[str, Any]:
        cards = self.slack.messages(RELEASES.id)
        assert len(cards) >= 1, "no card posted"
        return cards[0]

    def thread_texts(self) -> list[str]:
        return [m["text"] for m in self.slack.thread(RELEASES.id, self.card()["ts"])]

    def wait_thread(self, text: str) -> None:
        wait_until(
            lambda: any(text in reply for reply in self.thread_texts()),
            timeout_s=10,
            what=f"a thread reply saying {text!r}",
        )

    def click(self, action_id: str, *, user: Any = BOB) -> SignedRequest:
        """A click on the card's button `action_id` as the card shows it now."""
        card = self.card()
        return self.requests.block_action(
            action_id=action_id,
            value=_button_value(card, action_id),
            message_ts=card["ts"],
            user=user,
        )

    def split(self) -> TrafficSplit:
        return self._router().current_split()

    def wait_split(self, expected: TrafficSplit) -> None:
        wait_until(lambda: self.split() == expected, timeout_s=20, what=f"traffic split {expected}")

    def _router(self) -> Any:
        workloads = CanaryWorkloads(
            self.kube_admin,
            AppWorkload(namespace=self.cluster.namespace, stable_deployment=APP, container="app"),
        )
        return build_router(ROUTERS[self.provider], api=self.kube_admin, workloads=workloads)

    def image(self, deployment: str) -> str | None:
        found = self.cluster.of(DEPLOYMENTS).get(deployment)
        if found is None:
            return None
        return str(found["spec"]["template"]["spec"]["containers"][0]["image"])

    def state_snapshot(self) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Everything a command could have changed: release state in Redis (not the delivery
        claims, which record that a request arrived, nor the audit trail, which records each
        refusal, nor the leases, which say which bot works on a release at this instant) and
        the Deployments."""
        state = {
            key: _dump(self.redis, key)
            for key in self.redis.keys("rb:*")
            if not key.startswith(("rb:delivery:", "rb:history:", "rb:lease:"))
        }
        deployments = [
            (d["metadata"]["name"], d["metadata"]["resourceVersion"])
            for d in self.cluster.of(DEPLOYMENTS).list_matching(label_selector="")
        ]
        return state, sorted(deployments)


def _dump(client: redis.Redis, key: str) -> Any:
    kind = client.type(key)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return sorted(client.smembers(key))
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    return client.get(key)


def _response_url(request: SignedRequest) -> str:
    fields = parse_qs(request.body)
    if "payload" in fields:
        return str(json.loads(fields["payload"][0])["response_url"])
    return fields["response_url"][0]


def _button_value(message: dict[str, Any], action_id: str) -> str:
    for block in message.get("blocks", []):
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button on the card: {message.get('text')}")


def _config(  # noqa: PLR0917 (private; the fixture passes every block)
    namespace: str,
    provider: str,
    stages: str,
    metrics: str,
    authorization: str,
    bluegreen: str,
    verification: str,
    more: str,
) -> str:
    return (
        f"plans:\n  e2e:\n{stages}"
        f"apps:\n  {APP}:\n    namespace: {namespace}\n    workload: {APP}\n"
        f"    slack_channel: {RELEASES.id}\n    plan: e2e\n"
        + ("    workload_kind: Rollout\n" if provider == "argo" else "")
        + (f"    router: {ROUTER_YAML[provider]}\n" if ROUTER_YAML[provider] else "")
        + (f"    metrics: {metrics}\n" if metrics else "")
        + (f"    authorization: {authorization}\n" if authorization else "")
        + (f"    verification: {verification}\n" if verification else "")
        + (f"    bluegreen: {bluegreen}\n" if bluegreen else "")
        + more
    )


def _install_app(cluster: Cluster, provider: str) -> None:
    cluster.create(DEPLOYMENTS, stable_deployment(image=STABLE_IMAGE, readiness_probe=True))
    cluster.rolled_out(APP)
    if provider in ("replicas", "bluegreen", "bluegreen-only"):
        cluster.create(SERVICES, service(APP, {"app": APP}))
    elif provider == "istio":
        cluster.create(VIRTUAL_SERVICES, _virtual_service())
    else:
        cluster.create(SERVICES, service("shop-api-stable", {"app": APP, "track": "stable"}))
        cluster.create(HTTP_ROUTES, _http_route())


def _virtual_service() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": APP},
        "spec": {
            "hosts": [APP],
            "http": [{"name": "main", "route": [{"destination": {"host": APP}}]}],
        },
    }


def _http_route() -> dict[str, Any]:
    backend = {"name": "shop-api-stable", "port": 80}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": APP},
        "spec": {"parentRefs": [{"name": "public"}], "rules": [{"backendRefs": [backend]}]},
    }


@pytest.fixture
def world_for(
    *,
    kube_cluster: KubeCluster,
    kube_admin: k8s.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    slack_api: SlackStandIn,
    slack_requests: SlackRequests,
    launch_bot: LaunchBot,
    tmp_path: Path,
) -> Iterator[Any]:
    def build(
        provider: str,
        stages: str,
        *,
        metrics: str = "",
        authorization: str = "",
        verification: str = "",
        bluegreen: str = "",
        prometheus_url: str | None = None,
        bot_env: Mapping[str, str] | None = None,
        kubeconfig: Path | None = None,
        more_apps: str = "",
        install: Callable[[Cluster], None] | None = None,
    ) -> World:
        """`metrics`, `authorization`, `bluegreen`, `verification`: the app's blocks as YAML flow
        text (none: the defaults, anyone in the app's channel may do anything, no verification
        Jobs); `prometheus_url`: the bot's PROMETHEUS_URL (None: no metrics source, stages
        advance on their timers alone);
        `bot_env`: more variables for the first bot only (World.relaunch starts without them);
        `kubeconfig`: the bots' KUBECONFIG (None: the admin's; the world itself reads and
        prepares the cluster as the admin either way); `more_apps`: more entries of the apps
        file's `apps` (YAML, indented as under `apps:`), which the world does not install;
        `install`: what the team has in the cluster before the first release (None: a stable
        Deployment labelled track: stable and the provider's usual objects)."""
        cluster = Cluster(kube_admin, namespace)
        (install or partial(_install_app, provider=provider))(cluster)
        config = tmp_path / "apps.yaml"
        config.write_text(
            _config(
                namespace,
                provider,
                stages,
                metrics,
                authorization,
                bluegreen,
                verification,
                more_apps,
            )
        )
        environment = {
            "REDIS_URL": redis_server.url,
            "RELEASE_BOT_CONFIG": str(config),
            "KUBECONFIG": str(kubeconfig or kube_cluster.kubeconfig()),
            "RELEASE_BOT_TICK_SECONDS": "0.25",
        }
        if prometheus_url:
            environment["PROMETHEUS_URL"] = prometheus_url
        bot = launch_bot(extra_env={**environment, **(bot_env or {})})
        return World(
            bot=bot,
            slack=slack_api,
            requests=slack_requests,
            store=ReleaseStore(redis_client),
            redis=redis_client,
            cluster=cluster,
            provider=provider,
            kube_admin=kube_admin,
            launch=launch_bot,
            environment=environment,
        )

    yield build
