"""The pure authorization decision (bot.core.authorization), run by pytest: who may start,
approve and promote, from which channels, and what a denial says; no Slack, no Redis."""

from __future__ import annotations

import pytest

from bot.core.apps import AppConfig, AuthorizationConfig, ChannelRef
from bot.core.authorization import (
    Allowed,
    Denied,
    Memberships,
    Right,
    SeenChannel,
    allowed_channels,
    decide,
    groups_to_resolve,
)
from bot.entrypoints.demo import DEMO_APP

ANA, BOB, EVE = "U0ANA", "U0BOB", "U0EVE"
LEADS = "S0123"
HOME = SeenChannel(DEMO_APP.slack_channel.value, "demo")
OPS = SeenChannel("C0OPSROOM", "ops")
SHOP = SeenChannel("C0SHOP0001", "shop-releases")
ELSEWHERE = SeenChannel("C0RANDOM01", "random")


def app_with(**rules: object) -> AppConfig:
    return DEMO_APP.model_copy(
        update={"name": "shop-api", "authorization": AuthorizationConfig.model_validate(rules)}
    )


GATED = app_with(start=[ANA], approve=[LEADS, ANA], promote=[LEADS])


def test_empty_lists_let_anyone_in_the_apps_channel_do_anything() -> None:
    app = app_with()
    for right in Right:
        assert decide(app, right, user=EVE, channel=HOME, memberships={}) == Allowed()


@pytest.mark.parametrize("right", [Right.START, Right.APPROVE])
def test_a_user_listed_by_id_may(right: Right) -> None:
    assert decide(GATED, right, user=ANA, channel=HOME, memberships={}) == Allowed()


def test_a_member_of_a_listed_group_may() -> None:
    memberships = {LEADS: frozenset({BOB})}
    assert (
        decide(GATED, Right.APPROVE, user=BOB, channel=HOME, memberships=memberships) == Allowed()
    )
    assert (
        decide(GATED, Right.PROMOTE, user=BOB, channel=HOME, memberships=memberships) == Allowed()
    )


def test_a_denial_says_what_would_be_needed() -> None:
    memberships = {LEADS: frozenset({BOB})}
    denied = decide(GATED, Right.APPROVE, user=EVE, channel=HOME, memberships=memberships)
    assert denied == Denied("approving shop-api needs a member of <!subteam^S0123> or <@U0ANA>")
    started = decide(GATED, Right.START, user=BOB, channel=HOME, memberships=memberships)
    assert started == Denied("starting shop-api needs <@U0ANA>")
    promoted = decide(GATED, Right.PROMOTE, user=ANA, channel=HOME, memberships=memberships)
    assert promoted == Denied("promoting shop-api needs a member of <!subteam^S0123>")


def test_a_user_is_judged_by_id_never_by_a_name() -> None:
    app = app_with(approve=[ANA])
    denied = decide(app, Right.APPROVE, user="ana", channel=HOME, memberships={})
    assert isinstance(denied, Denied)


@pytest.mark.parametrize("memberships", [{LEADS: None}, {}], ids=["unresolved", "not asked"])
def test_an_unresolvable_group_fails_closed_for_gated_rights(memberships: Memberships) -> None:
    denied = decide(GATED, Right.PROMOTE, user=BOB, channel=HOME, memberships=memberships)
    assert denied == Denied(
        "promoting shop-api needs a member of <!subteam^S0123>; Slack could not be asked who is "
        "in <!subteam^S0123>, so it is refused"
    )
    # ...but a user listed by id does not depend on Slack
    assert decide(GATED, Right.APPROVE, user=ANA, channel=HOME, memberships=memberships) == (
        Allowed()
    )


def test_stopping_harm_needs_only_the_channel_even_when_slack_is_down() -> None:
    for user in (ANA, BOB, EVE):
        assert decide(GATED, Right.CHANNEL, user=user, channel=HOME, memberships={}) == Allowed()


def test_no_group_is_resolved_when_the_user_is_listed_or_nobody_is() -> None:
    assert groups_to_resolve(GATED, Right.APPROVE, ANA) == ()
    assert groups_to_resolve(GATED, Right.APPROVE, BOB) == (LEADS,)
    assert groups_to_resolve(GATED, Right.CHANNEL, BOB) == ()
    assert groups_to_resolve(app_with(), Right.PROMOTE, BOB) == ()


def test_an_empty_channel_list_means_the_apps_slack_channel_only() -> None:
    app = app_with()
    assert allowed_channels(app) == (DEMO_APP.slack_channel,)
    denied = decide(app, Right.CHANNEL, user=ANA, channel=ELSEWHERE, memberships={})
    assert denied == Denied(
        f"shop-api is released from <#{HOME.id}> only; nothing was changed here"
    )


def test_listed_channels_match_by_id_or_by_name() -> None:
    app = app_with(channels=["#shop-releases", OPS.id])
    assert allowed_channels(app) == (ChannelRef("shop-releases"), ChannelRef(OPS.id))
    for channel in (SHOP, OPS):
        assert decide(app, Right.CHANNEL, user=EVE, channel=channel, memberships={}) == Allowed()
    # a name rule needs the name: a click whose payload has no channel name does not match it
    nameless = SeenChannel(SHOP.id)
    for channel in (nameless, HOME, ELSEWHERE, SeenChannel("shop-releases")):
        denied = decide(app, Right.CHANNEL, user=EVE, channel=channel, memberships={})
        assert denied == Denied(
            "shop-api is released from #shop-releases or <#C0OPSROOM> only; nothing was changed "
            "here"
        )


def test_the_channel_is_checked_before_any_right() -> None:
    denied = decide(GATED, Right.START, user=ANA, channel=ELSEWHERE, memberships={})
    assert isinstance(denied, Denied) and "released from" in denied.reason


def test_a_caller_outside_slack_has_no_channel_to_check() -> None:
    assert decide(GATED, Right.START, user=ANA, channel=None, memberships={}) == Allowed()
    assert isinstance(decide(GATED, Right.START, user=EVE, channel=None, memberships={}), Denied)
