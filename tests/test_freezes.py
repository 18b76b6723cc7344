"""Freeze windows, one-off freezes and break-glass overrides, run by pytest.

The pure freeze decision (bot.core.freezes) and the apps-file loader on their own; then the
release service on the real Redis (fixture `redis_client`) with the demo's simulated cluster, a
controllable clock and an announcer that records what it would post.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from bot.application.apps_file import load_config
from bot.application.service import ReleaseService
from bot.core.apps import AppConfig, BotConfig, ChannelRef, FreezeWindow
from bot.core.commands import parse_command
from bot.core.freezes import OneOffFreeze, Window, frozen_at
from bot.core.machine import Advance, Notify, Pause, Promote, Rollback
from bot.core.plan import Plan, Stage
from bot.core.ports import SlackRefs
from bot.core.release import NoticeKind, Phase, Release, desired_traffic
from bot.entrypoints.demo import DEMO_APP, DEMO_PLAN, SimulatedCluster, Transcript
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore
from bot.slack.cards import release_card
from handlers.commands import outcome_of
from tests.test_config import VALID_APP, problems_in, write_config

APP = DEMO_APP.name
ANA, BOB, CAROL = "U0ANA", "U0BOB", "U0CAROL"
GLASS_GROUP = "S0GLASS"
COMMANDS = "C0DEPLOYS"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday
WEEKEND = Window(
    rrule="FREQ=WEEKLY;BYDAY=FR;BYHOUR=16", duration_s=64 * 3600, timezone="Europe/Berlin"
)


# ---------------------------------------------------------------- the decision, pure


def test_a_weekly_window_is_read_in_its_time_zone_and_lasts_its_duration() -> None:
    friday_16_berlin = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # CET is UTC+1
    assert (
        frozen_at(friday_16_berlin - timedelta(seconds=1), windows=[WEEKEND], one_offs=[]) is None
    )
    frozen = frozen_at(friday_16_berlin, windows=[WEEKEND], one_offs=[])
    assert frozen is not None
    assert frozen.until == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # Monday 08:00 Berlin
    assert frozen_at(frozen.until, windows=[WEEKEND], one_offs=[]) is None


def test_a_window_over_the_dst_change_starts_at_local_time_and_lasts_real_hours() -> None:
    # 2026-03-27 is a Friday in CET (UTC+1); summer time starts on Sunday the 29th.
    frozen = frozen_at(datetime(2026, 3, 27, 15, 0, tzinfo=UTC), windows=[WEEKEND], one_offs=[])
    assert frozen is not None and frozen.until == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    # In summer (UTC+2) 16:00 Berlin is 14:00 UTC.
    assert frozen_at(datetime(2026, 4, 3, 14, 0, tzinfo=UTC), windows=[WEEKEND], one_offs=[])
    assert not frozen_at(datetime(2026, 4, 3, 13, 59, tzinfo=UTC), windows=[WEEKEND], one_offs=[])


def test_a_one_off_freeze_that_touches_a_window_extends_it_and_keeps_its_own_reason() -> None:
    monday = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    one_off = OneOffFreeze(
        scope="all",
        by=ANA,
        reason="release train",
        at=(monday - timedelta(hours=1)).isoformat(),
        until=(monday + timedelta(hours=3)).isoformat(),
    )
    frozen = frozen_at(monday - timedelta(hours=2), windows=[WEEKEND], one_offs=[one_off])
    assert frozen is not None
    assert frozen.until == monday + timedelta(hours=3)
    assert frozen.reason == "a recurring freeze window"
    ended = frozen_at(monday + timedelta(hours=3), windows=[WEEKEND], one_offs=[one_off])
    assert ended is None


def test_an_interval_counts_from_a_fixed_anchor_so_every_other_week_stays_put() -> None:
    fortnightly = Window(
        rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=FR;BYHOUR=16", duration_s=3600, timezone="UTC"
    )
    fridays = [datetime(2026, 12, 25, 16, 30, tzinfo=UTC) + timedelta(weeks=n) for n in range(4)]
    frozen = [frozen_at(at, windows=[fortnightly], one_offs=[]) is not None for at in fridays]
    assert frozen in ([True, False, True, False], [False, True, False, True])


# ---------------------------------------------------------------- the apps file

FREEZES = """\
freezes:
  - {rrule: "FREQ=WEEKLY;BYDAY=FR;BYHOUR=16", duration: 64h, timezone: Europe/Berlin,
     reason: weekend}
