"""The Slack messages of a release (bot.slack.cards): pure, so no service is started.

Run by pytest. Releases are driven through the real state machine (the walks of test_machine);
slack_sdk validates every message against Slack's limits when it is built, and each test reads
the message as the JSON the announcer sends.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import ImageBlock

from bot.core.machine import (
    Accepted,
    Advance,
    Approve,
    CanaryReady,
    ChecksFailed,
    ChecksInconclusive,
    Event,
    Fail,
    NoticeKind,
    Notify,
    Pause,
    PromotionDone,
    Rollback,
    StageTimerElapsed,
    start_release,
)
from bot.core.plan import DEFAULT_PLAN, Plan, Stage
from bot.core.release import Phase, ReleaseKind
from bot.slack.cards import (
    ACTION_ADVANCE,
    ACTION_APPROVE,
    ACTION_PAUSE,
    ACTION_RESUME,
    ACTION_ROLLBACK,
    ELLIPSIS,
    ButtonRef,
    CardMessage,
    InvalidButtonValue,
    parse_button_value,
    release_card,
    render_text,
    rollback_alert,
    thread_notice,
)
from tests.releases import ANA, BLUE_GREEN_ONLY, BOB, MINUTE, T0, Run, run_in, start

HOUR = timedelta(hours=1)
LONG = "the canary " + "x" * 10_000  # far beyond every Slack limit


def blocks_of(message: CardMessage, kind: str) -> list[dict[str, Any]]:
    return [block for block in message.payload()["blocks"] if block["type"] == kind]


def buttons_of(message: CardMessage) -> list[dict[str, Any]]:
    return [element for block in blocks_of(message, "actions") for element in block["elements"]]


def action_ids(message: CardMessage) -> list[str]:
    return [button["action_id"] for button in buttons_of(message)]


def status_of(card: CardMessage) -> str:
    text: str = blocks_of(card, "section")[0]["text"]["text"]
    return text


def fields_of(card: CardMessage) -> list[str]:
    return [field["text"] for field in blocks_of(card, "section")[0]["fields"]]


def section_starting(message: CardMessage, prefix: str) -> str:
    texts: list[str] = [block["text"]["text"] for block in blocks_of(message, "section")]
    return next(text for text in texts if text.startswith(prefix))


def context_texts(message: CardMessage) -> list[str]:
    return [
        element["text"] for block in blocks_of(message, "context") for element in block["elements"]
    ]


def walk_to_success() -> Run:
    """The default plan, every stage to its end, stage 3 approved when it asks."""
    run = start()
    run.accept(CanaryReady(), after=MINUTE)
    run.accept(StageTimerElapsed(), after=HOUR)
    run.accept(StageTimerElapsed(), after=2 * HOUR)
    run.accept(StageTimerElapsed(), after=4 * HOUR)
    run.accept(Approve(by=BOB), after=MINUTE)
    run.accept(StageTimerElapsed(), after=MINUTE)
    run.accept(PromotionDone(), after=MINUTE)
    assert run.release.phase is Phase.SUCCEEDED
    return run


# Status and buttons per phase (the walks of test_machine: the running release is in stage 3/4,
# 50 %, which needs approval).

CANARY_PHASES = [phase for phase in Phase if phase not in BLUE_GREEN_ONLY]
EXPECTED_CARDS: dict[Phase, tuple[list[str], list[str]]] = {
    # phase: (the buttons, what the status says: its first line, then details)
    Phase.STARTING: ([ACTION_ROLLBACK], ["⏳ *Starting*", "no traffic yet"]),
    Phase.VERIFYING: (
        [ACTION_ROLLBACK],
        [
            "🧪 *Verifying before stage 3/4 (50 %)*",
            "Verification Job `shop-api-verify-rel-1-2` runs",
            "traffic stays as it was",
        ],
    ),
    Phase.RUNNING: (
        [ACTION_APPROVE, ACTION_ADVANCE, ACTION_PAUSE, ACTION_ROLLBACK],
        ["▶️ *Running stage 3/4 (50 %)*", "It needs approval before it moves on to stage 4/4"],
    ),
    Phase.AWAITING_APPROVAL: (
        [ACTION_APPROVE, ACTION_PAUSE, ACTION_ROLLBACK],
        ["✋ *Waiting for approval of stage 3/4 (50 %)*", "it needs approval to move on"],
    ),
    Phase.PAUSED: (
        [ACTION_RESUME, ACTION_ROLLBACK],
        ["⏸️ *Paused at stage 3/4 (50 %)*", f"By <@{BOB}>: looking into it.", "Resumes by itself"],
    ),
    Phase.PROMOTING: (
        [ACTION_ROLLBACK],
        ["🚀 *Promoting*", f"(promoted by <@{BOB}>, skipping 1 of 4 stages)"],
    ),
    Phase.ROLLING_BACK: ([ACTION_ROLLBACK], ["↩️ *Rolling back*", f"By <@{ANA}>: error spike"]),
    Phase.SUCCEEDED: ([], ["✅ *Succeeded*", "Stable runs v2.4.1"]),
    Phase.ROLLED_BACK: ([], ["⏪ *Rolled back*", f"by <@{ANA}>: error spike"]),
    Phase.FAILED: ([], ["❌ *Failed*", "deployment deleted", "someone needs to look"]),
}


@pytest.mark.parametrize("phase", CANARY_PHASES, ids=str)
def test_each_phase_shows_its_status_and_only_the_buttons_that_apply(phase: Phase) -> None:
    run = run_in(phase)
    card = release_card(run.release, now=run.now)
    expected_actions, phrases = EXPECTED_CARDS[phase]
    assert action_ids(card) == expected_actions
    first_line, *details = phrases
    assert status_of(card).startswith(f"{first_line}\n")
    for detail in details:
        assert detail in status_of(card)
    assert card.text == f"shop-api v2.4.1: {first_line.replace('*', '')}"
    assert blocks_of(card, "header")[0]["text"]["text"] == "shop-api v2.4.1 · canary release"
    if phase.is_terminal:
        assert blocks_of(card, "actions") == []


@pytest.mark.parametrize("phase", CANARY_PHASES, ids=str)
def test_every_button_carries_the_release_and_the_stage_it_was_shown_for(phase: Phase) -> None:
    run = run_in(phase)
    for button in buttons_of(release_card(run.release, now=run.now)):
        assert button["action_id"].startswith("release.")
        assert parse_button_value(button["value"]) == ButtonRef(
            release_id=run.release.id, stage_index=run.release.stage_index
        )


def test_approve_is_primary_and_rollback_is_danger_behind_a_confirmation() -> None:
    run = run_in(Phase.AWAITING_APPROVAL)
    buttons = {
        button["action_id"]: button for button in buttons_of(release_card(run.release, now=run.now))
    }
    assert buttons[ACTION_APPROVE]["style"] == "primary"
    assert "confirm" not in buttons[ACTION_APPROVE]
    rollback = buttons[ACTION_ROLLBACK]
    assert rollback["style"] == "danger"
    assert rollback["confirm"]["style"] == "danger"
    assert rollback["confirm"]["title"]["text"] == "Roll back shop-api?"
    assert "All traffic goes back to stable v2.4.0" in rollback["confirm"]["text"]["text"]
    assert rollback["confirm"]["confirm"]["text"] == "Roll back"
    assert buttons[ACTION_PAUSE].get("style") is None


def test_a_stage_approved_ahead_of_time_shows_who_and_no_approve_button() -> None:
    run = run_in(Phase.RUNNING)
    run.accept(Approve(by=BOB), after=MINUTE)
    card = release_card(run.release, now=run.now)
    assert action_ids(card) == [ACTION_ADVANCE, ACTION_PAUSE, ACTION_ROLLBACK]
    assert f"Approved by <@{BOB}> <!date^" in status_of(card)
    assert "moves on to stage 4/4 (100 %) when its time is up" in status_of(card)


def test_four_eyes_names_who_may_not_approve() -> None:
    run = run_in(Phase.AWAITING_APPROVAL, four_eyes=True)
    card = release_card(run.release, now=run.now)
    assert f"needs approval from someone other than <@{ANA}> to move on" in status_of(card)
    assert "four-eyes approvals" in context_texts(card)[0]


def test_a_self_paused_release_says_the_bot_paused_it_and_why() -> None:
    run = run_in(Phase.RUNNING)
    run.accept(ChecksInconclusive(reason="no samples for 10m"), after=MINUTE)
    card = release_card(run.release, now=run.now)
    assert "By the bot: metrics inconclusive: no samples for 10m." in status_of(card)
    assert "stays paused until someone resumes or rolls it back" in status_of(card)


# The progress line, the traffic and the time left.

PROGRESS_LINES: dict[Phase, str] = {
    Phase.STARTING: "0 % → 5 % → 50 % ✋ → 100 %",
    Phase.RUNNING: "0 % ✓ → 5 % ✓ → [50 %] ▶ → 100 %",
    Phase.AWAITING_APPROVAL: "0 % ✓ → 5 % ✓ → [50 %] ⏸ approval → 100 %",
    Phase.PAUSED: "0 % ✓ → 5 % ✓ → [50 %] ⏸ paused → 100 %",
    Phase.PROMOTING: "0 % ✓ → 5 % ✓ → 50 % ✓ → 100 % skipped",
    Phase.ROLLING_BACK: "0 % ✓ → 5 % ✓ → [50 %] ✗ → 100 %",
    Phase.FAILED: "0 % ✓ → 5 % ✓ → [50 %] ✗ → 100 %",
}


@pytest.mark.parametrize("phase", list(PROGRESS_LINES), ids=str)
def test_the_stage_line_reads_at_a_glance(phase: Phase) -> None:
    run = run_in(phase)
    card = release_card(run.release, now=run.now)
    assert section_starting(card, "*Stages:*") == f"*Stages:* {PROGRESS_LINES[phase]}"


def test_a_release_that_walked_every_stage_shows_them_all_passed_and_its_approval() -> None:
    run = walk_to_success()
    card = release_card(run.release, now=run.now)
    assert section_starting(card, "*Stages:*") == "*Stages:* 0 % ✓ → 5 % ✓ → 50 % ✓ → 100 % ✓"
    approvals = section_starting(card, "*Approvals*")
    assert approvals.startswith(f"*Approvals*\n✅ stage 3/4 (50 %) approved by <@{BOB}> <!date^")
    assert approvals.endswith("|2025-03-03 17:02 UTC>")
    assert fields_of(card) == ["*Traffic*\nstable v2.4.1 100 %"]


def test_weights_and_time_left_follow_the_stage() -> None:
    run = start()
    run.accept(CanaryReady(), after=MINUTE)
    card = release_card(run.release, now=run.now + 10 * MINUTE)
    traffic, stage_time = fields_of(card)
    assert traffic == (
        "*Traffic*\nstable v2.4.0 100 % · canary v2.4.1 0 %\nthe canary is also reachable by header"
    )
    assert stage_time.startswith("*Stage time*\n⏱ 50m left, ends <!date^")
    assert stage_time.endswith("|2025-03-03 11:01 UTC>")

    run.accept(StageTimerElapsed(), after=HOUR)
    card = release_card(run.release, now=run.now)
    assert fields_of(card)[0] == "*Traffic*\nstable v2.4.0 95 % · canary v2.4.1 5 %"
    assert fields_of(card)[1].startswith("*Stage time*\n⏱ 2h left")

    late = release_card(run.release, now=run.now + 3 * HOUR)
    assert fields_of(late)[1].startswith("*Stage time*\n⏱ time is up (<!date^")


def test_a_pause_keeps_the_time_that_was_left() -> None:
    run = start()
    run.accept(CanaryReady(), after=MINUTE)
    run.accept(StageTimerElapsed(), after=HOUR)
    run.accept(Pause(by=BOB, reason="dashboards"), after=30 * MINUTE)
    card = release_card(run.release, now=run.now + 5 * HOUR)
    assert fields_of(card)[1] == "*Stage time*\n⏱ stopped with 1h 30m left"


def test_promotion_gives_the_canary_all_traffic() -> None:
    run = run_in(Phase.PROMOTING)
    card = release_card(run.release, now=run.now)
    assert fields_of(card) == ["*Traffic*\nstable v2.4.0 0 % · canary v2.4.1 100 %"]


def test_a_naive_clock_is_refused() -> None:
    run = run_in(Phase.RUNNING)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        release_card(run.release, now=run.now.replace(tzinfo=None))


def test_the_latest_snapshot_is_a_context_line_only_when_given() -> None:
    run = run_in(Phase.RUNNING)
    snapshot = "error rate: canary 0.4 % vs stable 0.3 % ✓"
    with_snapshot = release_card(run.release.evolve(latest_metrics=snapshot), now=run.now)
    assert f"📊 {snapshot}" in context_texts(with_snapshot)
    without = release_card(run.release, now=run.now)
    assert not any(text.startswith("📊") for text in context_texts(without))
    assert len(blocks_of(with_snapshot, "context")) == len(blocks_of(without, "context")) + 1


def test_each_payload_is_the_blocks_own_dicts_and_a_fresh_copy() -> None:
    run = run_in(Phase.RUNNING)
    card = release_card(run.release, now=run.now)
    first = card.payload()
    first["blocks"][0]["text"]["text"] = "changed by a caller"
    first["blocks"].clear()

    assert card.payload() == {
        "text": card.text,
        "blocks": [block.to_dict() for block in card.blocks],
    }


# Button values.


@pytest.mark.parametrize(
    "ref",
    [ButtonRef("rel-1", 0), ButtonRef("9f86d081884c", 3), ButtonRef("odd:id:with:colons", 12)],
    ids=str,
)
def test_button_values_round_trip(ref: ButtonRef) -> None:
    assert parse_button_value(ref.value) == ref


@pytest.mark.parametrize(
    "garbage",
    [
        *["", "rel-1", "rel-1:", ":3", "rel 1:3", "rel-1:-1", "rel-1:x", "rel-1:3\n"],
        *["rel-1:1234567", None, 42, {"release_id": "rel-1", "stage_index": 0}, "z" * 5000],
    ],
    ids=lambda garbage: repr(garbage)[:24],
)
def test_garbage_button_values_are_refused_clearly(garbage: object) -> None:
    with pytest.raises(InvalidButtonValue, match="not a release button value") as refused:
        parse_button_value(garbage)
    assert "expected '<release id>:<stage index>'" in str(refused.value)
    assert len(str(refused.value)) < 200  # a huge value is not echoed whole


# Slack's limits: long texts are cut, never rejected.


def assert_cut(text: str, limit: int) -> None:
    assert len(text) <= limit
    assert text.endswith(ELLIPSIS)


def test_a_very_long_pause_reason_is_cut_to_fit() -> None:
    run = run_in(Phase.RUNNING)
    paused = run.accept(Pause(by=BOB, reason=LONG), after=MINUTE)
    card = release_card(run.release, now=run.now)
    assert_cut(status_of(card), 3000)
    assert status_of(card).startswith("⏸️ *Paused at stage 3/4 (50 %)*\nBy <@U0BOB>: the canary xxx")
    (notice,) = [effect for effect in paused.effects if isinstance(effect, Notify)]
    reply = thread_notice(notice, run.release)
    assert_cut(reply.text, 4000)
    assert_cut(blocks_of(reply, "section")[0]["text"]["text"], 3000)


def test_a_very_long_rollback_reason_and_failure_are_cut_to_fit() -> None:
    run = run_in(Phase.AWAITING_APPROVAL)
    rolling_back = run.accept(Rollback(by=ANA, reason=LONG), after=MINUTE)
    assert_cut(status_of(release_card(run.release, now=run.now)), 3000)
    (notice,) = [effect for effect in rolling_back.effects if isinstance(effect, Notify)]
    assert_cut(thread_notice(notice, run.release).text, 4000)

    failed = run.accept(Fail(reason=LONG), after=MINUTE)
    (alert_notice,) = [effect for effect in failed.effects if isinstance(effect, Notify)]
    alert = rollback_alert(run.release, alert_notice, mention="<!here>")
    assert_cut(blocks_of(alert, "section")[0]["text"]["text"], 3000)
    assert alert.text.startswith("<!here> ❌ ")


def test_a_very_long_version_and_snapshot_are_cut_to_fit() -> None:
    image = "registry.example.com/team/" + "a" * 400 + ":v2.4.1"  # /release takes image refs
    started = start_release(
        release_id="rel-1",
        app="shop-api",
        version=image,
        previous_version="v2.4.0",
        plan=DEFAULT_PLAN,
        requested_by=ANA,
        channel="C0DEPLOYS",
        four_eyes=False,
        now=T0,
    )
    run = Run(release=started.release, now=T0)
    run.accept(CanaryReady(), after=MINUTE)
    card = release_card(run.release.evolve(latest_metrics=LONG), now=run.now)
    assert_cut(blocks_of(card, "header")[0]["text"]["text"], 150)
    assert_cut(next(text for text in context_texts(card) if text.startswith("📊")), 3000)
    assert_cut(buttons_of(card)[-1]["confirm"]["text"]["text"], 300)


def test_a_cut_never_splits_a_mention() -> None:
    run = run_in(Phase.RUNNING)
    run.accept(Rollback(by=ANA, reason="see " + " ".join([f"<@{BOB}>"] * 2000)), after=MINUTE)
    status = status_of(release_card(run.release, now=run.now))
    assert_cut(status, 3000)
    assert status.count("<") == status.count(">")
    assert status.removesuffix(ELLIPSIS).endswith(f"<@{BOB}>")


def test_many_approvals_and_stages_stay_within_limits() -> None:
    stage_count = 400
    plan = Plan(
        name="many-gates",
        stages=tuple(
            Stage(weight=index * 100 // (stage_count - 1), duration_s=0, needs_approval=True)
            for index in range(stage_count)
        ),
    )
    run = start(plan=plan)
    run.accept(CanaryReady(), after=MINUTE)
    for _ in range(stage_count):
        run.accept(Approve(by=BOB), after=MINUTE)  # ahead of time: the stage still runs
        run.accept(StageTimerElapsed())
    assert run.release.phase is Phase.PROMOTING
    assert len(run.release.approvals) == stage_count

    card = release_card(run.release, now=run.now)
    approvals = section_starting(card, "*Approvals*")
    assert len(approvals) <= 3000
    left_out = int(approvals.split("\n")[1].removeprefix(f"{ELLIPSIS} ").removesuffix(" earlier"))
    shown = approvals.count("✅")
    assert left_out + shown == stage_count
    assert shown > 20
    assert "stage 400/400 (100 %) approved" in approvals.splitlines()[-1]
    assert_cut(section_starting(card, "*Stages:*"), 3000)


# Thread notices and channel alerts.


def test_every_notice_of_a_release_becomes_a_thread_reply() -> None:
    run = start()
    steps: list[Accepted] = []
    walk: list[tuple[Event, timedelta]] = [
        (CanaryReady(), MINUTE),
        (StageTimerElapsed(), HOUR),
        (Advance(by=BOB), MINUTE),
        (Advance(by=BOB), MINUTE),
    ]
    for event, after in walk:
        steps.append(run.accept(event, after=after))
        for notice in (e for e in steps[-1].effects if isinstance(e, Notify)):
            reply = thread_notice(notice, run.release)
            assert notice.text in reply.text
            assert blocks_of(reply, "section")[0]["text"]["text"].endswith(notice.text)
            if notice.kind is NoticeKind.APPROVAL_REQUESTED:
                assert action_ids(reply) == [ACTION_APPROVE, ACTION_PAUSE, ACTION_ROLLBACK]
                assert parse_button_value(buttons_of(reply)[0]["value"]).stage_index == 2
            else:
                assert action_ids(reply) == []
    kinds = [e.kind for step in steps for e in step.effects if isinstance(e, Notify)]
    assert kinds == [
        NoticeKind.STAGE_STARTED,
        NoticeKind.STAGE_STARTED,
        NoticeKind.ADVANCED,
        NoticeKind.STAGE_STARTED,
        NoticeKind.ADVANCED,
        NoticeKind.APPROVAL_REQUESTED,
    ]


@pytest.mark.parametrize("kind", list(NoticeKind), ids=str)
def test_every_notice_kind_has_a_reply(kind: NoticeKind) -> None:
    run = run_in(Phase.RUNNING)
    reply = thread_notice(Notify(kind=kind, text="something happened"), run.release)
    emoji, text = reply.text.split(" ", 1)
    assert text == "something happened"
    assert emoji and not emoji.isalnum()


def test_an_auto_rollback_alert_names_metric_value_threshold_and_stage() -> None:
    run = start()
    run.accept(CanaryReady(), after=MINUTE)
    run.accept(StageTimerElapsed(), after=HOUR)
    rolled = run.accept(ChecksFailed(metric="error_rate", value=7.2, threshold=5, unit="%"))
    (notice,) = [effect for effect in rolled.effects if isinstance(effect, Notify)]
    alert = rollback_alert(run.release, notice, mention="<!subteam^S0123>")
    headline, body = blocks_of(alert, "section")[0]["text"]["text"].split("\n")
    assert headline == "<!subteam^S0123> 🚨 *shop-api v2.4.1: automatic rollback*"
    assert "error_rate is 7.2 % against a threshold of 5 %" in body
    assert "stage 2/4 (5 %)" in body
    assert alert.text.startswith("<!subteam^S0123> 🚨 shop-api v2.4.1 is rolling back")
    assert context_texts(alert) == ["release `rel-1` · rolling back"]
    assert action_ids(alert) == []

    quiet = rollback_alert(run.release, notice, mention=None)
    assert quiet.text.startswith("🚨 shop-api")


def test_an_inconclusive_pause_alert_offers_resume_and_rollback() -> None:
    run = run_in(Phase.RUNNING)
    paused = run.accept(ChecksInconclusive(reason="no samples"), after=MINUTE)
    (notice,) = [effect for effect in paused.effects if isinstance(effect, Notify)]
    alert = rollback_alert(run.release, notice, mention="<!here>")
    assert action_ids(alert) == [ACTION_RESUME, ACTION_ROLLBACK]
    assert "*shop-api v2.4.1: paused itself*" in blocks_of(alert, "section")[0]["text"]["text"]


def test_a_thread_only_notice_is_refused_as_an_alert() -> None:
    run = run_in(Phase.RUNNING)
    rolled = run.accept(Rollback(by=ANA, reason="error spike"), after=MINUTE)
    (notice,) = [effect for effect in rolled.effects if isinstance(effect, Notify)]
    with pytest.raises(ValueError, match="rollback notice goes to the thread only"):
        rollback_alert(run.release, notice, mention="<!here>")


# The terminal rendering.


def test_a_card_renders_as_readable_lines() -> None:
    run = run_in(Phase.AWAITING_APPROVAL)
    card = release_card(run.release.evolve(latest_metrics="error rate *0.4 %* ✓"), now=run.now)
    assert render_text(card.blocks).splitlines() == [
        "shop-api v2.4.1 · canary release",
        "================================",
        "Started by @U0ANA 2025-03-03 10:00 UTC · plan default · replacing v2.4.0",
        "✋ Waiting for approval of stage 3/4 (50 %)",
        "Its time is up; it needs approval to move on.",
        "Traffic: stable v2.4.0 50 % · canary v2.4.1 50 %",
        "Stage time: ⏱ time is up",
        "Stages: 0 % ✓ → 5 % ✓ → [50 %] ⏸ approval → 100 %",
        "📊 error rate 0.4 % ✓",
        "[ Approve ] [ Pause ] [ Rollback ]",
        "release rel-1 · updated 2025-03-03 17:01 UTC",
    ]


def test_an_alert_renders_its_mention_and_a_reply_renders_plainly() -> None:
    run = run_in(Phase.RUNNING)
    paused = run.accept(ChecksInconclusive(reason="no samples"), after=MINUTE)
    (notice,) = [effect for effect in paused.effects if isinstance(effect, Notify)]
    alert_lines = render_text(rollback_alert(run.release, notice, mention="<!here>").blocks)
    assert alert_lines.splitlines()[0] == "@here ⏸️ shop-api v2.4.1: paused itself"
    assert alert_lines.splitlines()[-1] == "[ Resume ] [ Rollback ]"
    team_alert = render_text(rollback_alert(run.release, notice, mention="<!subteam^S0123>").blocks)
    assert team_alert.startswith("@S0123 ")

    # Slack hands typed text over with &, < and > escaped
    rolled = run.accept(Rollback(by=ANA, reason="a &lt; b &amp; c"), after=MINUTE)
    (rollback_notice,) = [effect for effect in rolled.effects if isinstance(effect, Notify)]
    reply = render_text(thread_notice(rollback_notice, run.release).blocks)
    assert reply == "↩️ @U0ANA is rolling back shop-api v2.4.1 at stage 3/4 (50 %): a < b & c"


def test_render_text_refuses_blocks_it_cannot_show() -> None:
    image = ImageBlock(image_url="https://example.com/chart.png", alt_text="chart")
    with pytest.raises(ValueError, match="cannot show a image block"):
        render_text([image])


BLUE_GREEN_CARDS: dict[Phase, tuple[list[str], list[str]]] = {
    Phase.VERIFYING: (
        [ACTION_ROLLBACK],
        [
            "🧪 *Verifying before the preview*",
            "Verification Job `shop-api-verify-rel-1-0` tests green through its preview Service",
            "blue serves production until it passes",
        ],
    ),
    Phase.AWAITING_APPROVAL: (
        [ACTION_APPROVE, ACTION_PAUSE, ACTION_ROLLBACK],
        ["✋ *Waiting for approval of the preview*", "🟢 Green* v2.4.1", "on its preview Service"],
    ),
    Phase.SWITCHING: ([ACTION_ROLLBACK], ["🔀 *Switching production to green*", "one update"]),
    Phase.RUNNING: (
        [ACTION_ADVANCE, ACTION_PAUSE, ACTION_ROLLBACK],
        ["▶️ *Running the watch window*", "🟢 Green* v2.4.1", "serves production"],
    ),
    Phase.KEEPING_BLUE: (
        [ACTION_ROLLBACK],
        ["🟢 *Green serves production, blue kept*", "🔵 Blue* v2.4.0", "kept, idle"],
    ),
    Phase.PROMOTING: ([], ["🚀 *Retiring blue*", "scaled down"]),
    Phase.SUCCEEDED: ([], ["✅ *Succeeded*", "retired"]),
}


@pytest.mark.parametrize("phase", list(BLUE_GREEN_CARDS), ids=str)
def test_a_blue_green_card_shows_blue_and_green_side_by_side(phase: Phase) -> None:
    run = run_in(phase, kind=ReleaseKind.BLUE_GREEN)
    card = release_card(run.release, now=run.now)
    expected_actions, phrases = BLUE_GREEN_CARDS[phase]
    assert action_ids(card) == expected_actions
    first_line, *details = phrases
    shown = json.dumps(card.payload(), ensure_ascii=False)
    assert status_of(card).startswith(f"{first_line}\n")
    for detail in details:
        assert detail in shown, detail
    assert blocks_of(card, "header")[0]["text"]["text"] == "shop-api v2.4.1 · bluegreen release"
