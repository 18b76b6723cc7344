"""The App Home view and the start form as Block Kit, pure: Slack's limits (100 blocks a Home
view), the waiting-for-you section first, each row the card's buttons, and a form read back
from the state Slack sends."""

from __future__ import annotations

import json

from bot.core.plan import DEFAULT_PLAN
from bot.core.ports import HomeBoard
from bot.core.release import Phase
from bot.slack.cards import ACTION_APPROVE
from bot.slack.home import HOME_BLOCKS_MAX, home_view
from bot.slack.start_form import FormChoices, FormOrigin, read_form, start_form
from tests.releases import T0, run_in


def test_a_board_of_many_releases_stays_within_slacks_100_blocks() -> None:
    releases = tuple(
        run_in(Phase.AWAITING_APPROVAL).release.evolve(id=f"rel-{n}", app=f"app-{n}")
        for n in range(60)
    )
    done = run_in(Phase.SUCCEEDED).release
    board = HomeBoard(
        viewer="U0BOB",
        active=releases,
        waiting_for_viewer=frozenset({"rel-7"}),
        finished=(done,) * 10,
        may_start=True,
        notice=":no_entry_sign: approving app-3 needs <@U0ANA>",
    )

    view = home_view(board, now=T0)
    text = json.dumps(view["blocks"], ensure_ascii=False)

    assert view["type"] == "home" and len(view["blocks"]) <= HOME_BLOCKS_MAX
    assert text.index("approving app-3 needs") < text.index("Waiting for your approval (1)")
    assert text.index("*app-7 ") < text.index("Active releases (59)")
    assert "more: `/release list` shows them all." in text
    assert text.count("✅ *shop-api v2.4.1* · succeeded") == 10
    approve = [
        element
        for block in view["blocks"]
        for element in block.get("elements", [])
        if element.get("action_id") == ACTION_APPROVE
    ]
    assert approve[0]["value"] == "rel-7:" + str(releases[7].stage_index)


def test_a_form_is_read_back_from_the_state_slack_sends() -> None:
    origin = FormOrigin(channel="C0DEPLOYS", channel_name="deploys")
    choices = FormChoices(
        origin=origin,
        apps=("shop-api",),
        strategies=("canary", "bluegreen"),
        app="shop-api",
        strategy="canary",
        plans=(DEFAULT_PLAN,),
        plan=DEFAULT_PLAN,
        recent_versions=("v2.4.0", "v2.3.9"),
    )
    view = start_form(choices)
    blocks = json.dumps(view["blocks"], ensure_ascii=False)
    assert "Recent: v2.4.0, v2.3.9." in blocks
    assert "*Stages:* 0 % by header for 1h → 5 % for 2h → 50 % for 4h + approval → 100 %" in blocks

    chosen = {"type": "static_select", "selected_option": {"value": "shop-api"}}
    state = {
        "app": {"start_form.app": chosen},
        "version": {"start_form.version": {"type": "plain_text_input", "value": " v2.4.1 "}},
        "reason": {"start_form.reason": {"type": "plain_text_input", "value": None}},
    }
    values = read_form({**view, "state": {"values": state}})

    assert (values.origin, values.app, values.version, values.reason) == (
        origin,
        "shop-api",
        "v2.4.1",
        "",
    )
    assert values.strategy is None and values.plan is None  # not in the state: not chosen