break_glass: [U0CAROL, S0GLASS]
"""


def test_the_loader_reads_freezes_for_all_and_per_app_and_break_glass(tmp_path: Path) -> None:
    own = "    freezes: [{rrule: FREQ=DAILY;BYHOUR=2, duration: 30m}]\n"
    config = load_config(write_config(tmp_path, FREEZES + VALID_APP + own))
    assert config.break_glass == (CAROL, GLASS_GROUP)
    assert [window.reason for window in config.freezes] == ["weekend"]
    windows = config.freeze_windows("shop-api")
    assert [(w.rrule, w.duration_s, w.timezone) for w in windows] == [
        ("FREQ=WEEKLY;BYDAY=FR;BYHOUR=16", 64 * 3600, "Europe/Berlin"),
        ("FREQ=DAILY;BYHOUR=2", 1800, "UTC"),
    ]


@pytest.mark.parametrize(
    "window, problem",
    [
        (
            '{rrule: "FREQ=SOMETIMES", duration: 1h}',
            "freezes[0]: rrule 'FREQ=SOMETIMES' is not an iCalendar RRULE",
        ),
        (
            '{rrule: "FREQ=DAILY", duration: 1h, timezone: Mars/Olympus}',
            "freezes[0].timezone: 'Mars/Olympus' is not a time zone name",
        ),
        ('{rrule: "FREQ=DAILY", duration: 0s}', "freezes[0].duration: must be longer than 0s"),
        (
            '{rrule: "FREQ=HOURLY;BYMINUTE=5", duration: 10m}',
            "freezes[0]: rrule 'FREQ=HOURLY;BYMINUTE=5' is not an iCalendar RRULE (freeze windows"
            " recur daily at most often",
        ),
        ('{rrule: "FREQ=DAILY"}', "freezes[0].duration: "),
    ],
    ids=["rrule", "timezone", "zero duration", "hourly", "no duration"],
)
def test_a_bad_window_is_a_clear_problem(tmp_path: Path, window: str, problem: str) -> None:
    (found,) = problems_in(write_config(tmp_path, f"freezes: [{window}]\n" + VALID_APP))
    assert problem in found, found


# ---------------------------------------------------------------- the service on Redis


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        self.at += timedelta(milliseconds=1)
        return self.at

    def skip(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class RecordingAnnouncer:
    def __init__(self) -> None:
        self.notices: list[Notify] = []

    def show_card(self, release: Release) -> SlackRefs:
        return SlackRefs(card_ts=release.card_ts or "1.0", thread_ts=release.thread_ts or "1.0")

    def notify(self, release: Release, notice: Notify) -> None:
        self.notices.append(notice)


def app_typed_in(channel: str) -> AppConfig:
    """The demo app, taking commands in `channel` as well as its own."""
    channels = (ChannelRef(channel), DEMO_APP.slack_channel)
    rules = DEMO_APP.authorization.model_copy(update={"channels": channels})
    return DEMO_APP.model_copy(update={"authorization": rules})


class GroupsOf:
    """A stand-in MembershipPort: the user groups a test names, with their members."""

    def __init__(self, groups: dict[str, set[str]]) -> None:
        self._groups = groups

    def members(self, group_id: str) -> frozenset[str]:
        return frozenset(self._groups.get(group_id, set()))

    def forget(self, group_id: str) -> None:
        """Nothing is cached here."""


class World:
    def __init__(
        self,
        client: redis.Redis,
        *,
        windows: tuple[FreezeWindow, ...] = (),
        membership: dict[str, set[str]] | None = None,
        plan: Plan = DEMO_PLAN,
        starters: tuple[str, ...] = (),
    ) -> None:
        self.clock = Clock()
        self.store = ReleaseStore(client)
        self.announcer = RecordingAnnouncer()
        app = app_typed_in(COMMANDS)
        rules = app.authorization.model_copy(update={"start": starters})
        config = BotConfig(
            source="tests",
            apps={APP: app.model_copy(update={"plan": plan, "authorization": rules})},
            plans={DEMO_PLAN.name: DEMO_PLAN},
            freezes=windows,
            break_glass=(CAROL, GLASS_GROUP),
        )
        resolver = None if membership is None else GroupsOf(membership)
        self.service = ReleaseService(
            config=config,
            store=self.store,
            leases=Leases(store=self.store),
            cluster=SimulatedCluster(transcript=Transcript()),
            announcer=self.announcer,
            clock=self.clock,
            membership=resolver,
        )

    def start(self, user: str = ANA, override: str | None = None) -> Release | None:
        outcome = self.service.start(
            app_name=APP, version="v2", plan_name=None, user=user, channel=COMMANDS,
            override=override,
        )  # fmt: skip
        self.last_message = outcome.message
        return outcome.release if outcome.applied else None

    def release(self) -> Release:
        stored = self.store.active(APP)
        assert stored is not None
        return stored.release

    def tick(self, seconds: float) -> Release:
        self.clock.skip(seconds)
        self.service.tick()
        return self.release()

    def running_stage_zero(self) -> Release:
        assert self.start() is not None
        release = self.tick(0.1)  # the canary is ready: stage 1 (0 %, 2 s)
        assert (release.phase, release.stage_index) == (Phase.RUNNING, 0)
        return release


def window(rrule: str, duration: str, reason: str) -> FreezeWindow:
    return FreezeWindow.model_validate({"rrule": rrule, "duration": duration, "reason": reason})


def test_a_start_during_a_recurring_freeze_is_refused_with_the_window_s_end(
    redis_client: redis.Redis,
) -> None:
    world = World(redis_client, windows=(window("FREQ=DAILY;BYHOUR=12", "1h", "lunch"),))

    assert world.start() is None

    assert world.last_message.startswith("shop-api is frozen until 2026-11-26 13:00 UTC, lunch")
    assert world.store.active(APP) is None
    (entry,) = world.store.history(APP)
    assert (entry.action, entry.outcome[:8], entry.actor) == ("start", "refused:", ANA)
    world.clock.skip(3600)
    assert world.start() is not None  # the window is over


def test_a_running_release_holds_at_its_gate_during_a_window_and_goes_on_after(
    redis_client: redis.Redis,
) -> None:
    # 12:00:30 to 12:01:30 UTC every day; the release starts at 12:00.
    brief = window("FREQ=DAILY;BYHOUR=12;BYMINUTE=0;BYSECOND=30", "60s", "deploy drill")
    world = World(redis_client, windows=(brief,))
    world.running_stage_zero()

    held = world.tick(40)  # 12:00:40, frozen; stage 1's 2 s are up

    assert held.phase is Phase.PAUSED and held.stage_index == 0
    assert held.pause is not None and held.pause.by is None
    assert held.pause.reason == "frozen until 2026-11-26 12:01 UTC, deploy drill"
    assert desired_traffic(held).canary_weight == 0
    assert "holds at stage 1/4 (0 %)" in world.announcer.notices[-1].text
    assert world.tick(30).phase is Phase.PAUSED  # 12:01:10, still frozen

    resumed = world.tick(30)  # 12:01:40: the window is over
    assert (resumed.phase, resumed.stage_index) == (Phase.RUNNING, 0)
    assert "the freeze of shop-api is over" in world.announcer.notices[-1].text
    widened = world.tick(0.1)
    assert (widened.phase, widened.stage_index) == (Phase.RUNNING, 1)
    assert desired_traffic(widened).canary_weight == 5


def test_a_canary_ready_during_a_freeze_waits_out_of_a_first_stage_with_public_traffic(
    redis_client: redis.Redis,
) -> None:
    straight_to_ten = Plan(
        name="ten", stages=(Stage(weight=10, duration_s=2), Stage(weight=100, duration_s=0))
    )
    world = World(redis_client, plan=straight_to_ten)
    assert world.start() is not None
    assert world.service.freeze(scope=APP, duration_s=900, user=BOB, reason="incident").applied

    waiting = world.tick(30)  # the canary is long ready, but stage 1 would give it 10 %
    assert waiting.phase is Phase.STARTING
    assert desired_traffic(waiting).canary_weight == 0
    # past the 10 min canary-ready deadline: a canary that is ready never fails it
    assert world.tick(660).phase is Phase.STARTING

    entered = world.tick(300)  # the freeze is over
    assert (entered.phase, entered.stage_index) == (Phase.RUNNING, 0)
    assert desired_traffic(entered).canary_weight == 10


def test_a_lock_refuses_new_starts_only_a_running_release_still_widens(
    redis_client: redis.Redis,
) -> None:
    world = World(redis_client)
    world.running_stage_zero()
    assert world.service.lock(app_name=APP, user=BOB, reason="db migration").applied

    assert world.tick(3).stage_index == 1  # the stage timer moved it on to 5 %


def test_a_one_off_freeze_holds_a_running_release_and_unfreeze_lets_it_go_on(
    redis_client: redis.Redis,
) -> None:
    world = World(redis_client)
    world.running_stage_zero()
    frozen = world.service.freeze(scope="all", duration_s=3600, user=BOB, reason="incident")
    assert frozen.applied

    held = world.tick(3)
    assert held.phase is Phase.PAUSED and held.stage_index == 0
    assert held.pause is not None and "incident (set by <@U0BOB>)" in held.pause.reason
    advance = world.service.act(app_name=APP, event=Advance(by=BOB), actor=BOB)
    assert not advance.applied and "frozen until" in advance.message  # paused: nothing to advance

    assert world.service.unfreeze(scope="all", user=BOB).applied
    assert world.tick(1).phase is Phase.RUNNING
    assert world.tick(0.1).stage_index == 1
    actions = [(e.action, e.outcome[:7]) for e in world.store.history("all")]
    assert actions == [("freeze", "applied"), ("unfreeze", "applied")]


def test_during_a_freeze_widening_steps_are_refused_but_rollback_and_pause_work(
    redis_client: redis.Redis,
) -> None:
    world = World(redis_client)
    world.running_stage_zero()
    assert world.service.freeze(scope=APP, duration_s=600, user=BOB, reason="incident").applied

    promote = world.service.act(app_name=APP, event=Promote(by=BOB), actor=BOB)
    assert not promote.applied
    assert promote.message.startswith("shop-api is frozen until 2026-11-26 12:10 UTC, incident")
    assert world.release().stage_index == 0
    assert world.store.history(APP)[-1].outcome.startswith("refused: shop-api is frozen")

    assert world.service.act(app_name=APP, event=Pause(by=BOB, reason="look"), actor=BOB).applied
    rollback = world.service.act(app_name=APP, event=Rollback(by=BOB, reason="bad"), actor=BOB)
    assert rollback.applied and world.release().phase is Phase.ROLLING_BACK


def test_an_override_by_a_break_glass_member_is_announced_audited_and_flagged(
    redis_client: redis.Redis,
) -> None:
    world = World(redis_client)
    assert world.service.freeze(scope="all", duration_s=3600, user=BOB, reason="incident").applied
    assert world.service.lock(app_name=APP, user=BOB, reason="migration").applied

    started = world.start(CAROL, override="sev1 checkout down")

    assert started is not None, world.last_message
    (override,) = started.overrides
    assert (override.by, override.reason, override.action) == (CAROL, "sev1 checkout down", "start")
    alert = next(n for n in world.announcer.notices if n.kind is NoticeKind.OVERRIDE)
    assert alert.in_channel
    assert "<@U0CAROL>" in alert.text and "sev1 checkout down" in alert.text
    entry = world.store.history(APP)[-1]
    assert (entry.action, entry.outcome, entry.override) == (
        "start",
        "applied",
        "sev1 checkout down",
    )
    world.tick(0.1)
    card = release_card(world.release(), now=world.clock.at)
    assert "Break-glass override" in str(card.payload())

    # the freeze still holds the release; a member's promote goes through it, and is flagged too
    assert world.tick(3).phase is Phase.PAUSED
    world.service.act(app_name=APP, event=Pause(by=CAROL), actor=CAROL)  # already paused: refused
    assert world.service.act(app_name=APP, event=Rollback(by=CAROL), actor=CAROL).applied


def test_an_override_through_a_freeze_on_promote_is_flagged_for_the_release(
    redis_client: redis.Redis,
) -> None:
    world = World(redis_client)
    world.running_stage_zero()
    assert world.service.freeze(scope=APP, duration_s=600, user=BOB, reason="incident").applied

    promoted = world.service.act(
        app_name=APP, event=Promote(by=CAROL), actor=CAROL, override="hotfix must reach 5 %"
    )

    assert promoted.applied, promoted.message
    release = world.release()
    assert release.stage_index == 1 and [o.action for o in release.overrides] == ["Promote"]
    assert world.store.history(APP)[-1].override == "hotfix must reach 5 %"
    assert world.announcer.notices[-1].kind is NoticeKind.OVERRIDE


def test_an_override_by_anyone_else_is_refused_and_audited(redis_client: redis.Redis) -> None:
    world = World(redis_client)
    assert world.service.freeze(scope="all", duration_s=3600, user=BOB, reason="incident").applied

    assert world.start(ANA, override="I know what I am doing") is None

    assert "may not use `--override`" in world.last_message
    assert world.store.active(APP) is None
    entry = world.store.history(APP)[-1]
    assert (entry.actor, entry.action, entry.override) == (ANA, "start", "I know what I am doing")
    assert entry.outcome.startswith("refused:")
    assert not [n for n in world.announcer.notices if n.kind is NoticeKind.OVERRIDE]


def test_a_group_in_break_glass_counts_only_with_a_membership_resolver(
    redis_client: redis.Redis,
) -> None:
    without = World(redis_client)
    assert not without.service.may_break_glass(BOB)
    assert without.service.may_break_glass(CAROL)
    with_resolver = World(redis_client, membership={GLASS_GROUP: {BOB}})
    assert with_resolver.service.may_break_glass(BOB)
    assert not with_resolver.service.may_break_glass(ANA)


def test_the_listener_maps_freeze_unfreeze_and_override_to_the_service(
    redis_client: redis.Redis,
) -> None:
    world = World(redis_client)

    def typed(text: str, user: str) -> str:
        outcome = outcome_of(
            world.service, parse_command(text), user=user, channel=COMMANDS, channel_name=""
        )
        return outcome.message

    assert typed("freeze shop-api 2h release train", BOB).startswith(
        f"<@{BOB}> froze shop-api until 2026-11-26 14:00 UTC (release train)"
    )
    assert "is frozen until" in typed("canary shop-api v2", ANA)
    assert "may not use" in typed('canary shop-api v2 --override "trust me"', ANA)
    assert typed('canary shop-api v2 --override "sev1 fix"', CAROL).startswith("Started")
    assert world.release().overrides[0].reason == "sev1 fix"
    assert typed("unfreeze shop-api", BOB).startswith(f"<@{BOB}> lifted the freeze of shop-api")
    assert world.service.frozen(APP) is None


def test_a_freeze_is_lifted_by_who_set_it_break_glass_or_for_one_app_who_may_start_it(
    redis_client: redis.Redis,
) -> None:
    world = World(redis_client, starters=(BOB,))
    assert world.service.freeze(scope="all", duration_s=3600, user=BOB, reason="incident").applied
    refused = world.service.unfreeze(scope="all", user=ANA, channel=COMMANDS)
    assert not refused.applied
    assert (
        refused.message == f"lifting the freeze of all needs <@{BOB}>, who set it, or break glass"
    )
    assert world.service.frozen(APP) is not None  # nothing changed
    assert world.service.unfreeze(scope="all", user=CAROL).applied  # break glass may

    assert world.service.freeze(scope=APP, duration_s=600, user=CAROL, reason="drill").applied
    refused = world.service.unfreeze(scope=APP, user=ANA, channel=COMMANDS)
    assert not refused.applied and world.service.frozen(APP) is not None  # ANA may not start
    assert refused.message.endswith(f"or break glass, or starting shop-api needs <@{BOB}>")
    assert world.service.unfreeze(scope=APP, user=BOB, channel=COMMANDS).applied  # BOB may
    denied = [
        (entry.app, entry.actor)
        for entry in world.store.history(APP, limit=50) + world.store.history("all", limit=50)
        if entry.action == "unfreeze" and entry.outcome.startswith("denied: ")
    ]
    assert sorted(denied) == [("all", ANA), (APP, ANA)]


def test_the_card_of_a_held_release_says_it_goes_on_when_the_freeze_ends(
    redis_client: redis.Redis,
) -> None:
    world = World(redis_client)
    world.running_stage_zero()
    assert world.service.freeze(scope=APP, duration_s=600, user=BOB, reason="incident").applied

    card = str(release_card(world.tick(3), now=world.clock.at).payload())

    assert "frozen until 2026-11-26 12:10 UTC, incident" in card
    assert "It goes on by itself when the freeze ends." in card
