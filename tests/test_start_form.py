"""The start form end to end: a signed `/release canary` with nothing after it opens a modal
through the Slack stand-in's views.open, listing only the apps the person may start; choosing an
app re-draws it (views.update) with the app's plans and the chosen plan's stages; a submission
starts the release exactly as the command does (read back from Redis and the card), and a bad
one gets errors on the form's fields and changes nothing."""

from __future__ import annotations

import json
from typing import Any

from bot.core.release import Phase
from tests.infra.processes import wait_until
from tests.infra.release_world import APP, World
from tests.infra.slack_requests import ALICE, BOB, RELEASES, SlackUser

EVE = SlackUser("U0EVE00001", "eve")
PLAN = "    - {weight: 25, duration: 1h}\n"
MORE_APPS = "".join(
    f"  {name}:\n    namespace: {name}\n    workload: {name}\n    slack_channel: {RELEASES.id}\n"
    f"    plan: e2e\n    router: {{provider: replicas, service: {name}}}\n{rules}"
    for name, rules in (
        ("billing", ""),  # anyone in the channel may start it
        ("vault", f"    authorization: {{start: [{BOB.id}]}}\n"),
    )
)


def form_world(world_for: Any) -> World:
    rules = f"{{start: [{ALICE.id}, {BOB.id}]}}"
    world: World = world_for("replicas", PLAN, authorization=rules, more_apps=MORE_APPS)
    return world


def open_form(world: World, user: SlackUser) -> dict[str, Any]:
    before = len(world.slack.opened_views())
    assert world.post(world.requests.slash_command("canary", user=user)) == ""
    wait_until(
        lambda: len(world.slack.opened_views()) > before, timeout_s=10, what="the start form"
    )
    return world.slack.opened_views()[-1]


