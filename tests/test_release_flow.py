"""Canary releases end to end, as a team runs them from Slack: requests signed as Slack signs them
reach a real `release-bot serve` process, which keeps state in the real Redis, changes the real
apiserver (Deployments rolled out by the real controllers and kwok) and posts to the Slack
stand-in. Stages are compressed to seconds and the scheduler ticks every 0.25 s."""

from __future__ import annotations

import copy
import time
from functools import partial
from typing import Any

import pytest

from bot.core.release import Phase
from bot.kube.client import (
    DEPLOYMENTS,
    DESTINATION_RULES,
    SERVICES,
    VIRTUAL_SERVICES,
    ResourceType,
)
from bot.kube.routers import TrafficSplit
from bot.slack.cards import ACTION_APPROVE, ACTION_ROLLBACK
from tests.infra.processes import wait_until
from tests.infra.release_world import APP, STABLE_IMAGE, World, is_approval_request, is_card
from tests.infra.slack_requests import ALICE, BOB, RELEASES
from tests.kube_objects import (
    Cluster,
    guides_destination_rule,
    guides_virtual_service,
    stable_deployment,
)

HEADER_STAGE = "    - {weight: 0, duration: 1s, header_routed: true, approval: true}\n"
TIMED_PLAN = "    - {weight: 25, duration: 4s}\n    - {weight: 50, duration: 1s, approval: true}\n"
GATED_PLAN = (
    "    - {weight: 25, duration: 1s, approval: true}\n"
    "    - {weight: 100, duration: 1s, approval: true}\n"
)


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
    channel = world.slack.messages(RELEASES.id)
    cards = [message for message in channel if is_card(message)]
    assert len(cards) == 1, [c["text"] for c in channel]
    # besides the card, the channel holds one approval request per gate (with no alert mention)
    others = [message for message in channel if not is_card(message)]
    assert len(others) == len(done.approvals) and all(map(is_approval_request, others))
    card_posts = [
        c
        for c in world.slack.calls("chat.postMessage")
        if not c.params.get("thread_ts") and is_card(c.params)
    ]
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
    lock = world.requests.slash_command(f"lock {APP} payment freeze until Monday", user=BOB)
    said = world.send(lock)
    assert said == (
        f":white_check_mark: <@{BOB.id}> locked shop-api (payment freeze until Monday): new "
        "releases are refused until unlocked."
    )
    (answer_to_lock,) = [r for r in world.slack.responses() if r["text"] == said]
    assert answer_to_lock["response_type"] == "in_channel"  # the channel sees who locked it
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


# ---------------------------------------------------------------- onboarding, the guide's objects

AUTO_PLAN = "    - {weight: 25, duration: 1s}\n    - {weight: 50, duration: 1s}\n"


def install_the_guides_istio_objects(cluster: Cluster, *, virtual_service: bool = True) -> None:
    """What a team following the production guide has: a stable Deployment whose pods carry
    `version: v1` and no track label, subsets by `version`, all traffic to subset `stable`."""
    cluster.create(DEPLOYMENTS, stable_deployment(image=STABLE_IMAGE, track=False))
    cluster.rolled_out(APP)
    cluster.create(DESTINATION_RULES, guides_destination_rule())
    if virtual_service:
        cluster.create(VIRTUAL_SERVICES, guides_virtual_service())


def set_spec(cluster: Cluster, kind: ResourceType, spec: dict[str, Any]) -> None:
    """The team edits the spec of its object named like the app."""
    cluster.of(kind).reconcile(APP, lambda current: {**(current or {}), "spec": spec})


def main_route(world: World) -> list[tuple[str, int]]:
    [route] = world.cluster.read(VIRTUAL_SERVICES, APP)["spec"]["http"]
    return [(d["destination"]["subset"], d.get("weight", 100)) for d in route["route"]]


