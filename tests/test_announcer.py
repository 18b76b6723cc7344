"""The Slack announcer (bot.slack.announcer) against the Slack Web API stand-in.

Run by pytest; uses the `slack_api` fixture of tests/infra/slack.py. Releases are driven through
the real state machine (tests/releases.py) and their Slack effects carried out as the release
service does; the announcer talks over HTTP to the stand-in through the bot's own Web API client.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.application.apps_file import load_config
from bot.core.apps import BotConfig
from bot.core.chart import ChartImage
from bot.core.errors import TemporaryError
from bot.core.machine import (
    Accepted,
    Advance,
    CanaryReady,
    ChecksFailed,
    ChecksInconclusive,
    Fail,
    NoticeKind,
    Notify,
    StageTimerElapsed,
    UpdateCard,
)
from bot.entrypoints.settings import Settings
from bot.slack.announcer import SlackAnnouncer
from bot.slack.cards import (
    ACTION_APPROVE,
    ACTION_PAUSE,
    ACTION_ROLLBACK,
    release_card,
    thread_notice,
)
from bot.slack.client import build_web_client
from tests.infra.processes import free_port
from tests.infra.slack import SIGNING_SECRET
from tests.infra.slack_standin import WORKSPACE_URL, SlackStandIn
from tests.releases import BOB, MINUTE, Run, start

HOUR = timedelta(hours=1)
CHANNEL = "C0DEPLOYS"  # the channel of every release in tests/releases.py
ONCALL = "<!subteam^S0ONCALL01>"
ERROR_RATE_SPIKE = ChecksFailed(metric="error_rate", value=7.2, threshold=5, unit="%")


def bot_config(tmp_path: Path, *, alert_mention: str = ONCALL) -> BotConfig:
    path = tmp_path / "apps.yaml"
    path.write_text(
        f"""\
apps:
  shop-api:
    namespace: shop
    workload: shop-api
    slack_channel: "{CHANNEL}"
    alert_mention: "{alert_mention}"
    router: {{provider: istio, virtual_service: shop-api, destination_rule: shop-api,
             host: shop-api}}
"""
    )
    return load_config(path)


def web_client(slack_api: SlackStandIn, *, api_url: str | None = None) -> WebClient:
    """The bot's client: it waits out 429s and retries connection errors as in production."""
    settings = Settings(
        slack_bot_token=slack_api.bot_token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=api_url or slack_api.api_url,
    )
    return build_web_client(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )


@pytest.fixture
def run() -> Run:
    return start()


@pytest.fixture
def announcer(slack_api: SlackStandIn, run: Run, tmp_path: Path) -> SlackAnnouncer:
    return SlackAnnouncer(
        client=web_client(slack_api), config=bot_config(tmp_path), clock=lambda: run.now
    )


def post_card(announcer: SlackAnnouncer, run: Run) -> None:
    """Show the card and keep its refs in the release, as the service saves them."""
    refs = announcer.show_card(run.release)
    run.release = run.release.evolve(card_ts=refs.card_ts, thread_ts=refs.thread_ts)


def announce(announcer: SlackAnnouncer, run: Run, accepted: Accepted) -> list[Notify]:
    """A transition's Slack effects in the machine's order, as the service carries them out."""
    notices = []
    for effect in accepted.effects:
        if isinstance(effect, UpdateCard):
            post_card(announcer, run)
        elif isinstance(effect, Notify):
            announcer.notify(run.release, effect)
            notices.append(effect)
    return notices


def to_stage_2(announcer: SlackAnnouncer, run: Run) -> None:
    """Card posted, canary ready, then stage 2/4 (5 %) started."""
    post_card(announcer, run)
    announce(announcer, run, run.accept(CanaryReady(), after=MINUTE))
    announce(announcer, run, run.accept(StageTimerElapsed(), after=HOUR))


def context_texts(message: dict[str, Any]) -> list[str]:
    return [
        element["text"]
        for block in message["blocks"]
        if block["type"] == "context"
        for element in block["elements"]
    ]


# The card.