def element(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    (block,) = [block for block in view["blocks"] if block.get("block_id") == block_id]
    return dict(block["element"])


def options(view: dict[str, Any], block_id: str) -> list[str]:
    return [option["value"] for option in element(view, block_id)["options"]]


def selected(value: str) -> dict[str, Any]:
    return {
        "type": "static_select",
        "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value},
    }


def filled(app: str, version: str, *, plan: str = "e2e", reason: str = "") -> dict[str, Any]:
    """The form's state as Slack sends it once the person filled it in."""
    return {
        "app": {"start_form.app": selected(app)},
        "strategy": {"start_form.strategy": selected("canary")},
        "plan": {"start_form.plan": selected(plan)},
        "version": {"start_form.version": {"type": "plain_text_input", "value": version}},
        "reason": {"start_form.reason": {"type": "plain_text_input", "value": reason or None}},
    }


def choose_app(world: World, view: dict[str, Any], app: str, user: SlackUser) -> None:
    """`user` picks `app` in the form's app select (Slack sends the form's state with it)."""
    action = {"action_id": "start_form.app", **selected(app)}
    state = {"app": {"start_form.app": selected(app)}}
    request = world.requests.view_action(
        view, action=action, block_id="app", user=user, values=state
    )
    world.post(request)


def submit(world: World, view: dict[str, Any], values: dict[str, Any], user: SlackUser) -> Any:
    """The bot's answer to the submission: what Slack does with the modal."""
    response = world.bot.client.post_events(
        world.requests.view_submission(view, values=values, user=user)
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_form_lists_only_the_apps_the_person_may_start(world_for: Any) -> None:
    world = form_world(world_for)

    alice = open_form(world, ALICE)
    assert options(alice, "app") == ["billing", APP]  # not vault: only Bob may start it
    assert options(alice, "strategy") == ["canary", "bluegreen", "hybrid"]
    assert not any(block.get("block_id") == "plan" for block in alice["blocks"])  # no app yet
    assert options(open_form(world, BOB), "app") == ["billing", APP, "vault"]
    assert options(open_form(world, EVE), "app") == ["billing"]

    # choosing an app re-draws the form with its plans, the chosen one's stages, and its
    # recent versions
    choose_app(world, alice, APP, ALICE)
    wait_until(
        lambda: "plan" in json.dumps(world.slack.opened_views()[0]["blocks"]),
        timeout_s=10,
        what="the form re-drawn with the plan",
    )
    redrawn = world.slack.opened_views()[0]
    assert redrawn["id"] == alice["id"] and redrawn["hash"] != alice["hash"]
    assert options(redrawn, "plan") == ["e2e"]
    assert element(redrawn, "app")["initial_option"]["value"] == APP
    assert "*Stages:* 25 % for 1h → 100 %" in json.dumps(redrawn["blocks"], ensure_ascii=False)


def test_a_submission_starts_the_release_as_the_command_does(world_for: Any) -> None:
    world = form_world(world_for)
    form = open_form(world, ALICE)

    answer = submit(world, form, filled(APP, "v2", reason="weekly release"), ALICE)

    assert answer["response_action"] == "update"
    release = world.wait_for(Phase.RUNNING, 0)
    assert (release.version, release.requested_by, release.plan.name) == ("v2", ALICE.id, "e2e")
    assert world.card()["text"].startswith(f"{APP} v2: ")
    start = [entry for entry in world.store.history(APP) if entry.action == "start"][-1]
    assert (start.outcome, start.channel) == ("applied", RELEASES.id)
    assert start.detail == "v2 (plan e2e): weekly release"
    wait_until(
        lambda: "Started a canary of shop-api v2" in json.dumps(world.slack.opened_views()[0]),
        timeout_s=20,
        what="the modal showing the start",
    )
    again = open_form(world, ALICE)
    choose_app(world, again, APP, ALICE)
    wait_until(
        lambda: "Recent: v2." in json.dumps(world.slack.opened_views()[-1]),
        timeout_s=10,
        what="the recent versions hinted",
    )


def test_a_bad_submission_gets_field_errors_and_creates_nothing(world_for: Any) -> None:
    world = form_world(world_for)
    form = open_form(world, ALICE)
    before = world.state_snapshot()

    for values, user, field, error in (
        (filled(APP, "v2:"), ALICE, "version", "`v2:` is not a valid version: the tag after"),
        (filled(APP, "v2 --override x"), ALICE, "version", "the version is one word"),
        (filled(APP, "v2"), EVE, "app", f"starting {APP} needs @{ALICE.id} or @{BOB.id}"),
        (filled(APP, "v2", plan="nope"), ALICE, "plan", "unknown plan 'nope'"),
    ):
        answer = submit(world, form, values, user)
        assert answer["response_action"] == "errors", answer
        assert list(answer["errors"]) == [field]
        assert answer["errors"][field].startswith(error), answer
    assert world.state_snapshot() == before
    denied = [entry for entry in world.store.history(APP) if entry.actor == EVE.id]
    assert [entry.outcome.startswith("denied: ") for entry in denied] == [True]

    assert world.command(f"canary {APP} v2", user=BOB).startswith(":white_check_mark:")
    busy = submit(world, form, filled(APP, "v3"), ALICE)
    assert busy["errors"] == {
        "app": f"{APP} already has an active release: v2 started by @{BOB.id}"
    }
    assert world.release().version == "v2"
    assert world.command("freeze billing 1h db migration", user=BOB).startswith(
        ":white_check_mark:"
    )
    frozen = submit(world, form, filled("billing", "v3"), ALICE)
    assert frozen["errors"]["app"].startswith("billing is frozen until "), frozen
    assert world.store.active("billing") is None


def test_a_refusal_after_the_form_closed_shows_the_form_again_as_it_was(world_for: Any) -> None:
    world = form_world(world_for)
    form = open_form(world, ALICE)

    answer = submit(world, form, filled(APP, "v1", reason="same again"), ALICE)  # stable runs v1

    assert answer["response_action"] == "update"

    def shown_again() -> bool:
        return "already runs v1" in json.dumps(world.slack.opened_views()[0])

    wait_until(shown_again, timeout_s=20, what="the refusal in the form")
    again = world.slack.opened_views()[0]
    assert element(again, "version")["initial_value"] == "v1"
    assert element(again, "reason")["initial_value"] == "same again"
    assert element(again, "app")["initial_option"]["value"] == APP
    assert world.store.active(APP) is None