def test_onboarding_with_the_guides_istio_objects_rolls_stable_only_for_the_new_version(
    world_for: Any,
) -> None:
    world: World = world_for("istio", AUTO_PLAN, install=install_the_guides_istio_objects)
    stable_before = world.cluster.read(DEPLOYMENTS, APP)

    answer = world.command(f"canary {APP} v2", user=ALICE)
    assert answer.startswith(":white_check_mark: Started a canary of shop-api v2"), answer

    world.wait_for(Phase.RUNNING, 0)
    wait_until(
        lambda: main_route(world) == [("stable", 75), ("canary", 25)],
        timeout_s=20,
        what="25 % to subset canary",
    )
    subsets = world.cluster.read(DESTINATION_RULES, APP)["spec"]["subsets"]
    assert subsets == guides_destination_rule()["spec"]["subsets"]  # adopted as they were
    canary_pods = world.cluster.ready_pods("version=v2")
    assert canary_pods and all(pod.startswith("shop-api-canary-") for pod in canary_pods)
    stable_pods = world.cluster.ready_pods("version=v1")
    assert len(stable_pods) == 4 and not any(p.startswith("shop-api-canary-") for p in stable_pods)
    assert (
        world.cluster.read(DEPLOYMENTS, APP)["metadata"]["generation"]
        == (stable_before["metadata"]["generation"])
    )

    world.wait_for(Phase.SUCCEEDED)
    world.wait_thread("shop-api v2 is released")
    stable_after = world.cluster.read(DEPLOYMENTS, APP)
    expected = copy.deepcopy(stable_before["spec"]["template"])
    expected["metadata"]["labels"]["version"] = "v2"
    expected["spec"]["containers"][0]["image"] = "registry.example/shop/api:v2"
    assert stable_after["spec"]["template"] == expected
    assert stable_after["metadata"]["generation"] == stable_before["metadata"]["generation"] + 1
    assert world.cluster.read(DESTINATION_RULES, APP)["spec"]["subsets"][0] == {
        "name": "stable",
        "labels": {"version": "v2"},
    }
    assert main_route(world) == [("stable", 100)]
    assert world.image("shop-api-canary") is None
    channel = world.slack.messages(RELEASES.id)
    assert [is_card(message) for message in channel] == [True]  # the card, and no alert
    assert "failed" not in channel[0]["text"].lower()


def test_a_start_the_router_could_not_route_is_refused_creating_nothing_and_alerting_nobody(
    world_for: Any,
) -> None:
    world: World = world_for(
        "istio", AUTO_PLAN, install=partial(install_the_guides_istio_objects, virtual_service=False)
    )
    cluster = world.cluster

    def namespace_objects() -> dict[str, list[tuple[str, str]]]:
        return {
            kind.plural: sorted(
                (item["metadata"]["name"], item["metadata"]["resourceVersion"])
                for item in cluster.of(kind).list_all()
            )
            for kind in (DEPLOYMENTS, SERVICES, DESTINATION_RULES, VIRTUAL_SERVICES)
        }

    before = namespace_objects()
    answer = world.command(f"canary {APP} v2", user=ALICE)
    assert answer.startswith(":no_entry_sign: Preflight refused the release of shop-api v2"), answer
    assert (
        f"⛔ virtualservices.networking.istio.io {cluster.namespace}/shop-api not found: name the "
        "VirtualService that routes the app's host in the router's virtual_service"
    ) in answer
    assert namespace_objects() == before

    cluster.create(VIRTUAL_SERVICES, guides_virtual_service())
    rule = guides_destination_rule()["spec"]
    rule["subsets"][0]["labels"]["tier"] = "gold"
    set_spec(cluster, DESTINATION_RULES, rule)
    before = namespace_objects()
    answer = world.command(f"canary {APP} v2", user=ALICE)
    assert "subset 'stable' selects {tier: gold, version: v1}" in answer, answer
    assert "remove {tier: gold} from the subset's labels" in answer
    time.sleep(1.0)  # room for anything wrongly started to reach the cluster or Slack
    assert namespace_objects() == before
    assert [d for d, _ in before["deployments"]] == [APP]
    assert world.store.active(APP) is None
    assert world.slack.messages(RELEASES.id) == []
    assert world.slack.calls("chat.postMessage") == []

    set_spec(cluster, DESTINATION_RULES, guides_destination_rule()["spec"])
    assert world.command(f"canary {APP} v2").startswith(":white_check_mark: Started a canary")