def test_the_card_is_posted_once_then_edited_in_place(announcer, run, slack_api) -> None:
    post_card(announcer, run)
    card_ts = run.release.card_ts
    for event, after in [(CanaryReady(), MINUTE), (StageTimerElapsed(), HOUR)]:
        announce(announcer, run, run.accept(event, after=after))

    posted = slack_api.calls("chat.postMessage")[0]
    assert (posted.params["channel"], posted.answer["ts"]) == (CHANNEL, card_ts)
    assert [c.params.get("thread_ts") for c in slack_api.calls("chat.postMessage")[1:]] == [
        card_ts,
        card_ts,
    ]  # the two stage notices, in the card's thread
    assert [(c.params["channel"], c.params["ts"]) for c in slack_api.calls("chat.update")] == [
        (CHANNEL, card_ts),
        (CHANNEL, card_ts),
    ]
    assert run.release.thread_ts == card_ts
    (card,) = slack_api.messages(CHANNEL)
    expected = release_card(run.release, now=run.now).payload()
    assert (card["ts"], card["text"], card["blocks"]) == (
        card_ts,
        expected["text"],
        expected["blocks"],
    )
    assert "stage 2/4 (5 %)" in card["text"] and "edited" in card


def test_notices_land_in_the_thread_in_order(announcer, run, slack_api) -> None:
    to_stage_2(announcer, run)
    notices = announce(announcer, run, run.accept(Advance(by=BOB), after=MINUTE))
    notices += announce(announcer, run, run.accept(Advance(by=BOB), after=MINUTE))

    replies = slack_api.thread(CHANNEL, str(run.release.thread_ts))
    assert [reply["text"] for reply in replies[2:]] == [
        thread_notice(notice, run.release).text for notice in notices
    ]
    assert [notice.kind for notice in notices] == [
        NoticeKind.ADVANCED,
        NoticeKind.STAGE_STARTED,
        NoticeKind.ADVANCED,
        NoticeKind.APPROVAL_REQUESTED,
    ]
    assert len(replies) == 2 + 4  # two stage notices on the way to stage 2, then these four
    approval_buttons = replies[-1]["blocks"][-1]["elements"]
    assert [button["action_id"] for button in approval_buttons] == [
        ACTION_APPROVE,
        ACTION_PAUSE,
        ACTION_ROLLBACK,
    ]
    # the other notices stay out of the channel; the approval request goes there too, with
    # no alert mention (alert_mention is for rollbacks), pointing at the thread
    _card, approval_post = slack_api.messages(CHANNEL)
    assert "approval needed" in approval_post["text"] or "approval needed" in str(
        approval_post["blocks"]
    )
    assert ONCALL not in approval_post["text"] and ONCALL not in str(approval_post["blocks"])
    assert "May approve: anyone in the channel" in approval_post["text"]


# Channel alerts.


@pytest.mark.parametrize(
    ("alert_mention", "opening"),
    [(ONCALL, f"{ONCALL} 🚨"), ("", "🚨")],
    ids=["configured-mention", "no-mention"],
)
def test_an_auto_rollback_alerts_the_channel_with_metric_and_a_link_to_the_thread(
    slack_api, run, tmp_path, alert_mention, opening
) -> None:
    config = bot_config(tmp_path, alert_mention=alert_mention)
    announcer = SlackAnnouncer(client=web_client(slack_api), config=config, clock=lambda: run.now)
    to_stage_2(announcer, run)

    (notice,) = announce(announcer, run, run.accept(ERROR_RATE_SPIKE, after=MINUTE))

    card, alert = slack_api.messages(CHANNEL)
    assert card["ts"] == run.release.card_ts
    assert alert["text"].startswith(f"{opening} shop-api v2.4.1 is rolling back")
    headline, body = alert["blocks"][0]["text"]["text"].split("\n")
    assert headline == f"{opening} *shop-api v2.4.1: automatic rollback*"
    assert "error_rate is 7.2 % against a threshold of 5 %" in body
    assert "stage 2/4 (5 %)" in body
    (link,) = re.findall(r"<(https://[^|>]+)\|Open the release thread>", context_texts(alert)[-1])
    assert link == f"{WORKSPACE_URL}archives/{CHANNEL}/p{card['ts'].replace('.', '')}"
    (permalink,) = slack_api.calls("chat.getPermalink")
    assert permalink.params == {"channel": CHANNEL, "message_ts": card["ts"]}
    assert slack_api.thread(CHANNEL, card["ts"])[-1]["text"] == (
        thread_notice(notice, run.release).text
    )


