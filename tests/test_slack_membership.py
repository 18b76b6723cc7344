"""bot.slack.membership.SlackMembership against the Slack stand-in, run by pytest: members come
from usergroups.users.list, are kept for the TTL, and any failure is MembershipUnavailable."""

from __future__ import annotations

import pytest

from bot.core.ports import MembershipUnavailable
from bot.slack.client import build_web_client
from bot.slack.membership import SlackMembership
from tests.infra.slack_standin import SlackStandIn

LEADS = "S0LEADS001"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def membership_on(slack: SlackStandIn, clock: Clock) -> SlackMembership:
    client = build_web_client(token=slack.bot_token, base_url=slack.api_url)
    return SlackMembership(client=client, ttl_s=60, clock=clock)


def test_members_are_asked_once_per_ttl(slack_api: SlackStandIn) -> None:
    slack_api.add_usergroup(LEADS, user_ids=["U0ANA", "U0BOB"])
    clock = Clock()
    membership = membership_on(slack_api, clock)

    assert membership.members(LEADS) == frozenset({"U0ANA", "U0BOB"})
    slack_api.add_usergroup(LEADS, user_ids=["U0ANA"])
    clock.now += 59
    assert membership.members(LEADS) == frozenset({"U0ANA", "U0BOB"})  # cached
    clock.now += 2
    assert membership.members(LEADS) == frozenset({"U0ANA"})
    calls = slack_api.calls("usergroups.users.list")
    assert [(c.params["usergroup"], c.ok) for c in calls] == [(LEADS, True), (LEADS, True)]


def test_forget_asks_again_at_once(slack_api: SlackStandIn) -> None:
    slack_api.add_usergroup(LEADS, user_ids=["U0ANA"])
    membership = membership_on(slack_api, Clock())
    membership.members(LEADS)
    slack_api.add_usergroup(LEADS, user_ids=["U0BOB"])
    membership.forget(LEADS)
    assert membership.members(LEADS) == frozenset({"U0BOB"})


@pytest.mark.parametrize("error", ["missing_scope", "fatal_error"])
def test_a_slack_error_is_membership_unavailable_and_not_cached(
    slack_api: SlackStandIn, error: str
) -> None:
    slack_api.add_usergroup(LEADS, user_ids=["U0ANA"])
    membership = membership_on(slack_api, Clock())
    slack_api.fail_next("usergroups.users.list", error=error)
    with pytest.raises(MembershipUnavailable, match=error):
        membership.members(LEADS)
    assert membership.members(LEADS) == frozenset({"U0ANA"})


def test_an_unknown_group_is_membership_unavailable(slack_api: SlackStandIn) -> None:
    with pytest.raises(MembershipUnavailable, match="no_such_subteam"):
        membership_on(slack_api, Clock()).members("S0NOSUCH01")


def test_slack_unreachable_is_membership_unavailable() -> None:
    client = build_web_client(token="xoxb-1", base_url="http://127.0.0.1:9/api/")
    with pytest.raises(MembershipUnavailable):
        SlackMembership(client=client).members(LEADS)
