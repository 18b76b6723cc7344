"""Who may change production, end to end: signed Slack requests reach a real `release-bot serve`
on the real Redis and apiserver, and the Slack stand-in answers usergroups.users.list. Refused
starts, approvals and promotions change nothing (Redis and the cluster compared before and
after) and are audited; a group member's approval and anyone's rollback in the channel go
through; a command from a channel the app does not allow is refused."""

from __future__ import annotations

import time
from typing import Any

from bot.core.ports import HistoryEntry
from bot.core.release import Phase
from bot.slack.cards import ACTION_APPROVE
from tests.infra.release_world import APP, World
from tests.infra.slack_requests import ALICE, BOB, RELEASES, SignedRequest, SlackChannel, SlackUser
from tests.infra.slack_standin import TEAM_ID

EVE = SlackUser("U0EVE00001", "eve")  # in the channel, no rights at all
LEADS = "S0LEADS001"  # BOB is a member
RANDOM = SlackChannel("C0RANDOM01", "random")
PLAN = (
    "    - {weight: 25, duration: 1s, approval: true}\n"
    "    - {weight: 50, duration: 1h, approval: true}\n"
)
RULES = f"{{start: [{ALICE.id}], approve: [{LEADS}], promote: [{ALICE.id}]}}"


def denials(world: World, user: SlackUser) -> list[HistoryEntry]:
    return [
        entry
        for entry in world.store.history(APP, limit=1000)
        if entry.actor == user.id and entry.outcome.startswith("denied: ")
    ]


def answer_of(world: World, request: SignedRequest) -> dict[str, Any]:
    """What the person saw: the first response to the request (its text and response_type)."""
    text = world.send(request)
    url_id = [r for r in world.slack.responses() if r["text"] == text]
    assert url_id, f"no response to the request: {text!r}"
    return url_id[-1]


def settled_snapshot(world: World, *, quiet_s: float = 1.0, timeout_s: float = 30) -> Any:
    """The state snapshot once nothing has changed it for `quiet_s`: the canary's rollout and
    the card's updates are done, so whatever changes after is the request's doing."""
    deadline = time.monotonic() + timeout_s
    snapshot = world.state_snapshot()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        again = world.state_snapshot()
        if again == snapshot:
            return snapshot
        snapshot = again
    raise AssertionError(f"the release world never settled within {timeout_s} s")


def assert_refused_and_unchanged(
    world: World, request: SignedRequest, *, user: SlackUser, says: str
) -> HistoryEntry:
    before, denied_before = settled_snapshot(world), len(denials(world, user))
    answer = answer_of(world, request)
    assert answer["text"] == f":no_entry_sign: {says}"
    assert answer["response_type"] == "ephemeral"
    time.sleep(0.5)  # a change the request made would be saved by now (it was answered)
    assert world.state_snapshot() == before
    audited = denials(world, user)
    assert len(audited) == denied_before + 1, [e.outcome for e in audited]
    newest = max(audited, key=lambda entry: entry.at)
    assert newest.outcome == f"denied: {says}"
    return newest


def test_only_those_the_rules_name_may_start_approve_and_promote(world_for: Any) -> None:
    world: World = world_for("replicas", PLAN, authorization=RULES)
    world.slack.add_usergroup(LEADS, user_ids=[BOB.id])

    start = world.requests.slash_command(f"canary {APP} v2", user=EVE)
    entry = assert_refused_and_unchanged(
        world, start, user=EVE, says=f"starting {APP} needs <@{ALICE.id}>"
    )
    assert (entry.action, entry.channel, entry.release_id) == ("start", RELEASES.id, "-")
    assert world.store.active(APP) is None

    elsewhere = world.requests.slash_command(f"canary {APP} v2", user=ALICE, channel=RANDOM)
    entry = assert_refused_and_unchanged(
        world,
        elsewhere,
        user=ALICE,
        says=f"{APP} is released from <#{RELEASES.id}> only; nothing was changed here",
    )
    assert entry.channel == RANDOM.id

    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")
    release = world.wait_for(Phase.AWAITING_APPROVAL, 0)

    # Slack cannot say who is in the group (asked first: nothing cached yet): the approval
    # fails closed, and the failure is not remembered
    world.slack.fail_next("usergroups.users.list", error="fatal_error")
    assert_refused_and_unchanged(
        world,
        world.click(ACTION_APPROVE, user=BOB),
        user=BOB,
        says=f"approving {APP} needs a member of <!subteam^{LEADS}>; Slack could not be asked "
        f"who is in <!subteam^{LEADS}>, so it is refused",
    )
    assert world.store.active(APP) is not None
    assert world.release().approvals == ()

    approve = world.click(ACTION_APPROVE, user=EVE)
    entry = assert_refused_and_unchanged(
        world, approve, user=EVE, says=f"approving {APP} needs a member of <!subteam^{LEADS}>"
    )
    assert (entry.action, entry.release_id) == ("Approve", release.id)

    promote = world.requests.slash_command(f"promote {APP}", user=EVE)
    entry = assert_refused_and_unchanged(
        world, promote, user=EVE, says=f"promoting {APP} needs <@{ALICE.id}>"
    )
    assert entry.action == "Promote"

    assert world.post(world.click(ACTION_APPROVE, user=BOB)) == ""
    moved_on = world.wait_for(Phase.RUNNING, 1)
    assert [(a.by, a.stage_index) for a in moved_on.approvals] == [(BOB.id, 0)]
    asked = world.slack.calls("usergroups.users.list")
    assert {c.params["usergroup"] for c in asked} == {LEADS}


def test_anyone_in_the_channel_may_roll_back_even_when_slack_is_down(world_for: Any) -> None:
    world: World = world_for("replicas", PLAN, authorization=RULES)
    world.slack.add_usergroup(LEADS, user_ids=[BOB.id])
    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")
    world.wait_for(Phase.AWAITING_APPROVAL, 0)

    world.slack.fail_next("usergroups.users.list", error="fatal_error", times=5)
    answer = world.command(f"rollback {APP} it looks wrong", user=EVE)
    assert answer.startswith(":white_check_mark:"), answer
    done = world.wait_for(Phase.ROLLED_BACK)
    assert done.version == "v2"
    assert world.image("shop-api-canary") is None
    assert not denials(world, EVE)
    assert world.slack.calls("usergroups.users.list") == []  # rollback never asks


def test_a_group_change_slack_announces_is_heeded_at_once(world_for: Any) -> None:
    world: World = world_for("replicas", PLAN, authorization=RULES)
    world.slack.add_usergroup(LEADS, user_ids=[])
    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")
    world.wait_for(Phase.AWAITING_APPROVAL, 0)
    says = f"approving {APP} needs a member of <!subteam^{LEADS}>"
    assert_refused_and_unchanged(world, world.click(ACTION_APPROVE, user=BOB), user=BOB, says=says)

    world.slack.add_usergroup(LEADS, user_ids=[BOB.id])  # within the cache's 60 s
    changed = {
        "type": "subteam_members_changed",
        "subteam_id": LEADS,
        "team_id": TEAM_ID,
        "date_previous_update": 1446670362,
        "date_update": 1492906952,
        "added_users": [BOB.id],
        "added_users_count": "1",
        "removed_users": [],
        "removed_users_count": "0",
    }
    assert world.post(world.requests.event_callback(changed)) == ""

    assert world.post(world.click(ACTION_APPROVE, user=BOB)) == ""
    world.wait_for(Phase.RUNNING, 1)
    assert len(world.slack.calls("usergroups.users.list")) == 2