@pytest.mark.parametrize(
    ("event", "title"),
    [
        (Fail(reason="deployment deleted"), "release failed"),
        (ChecksInconclusive(reason="no samples"), "paused itself"),
    ],
    ids=["failure", "self-pause"],
)
def test_failures_and_self_pauses_alert_the_channel_too(
    announcer, run, slack_api, event, title
) -> None:
    to_stage_2(announcer, run)

    announce(announcer, run, run.accept(event, after=MINUTE))

    _, alert = slack_api.messages(CHANNEL)
    assert f"*shop-api v2.4.1: {title}*" in alert["blocks"][0]["text"]["text"]
    assert alert["text"].startswith(ONCALL)
    assert "Open the release thread" in context_texts(alert)[-1]


def test_the_alert_goes_out_even_when_the_thread_reply_fails(announcer, run, slack_api) -> None:
    to_stage_2(announcer, run)
    rolled_back = run.accept(ERROR_RATE_SPIKE, after=MINUTE)
    post_card(announcer, run)
    (notice,) = [effect for effect in rolled_back.effects if isinstance(effect, Notify)]
    slack_api.fail_next("chat.postMessage", error="internal_error")

    with pytest.raises(TemporaryError, match=r"chat\.postMessage failed .*internal_error"):
        announcer.notify(run.release, notice)

    _, alert = slack_api.messages(CHANNEL)
    assert alert["text"].startswith(f"{ONCALL} 🚨")
    assert len(slack_api.thread(CHANNEL, str(run.release.thread_ts))) == 2  # stage notices only


def test_the_alert_goes_out_without_the_link_when_slack_cannot_give_one(
    announcer, run, slack_api
) -> None:
    to_stage_2(announcer, run)
    slack_api.fail_next("chat.getPermalink", error="internal_error")

    announce(announcer, run, run.accept(ERROR_RATE_SPIKE, after=MINUTE))

    _, alert = slack_api.messages(CHANNEL)
    assert alert["text"].startswith(f"{ONCALL} 🚨")
    assert context_texts(alert)[-1] == "🧵 Details and buttons: the thread under the release card."


# Rate limits and errors.


def test_a_rate_limited_card_is_posted_once_after_retry_after(announcer, run, slack_api) -> None:
    slack_api.rate_limit_next("chat.postMessage", retry_after_s=1)

    refs = announcer.show_card(run.release)

    limited, delivered = slack_api.calls("chat.postMessage")
    assert (limited.http_status, delivered.http_status) == (429, 200)
    waited_s = delivered.at - limited.at
    assert 1.0 <= waited_s < 2.5  # Retry-After, plus slack_sdk's jitter of up to 1 s
    (card,) = slack_api.messages(CHANNEL)
    assert refs.card_ts == refs.thread_ts == card["ts"]


def test_a_slack_refusal_is_a_temporary_error_naming_method_code_and_remedy(
    announcer, run, slack_api
) -> None:
    slack_api.fail_next("chat.postMessage", error="not_in_channel")

    with pytest.raises(TemporaryError) as refused:
        announcer.show_card(run.release)

    assert str(refused.value) == (
        "Slack chat.postMessage failed while posting the card of shop-api v2.4.1 "
        f"(channel {CHANNEL}): not_in_channel; invite the bot to the channel (/invite @release-bot)"
    )


def test_an_edit_of_a_deleted_card_names_chat_update(announcer, run, slack_api) -> None:
    gone = run.release.evolve(card_ts="1700000000.000100", thread_ts="1700000000.000100")

    with pytest.raises(TemporaryError, match=r"^Slack chat\.update failed .*: message_not_found;"):
        announcer.show_card(gone)


def test_a_rate_limit_that_outlasts_the_retries_says_so(announcer, run, slack_api) -> None:
    slack_api.rate_limit_next("chat.postMessage", times=4, retry_after_s=0)

    with pytest.raises(TemporaryError, match=r"ratelimited \(HTTP 429\); Slack kept rate-limiting"):
        announcer.show_card(run.release)

    assert slack_api.messages(CHANNEL) == []


