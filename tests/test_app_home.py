"""App Home end to end: signed app_home_opened events and clicks reach a real `release-bot
serve` on the real Redis and apiserver; the Slack stand-in records every views.publish. A person
who opens Home sees the active releases, and those waiting for their approval on top when they
may give it; a transition refreshes it; a burst of transitions gives a bounded number of views;
Home's Approve button approves (read back from Redis), for channel members the rules allow."""

from __future__ import annotations

import json
import time
from typing import Any

from bot.core.release import Phase
from bot.redis.home import MIN_GAP_S, SETTLE_S
from bot.slack.cards import ACTION_APPROVE
from tests.infra.processes import wait_until
from tests.infra.release_world import APP, World
from tests.infra.slack_requests import ALICE, BOB, RELEASES, SlackUser

EVE = SlackUser("U0EVE00001", "eve")  # in the channel, may not approve
MALLORY = SlackUser("U0MALLORY1", "mallory")  # may approve by the rules, not in the channel
PLAN = (
    "    - {weight: 25, duration: 1s, approval: true}\n"
    "    - {weight: 50, duration: 1h, approval: true}\n"
)
RULES = f"{{approve: [{BOB.id}, {MALLORY.id}], four_eyes: true}}"
WAITING = "Waiting for your approval"


def home_world(world_for: Any) -> World:
    world: World = world_for("replicas", PLAN, authorization=RULES)
    members = [ALICE.id, BOB.id, EVE.id]
    world.slack.add_channel(RELEASES.id, name=RELEASES.name, members=members)
    return world


def views_of(world: World, user: SlackUser) -> list[dict[str, Any]]:
    return world.slack.published_home_views(user.id)


def open_home(world: World, user: SlackUser) -> dict[str, Any]:
    """`user` opens the Home tab; the view the bot published for it."""
    before = len(views_of(world, user))
    event = {"type": "app_home_opened", "user": user.id, "channel": "D0HOME0001", "tab": "home"}
    world.post(world.requests.event_callback(event))
    wait_until(lambda: len(views_of(world, user)) > before, timeout_s=10, what="a Home view")
    return views_of(world, user)[-1]


def text_of(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


def button(view: dict[str, Any], action_id: str) -> tuple[str, dict[str, Any]]:
    """(block id, element) of the first `action_id` button in `view`."""
    for block in view["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return block["block_id"], element
    raise AssertionError(f"no {action_id} button on Home: {text_of(view)[:300]}")


def click(world: World, view: dict[str, Any], action_id: str, user: SlackUser) -> None:
    block_id, element = button(view, action_id)
    action = {"type": "button", "action_id": action_id, "value": element["value"]}
    world.post(world.requests.view_action(view, action=action, block_id=block_id, user=user))


def test_home_shows_every_active_release_and_what_waits_for_the_viewer(world_for: Any) -> None:
    world = home_world(world_for)
    assert "No active releases." in text_of(open_home(world, BOB))

    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")
    release = world.wait_for(Phase.AWAITING_APPROVAL, 0)

    bob = text_of(open_home(world, BOB))
    assert f"✋ {WAITING} (1)" in bob
    assert f"*{APP} v2* · canary · ✋ Waiting for approval of stage 1/3 (25 %)" in bob
    assert "Traffic: stable v1 75 % · canary v2 25 %" in bob
    assert f"approval needed: <@{BOB.id}> or <@{MALLORY.id}>, not <@{ALICE.id}>" in bob
    assert button(open_home(world, BOB), ACTION_APPROVE)[1]["value"] == f"{release.id}:0"

    for other in (ALICE, EVE, MALLORY):  # the requester, no right, not in the channel
        seen = text_of(open_home(world, other))
        assert WAITING not in seen, other
        assert "Active releases (1)" in seen and f"*{APP} v2*" in seen


def test_a_click_on_home_approves_and_each_transition_refreshes_home(world_for: Any) -> None:
    world = home_world(world_for)
    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")
    world.wait_for(Phase.AWAITING_APPROVAL, 0)
    eve_home = open_home(world, EVE)
    bob_home = open_home(world, BOB)
    shown_to_bob = len(views_of(world, BOB))

    click(world, eve_home, ACTION_APPROVE, EVE)  # not allowed: refused, told on her Home
    wait_until(
        lambda: "approving shop-api needs" in text_of(views_of(world, EVE)[-1]),
        timeout_s=10,
        what="the refusal on Eve's Home",
    )
    assert world.release().approvals == ()

    click(world, bob_home, ACTION_APPROVE, BOB)
    release = world.wait_for(Phase.RUNNING, 1)
    assert [(a.by, a.stage_index) for a in release.approvals] == [(BOB.id, 0)]
    entry = world.store.history(APP, limit=5)[-1]
    assert (entry.actor, entry.action, entry.channel) == (BOB.id, "Approve", "app-home")

    def refreshed() -> bool:
        views = views_of(world, BOB)
        return len(views) > shown_to_bob and "stage 2/3 (50 %)" in text_of(views[-1])

    wait_until(refreshed, timeout_s=MIN_GAP_S + 5, what="Bob's Home showing stage 2")


def test_a_burst_of_transitions_gives_each_viewer_a_bounded_number_of_views(
    world_for: Any,
) -> None:
    world = home_world(world_for)
    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")
    world.wait_for(Phase.AWAITING_APPROVAL, 0)
    viewers = (ALICE, BOB)
    for viewer in viewers:
        open_home(world, viewer)
    before = {viewer: len(views_of(world, viewer)) for viewer in viewers}

    started = time.monotonic()
    for _ in range(25):  # 50 transitions, one after the other
        assert world.command(f"pause {APP}", user=EVE).startswith(":white_check_mark:")
        assert world.command(f"resume {APP}", user=EVE).startswith(":white_check_mark:")
    burst_s = time.monotonic() - started
    applied = [
        entry
        for entry in world.store.history(APP, limit=200)
        if entry.action in {"Pause", "Resume"} and entry.outcome == "applied"
    ]
    assert len(applied) == 50

    # The trailing edge: once the burst is over, each viewer is shown its end state.
    time.sleep(MIN_GAP_S + SETTLE_S + 2)
    bound = 2 + int(burst_s // MIN_GAP_S)
    for viewer in viewers:
        shown = views_of(world, viewer)[before[viewer] :]
        print(f"{viewer.name}: {len(shown)} views for 50 transitions in {burst_s:.1f} s")
        assert 1 <= len(shown) <= bound, (viewer, len(shown), bound)
        assert "Waiting for approval of stage 1/3" in text_of(shown[-1])
