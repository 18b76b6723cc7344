"""Canary releases end to end, as a team runs them from Slack: requests signed as Slack signs them
reach a real `release-bot serve` process, which keeps state in the real Redis, changes the real
apiserver (Deployments rolled out by the real controllers and kwok) and posts to the Slack
stand-in. Stages are compressed to seconds and the scheduler ticks every 0.25 s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis
from kubernetes import client as k8s

from bot.kube.client import DEPLOYMENTS, HTTP_ROUTES, SERVICES, VIRTUAL_SERVICES
from bot.kube.routers import (
    GatewaySettings,
    IstioSettings,
    ReplicaSettings,
    RouterSettings,
    TrafficSplit,
    build_router,
)
from bot.kube.workloads import AppWorkload, CanaryWorkloads
from bot.release import Phase, Release
from bot.slack.cards import ACTION_APPROVE, ACTION_ROLLBACK
from bot.store import ReleaseStore
from tests.infra.kube import KubeCluster
from tests.infra.processes import wait_until
from tests.infra.redis_server import RedisServer
from tests.infra.slack import BotProcess, LaunchBot
from tests.infra.slack_requests import ALICE, BOB, RELEASES, SignedRequest, SlackRequests
from tests.infra.slack_standin import SlackStandIn
from tests.kube_objects import Cluster, service, stable_deployment

APP = "shop-api"
STABLE_IMAGE = "registry.example/shop/api:v1"
ACK_LIMIT_S = 3.0
PHASE_TIMEOUT_S = 45.0

ROUTER_YAML = {
    "replicas": "{provider: replicas, service: shop-api}",
    "istio": "{provider: istio, virtual_service: shop-api, destination_rule: shop-api, "
    "host: shop-api}",
    "gateway-api": "{provider: gateway-api, http_route: shop-api, stable_service: shop-api-stable, "
    "canary_service: shop-api-canary}",
}
ROUTER_SETTINGS: dict[str, RouterSettings] = {
    "replicas": ReplicaSettings(service="shop-api"),
    "istio": IstioSettings(
        virtual_service="shop-api", destination_rule="shop-api", host="shop-api"
    ),
    "gateway-api": GatewaySettings(
        http_route="shop-api", stable_service="shop-api-stable", canary_service="shop-api-canary"
    ),
}
HEADER_STAGE = "    - {weight: 0, duration: 1s, header_routed: true, approval: true}\n"
TIMED_PLAN = "    - {weight: 25, duration: 4s}\n    - {weight: 50, duration: 1s, approval: true}\n"
GATED_PLAN = (
    "    - {weight: 25, duration: 1s, approval: true}\n"
    "    - {weight: 100, duration: 1s, approval: true}\n"
)


# ---------------------------------------------------------------- the world of one test


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
    ack_seconds: list[float] = field(default_factory=list)

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

        wait_until(reached, timeout_s=PHASE_TIMEOUT_S, what=f"{phase} at stage {stage_index}")
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
        return build_router(
            self.provider,
            api=self.kube_admin,
            workloads=workloads,
            settings=ROUTER_SETTINGS[self.provider],
        )

    def image(self, deployment: str) -> str | None:
        found = self.cluster.of(DEPLOYMENTS).get(deployment)
        if found is None:
            return None
        return str(found["spec"]["template"]["spec"]["containers"][0]["image"])

    def state_snapshot(self) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Everything a command could have changed: release state in Redis (not the delivery
        claims, which record that a request arrived, nor the audit trail, which records each
        refusal) and the Deployments."""
        state = {
            key: _dump(self.redis, key)
            for key in self.redis.keys("rb:*")
            if not key.startswith(("rb:delivery:", "rb:history:"))
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


def _config(namespace: str, provider: str, stages: str) -> str:
    return (
        f"plans:\n  e2e:\n{stages}"
        f"apps:\n  {APP}:\n    namespace: {namespace}\n    workload: {APP}\n"
        f"    slack_channel: {RELEASES.id}\n    plan: e2e\n    router: {ROUTER_YAML[provider]}\n"
    )


def _install_app(cluster: Cluster, provider: str) -> None:
    cluster.create(DEPLOYMENTS, stable_deployment(image=STABLE_IMAGE, readiness_probe=True))
    cluster.rolled_out(APP)
    if provider == "replicas":
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
    def build(provider: str, stages: str) -> World:
        cluster = Cluster(kube_admin, namespace)
        _install_app(cluster, provider)
        config = tmp_path / "apps.yaml"
        config.write_text(_config(namespace, provider, stages))
        bot = launch_bot(
            extra_env={
                "REDIS_URL": redis_server.url,
                "RELEASE_BOT_CONFIG": str(config),
                "KUBECONFIG": str(kube_cluster.kubeconfig()),
                "RELEASE_BOT_TICK_SECONDS": "0.25",
            }
        )
        return World(
            bot=bot,
            slack=slack_api,
            requests=slack_requests,
            store=ReleaseStore(redis_client),
            redis=redis_client,
            cluster=cluster,
            provider=provider,
            kube_admin=kube_admin,
        )

    yield build


# ---------------------------------------------------------------- a whole canary per router


@pytest.mark.parametrize("provider", ["replicas", "istio", "gateway-api"])
def test_a_full_canary_from_slack_to_100_percent(world_for: Any, provider: str) -> None:
    header_stage = "" if provider == "replicas" else HEADER_STAGE
    world: World = world_for(provider, header_stage + TIMED_PLAN)
    first = 0 if provider == "replicas" else 1

    answer = world.command(f"canary {APP} v2", user=ALICE)
    assert answer.startswith(":white_check_mark: Started a canary of shop-api v2")

    if provider != "replicas":
        world.wait_for(Phase.AWAITING_APPROVAL, 0)
        world.wait_split(TrafficSplit(100, 0, header_routed=True))
        assert world.image("shop-api-canary") == "registry.example/shop/api:v2"
        assert world.post(world.click(ACTION_APPROVE)) == ""  # the card and thread tell

    world.wait_for(Phase.RUNNING, first)  # 25 % for 4 s, then on by itself
    world.wait_split(TrafficSplit(75, 25, header_routed=False))
    assert world.image("shop-api-canary") == "registry.example/shop/api:v2"
    assert world.image(APP) == STABLE_IMAGE

    world.wait_for(Phase.AWAITING_APPROVAL, first + 1)
    world.wait_split(TrafficSplit(50, 50, header_routed=False))
    world.post(world.click(ACTION_APPROVE))

    done = world.wait_for(Phase.SUCCEEDED)
    assert world.image(APP) == "registry.example/shop/api:v2"
    assert world.image("shop-api-canary") is None
    world.wait_split(TrafficSplit(100, 0, header_routed=False))
    assert [(a.by, a.stage_index) for a in done.approvals] == [
        *([(BOB.id, 0)] if provider != "replicas" else []),
        (BOB.id, first + 1),
    ]

    world.wait_thread("shop-api v2 is released")  # Slack is told last
    cards = world.slack.messages(RELEASES.id)
    assert len(cards) == 1, [c["text"] for c in cards]
    card_posts = [c for c in world.slack.calls("chat.postMessage") if not c.params.get("thread_ts")]
    assert len(card_posts) == 1
    updates = world.slack.calls("chat.update")
    assert len(updates) >= 5 and {u.params["ts"] for u in updates} == {cards[0]["ts"]}
    assert "released" in cards[0]["text"].lower() or "succeeded" in cards[0]["text"].lower()
    thread = "\n".join(world.thread_texts())
    for expected in (
        f"<@{ALICE.id}> started a canary of shop-api v2 (replacing v1)",
        "25 % of traffic goes to the canary",
        f"<@{BOB.id}> approved stage {first + 2}/",
        "shop-api v2 is released",
    ):
        assert expected in thread
    print(
        f"{provider}: {len(world.ack_seconds)} requests acknowledged in at most "
        f"{max(world.ack_seconds):.3f} s"
    )


# ---------------------------------------------------------------- rollback from every stage


@pytest.mark.parametrize("stage_index", [0, 1, 2])
def test_rollback_from_every_stage_puts_all_traffic_back_on_stable(
    world_for: Any, stage_index: int
) -> None:
    world: World = world_for("gateway-api", HEADER_STAGE + GATED_PLAN)
    world.command(f"canary {APP} v2")
    for index in range(stage_index):
        world.wait_for(Phase.AWAITING_APPROVAL, index)
        world.post(world.click(ACTION_APPROVE))
    world.wait_for(Phase.AWAITING_APPROVAL, stage_index)
    weight = (0, 25, 100)[stage_index]
    world.wait_split(TrafficSplit(100 - weight, weight, header_routed=stage_index == 0))

    if stage_index == 1:  # the button on the card; the others by command
        world.post(world.click(ACTION_ROLLBACK, user=ALICE))
    else:
        answer = world.command(f"rollback {APP} error budget burning")
        assert answer == ":white_check_mark: Rollback applied to shop-api."

    world.wait_for(Phase.ROLLED_BACK)
    world.wait_split(TrafficSplit(100, 0, header_routed=False))
    assert world.image("shop-api-canary") is None
    assert world.image(APP) == STABLE_IMAGE
    world.wait_thread("shop-api is back on v1 for all traffic")
    thread = "\n".join(world.thread_texts())
    assert "is rolling back shop-api v2 at stage" in thread
    assert "shop-api is back on v1 for all traffic; canary v2 is removed" in thread
    assert "rolled back" in world.card()["text"].lower()


# ---------------------------------------------------------------- refusals, repeats, bad input


def test_a_busy_app_names_the_holder_and_a_locked_app_names_who_and_why(world_for: Any) -> None:
    world: World = world_for("replicas", GATED_PLAN)
    world.command(f"canary {APP} v2", user=ALICE)
    world.wait_for(Phase.AWAITING_APPROVAL, 0)

    answer = world.command(f"canary {APP} v3", user=BOB)
    assert answer == (
        f":warning: shop-api already has an active release: v2 started by <@{ALICE.id}>"
    )

    world.command(f"rollback {APP}")
    world.wait_for(Phase.ROLLED_BACK)
    assert world.command(f"lock {APP} payment freeze until Monday", user=BOB).startswith(
        ":white_check_mark: shop-api is locked"
    )
    answer = world.command(f"canary {APP} v3", user=ALICE)
    assert answer == f":warning: shop-api is locked by <@{BOB.id}>: payment freeze until Monday"
    assert world.store.active(APP) is None

    world.command(f"unlock {APP}", user=BOB)
    assert world.command(f"canary {APP} v3").startswith(":white_check_mark: Started a canary")


def test_the_same_click_twice_and_a_retried_command_change_state_once(world_for: Any) -> None:
    world: World = world_for("istio", GATED_PLAN)
    world.command(f"canary {APP} v2")
    world.wait_for(Phase.AWAITING_APPROVAL, 0)

    click = world.click(ACTION_APPROVE)
    world.post(click)
    world.post(click)  # the same delivery again
    world.wait_for(Phase.AWAITING_APPROVAL, 1)

    pause = world.requests.slash_command(f"pause {APP} checking dashboards")
    world.send(pause)
    retried = world.requests.sign(pause.body, retry_num=1, retry_reason="http_timeout")
    assert world.bot.client.post_events(retried).status_code == 200
    world.wait_for(Phase.PAUSED, 1)
    time.sleep(1.0)  # room for a wrongly applied duplicate to land

    actions = [entry.action for entry in world.store.history(APP)]
    assert actions.count("Approve") == 1
    assert actions.count("Pause") == 1
    assert world.release().stage_index == 1


def test_bad_input_gets_a_clear_answer_and_changes_nothing(world_for: Any) -> None:
    world: World = world_for("replicas", GATED_PLAN)
    world.command(f"canary {APP} v2")
    world.wait_for(Phase.AWAITING_APPROVAL, 0)
    stale_click = world.click(ACTION_APPROVE)
    world.command(f"rollback {APP}")
    world.wait_for(Phase.ROLLED_BACK)
    time.sleep(0.5)
    before = world.state_snapshot()
    history_before = len(world.store.history(APP, limit=1000))

    answers = {
        "unknown subcommand": world.command(f"deploy {APP} v3"),
        "unknown app": world.command("canary cart v3"),
        "missing version": world.command(f"canary {APP}"),
        "malformed version": world.command(f"canary {APP} v3!"),
        "extra junk": world.command(f"approve {APP} now please"),
        "unknown action": world.send(
            world.requests.block_action(
                action_id="release.launch_missiles", value="x:0", message_ts=world.card()["ts"]
            )
        ),
        "finished release": world.send(stale_click),
    }

    assert answers["unknown subcommand"].startswith("unknown subcommand `deploy`")
    assert answers["unknown app"] == ":warning: unknown app 'cart'; known apps: shop-api"
    assert "version" in answers["missing version"]
    assert "tag" in answers["malformed version"]
    assert "now please" in answers["extra junk"]
    assert "has no button `release.launch_missiles`" in answers["unknown action"]
    assert "already finished" in answers["finished release"]
    for name, answer in answers.items():
        assert "Usage" in answer or name in ("unknown app", "unknown action", "finished release")
    after = world.state_snapshot()
    assert after[0] == before[0]
    assert after[1] == before[1]
    audited = world.store.history(APP, limit=1000)[history_before:]
    assert [(entry.action, entry.outcome[:8]) for entry in audited] == [("Approve", "refused:")]