def test_an_unreachable_slack_is_a_temporary_error(slack_api, run, tmp_path) -> None:
    nowhere = web_client(slack_api, api_url=f"http://127.0.0.1:{free_port()}/api/")
    announcer = SlackAnnouncer(client=nowhere, config=bot_config(tmp_path), clock=lambda: run.now)
    started = time.monotonic()

    with pytest.raises(TemporaryError, match=r"chat\.postMessage .*Slack could not be reached"):
        announcer.show_card(run.release)

    assert time.monotonic() - started < 10


def test_a_notice_without_a_thread_is_refused_without_calling_slack(
    announcer, run, slack_api
) -> None:
    notice = Notify(kind=NoticeKind.PREFLIGHT, text="every check passed")

    with pytest.raises(TemporaryError, match="the release has no card yet"):
        announcer.notify(run.release, notice)

    assert slack_api.calls() == []


# Charts.

CHART = ChartImage(
    png=b"\x89PNG\r\n\x1a\n" + b"chart bytes" * 100,
    title="shop-api v2.4.1: canary vs stable, passed",
    alt_text="Chart of shop-api v2.4.1, canary against stable over 1h. Verdict: passed.",
    filename="shop-api-v2.4.1-20250303T110100Z.png",
)


def test_a_chart_is_uploaded_into_the_thread_with_its_alt_text(announcer, run, slack_api) -> None:
    to_stage_2(announcer, run)

    announcer.share_chart(run.release, CHART, in_channel=False)

    (shared,) = slack_api.shared_files()
    assert (shared["channel"], shared["thread_ts"]) == (CHANNEL, run.release.thread_ts)
    assert shared["content"] == CHART.png
    assert (shared["name"], shared["title"]) == (CHART.filename, CHART.title)
    assert shared["alt_txt"] == CHART.alt_text
    (asked,) = slack_api.calls("files.getUploadURLExternal")
    assert asked.params["length"] == str(len(CHART.png))


def test_an_alerts_chart_goes_into_the_channel(announcer, run, slack_api) -> None:
    to_stage_2(announcer, run)
    (alarm,) = announce(announcer, run, run.accept(ERROR_RATE_SPIKE, after=MINUTE))

    announcer.share_chart(run.release, CHART, in_channel=alarm.in_channel)

    (shared,) = slack_api.shared_files()
    assert (shared["channel"], shared["thread_ts"]) == (CHANNEL, None)
    assert shared["content"] == CHART.png and shared["alt_txt"] == CHART.alt_text


@pytest.mark.parametrize("failing", ["files.getUploadURLExternal", "files.completeUploadExternal"])
def test_a_chart_that_cannot_be_uploaded_is_logged_and_the_text_stands(
    announcer, run, slack_api, failing: str
) -> None:
    to_stage_2(announcer, run)
    slack_api.fail_next(failing, error="ratelimited" if "URL" in failing else "not_in_channel")
    replies_before = len(slack_api.thread(CHANNEL, str(run.release.thread_ts)))

    announcer.share_chart(run.release, CHART, in_channel=False)  # does not raise

    assert slack_api.shared_files() == []
    assert len(slack_api.thread(CHANNEL, str(run.release.thread_ts))) == replies_before


def test_a_refused_upload_step_is_logged_not_raised(slack_api, run, tmp_path) -> None:
    """The upload URL answering 404 (its file gone) is files_upload_v2's SlackRequestError."""
    announcer = SlackAnnouncer(
        client=web_client(slack_api), config=bot_config(tmp_path), clock=lambda: run.now
    )
    to_stage_2(announcer, run)
    original = slack_api.accept_upload
    slack_api.accept_upload = lambda file_id, data: False  # type: ignore[method-assign]
    try:
        announcer.share_chart(run.release, CHART, in_channel=False)
    finally:
        slack_api.accept_upload = original  # type: ignore[method-assign]

    assert slack_api.shared_files() == []
    assert slack_api.calls("files.completeUploadExternal") == []
