"""Tests of the Slack foundation: the Web API stand-in, signed requests, and `release-bot serve`.

Run by pytest; uses the fixtures of tests/infra/slack.py. The bot runs as a real subprocess and
talks to the Slack stand-in over HTTP; nothing is mocked inside the bot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from slack_bolt.request import BoltRequest
from slack_bolt.request.payload_utils import is_block_actions, to_action
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from structlog.testing import capture_logs

from bot.core.commands import USAGE
from bot.entrypoints.server import REDACTED, SecretRedactor, SlackTokenVerifier
from bot.entrypoints.settings import Settings
from bot.slack.client import build_web_client
from tests.infra.slack import REPO_ROOT, SIGNING_SECRET
from tests.infra.slack_requests import ALICE, BOB, RELEASES, SlackRequests
from tests.infra.slack_standin import BOT_USER_ID, WORKSPACE_URL, SlackStandIn

SLASH_COMMAND_STALE_S = 5 * 60


def settings_for(slack_api: SlackStandIn) -> Settings:
    return Settings(
        slack_bot_token=slack_api.bot_token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack_api.api_url,
    )


def web_api(slack_api: SlackStandIn, method: str, **kwargs: Any) -> requests.Response:
    return requests.post(f"{slack_api.api_url}{method}", timeout=10, **kwargs)


# ---- the bot process: signed requests ---------------------------------------------------------


def test_signed_release_help_is_answered_with_usage(bot_process, slack_requests) -> None:
    response = bot_process.client.post_events(slack_requests.slash_command("help"))

    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == f"```{USAGE}```"
    assert "/release canary <app> <version> [--plan NAME]" in answer["text"]


def test_unknown_subcommand_is_answered_with_usage(bot_process, slack_requests) -> None:
    response = bot_process.client.post_events(slack_requests.slash_command("deploy shop-api"))

    assert response.status_code == 200
    assert response.json()["text"].startswith("unknown subcommand `deploy`")
    assert USAGE in response.json()["text"]


def test_tampered_body_is_rejected(bot_process, slack_requests) -> None:
    genuine = slack_requests.slash_command("help")
    tampered = genuine.with_body(genuine.body.replace("text=help", "text=rollback+shop-api"))
    assert tampered.body != genuine.body

    assert bot_process.client.post_events(tampered).status_code == 401
    assert bot_process.client.post_events(genuine).status_code == 200


def test_stale_timestamp_is_rejected(bot_process, slack_requests) -> None:
    now = int(time.time())
    stale = slack_requests.slash_command("help", timestamp=now - SLASH_COMMAND_STALE_S - 1)
    recent = slack_requests.slash_command("help", timestamp=now - SLASH_COMMAND_STALE_S + 60)

    assert bot_process.client.post_events(stale).status_code == 401
    assert bot_process.client.post_events(recent).status_code == 200


def test_request_signed_with_another_secret_is_rejected(bot_process, slack_api) -> None:
    forger = SlackRequests(signing_secret="0" * 32, response_url_base=slack_api.response_url_base)

    assert bot_process.client.post_events(forger.slash_command("help")).status_code == 401


def test_slack_retry_of_a_command_is_answered_again(bot_process, slack_requests) -> None:
    retried = slack_requests.slash_command("help", retry_num=1, retry_reason="http_timeout")
    assert retried.headers["X-Slack-Retry-Num"] == "1"

    assert bot_process.client.post_events(retried).json()["text"] == f"```{USAGE}```"


# ---- the bot process: Slack's rate limits, readiness, health, metrics, shutdown --------------


def test_rate_limited_auth_test_is_retried_after_retry_after(slack_api, launch_bot) -> None:
    slack_api.rate_limit_next("auth.test", retry_after_s=2)

    launch_bot()

    first, second = slack_api.calls("auth.test")[:2]
    assert (first.http_status, first.answer["error"]) == (429, "ratelimited")
    assert second.http_status == 200 and second.ok
    waited_s = second.at - first.at
    print(f"bot retried auth.test {waited_s:.2f} s after a 429 with Retry-After: 2")
    assert 2.0 <= waited_s < 3.5  # slack_sdk sleeps Retry-After plus up to 1 s of jitter


def test_readyz_waits_for_slack_then_reports_ready(slack_api, launch_bot) -> None:
    slack_api.fail_next("auth.test", error="internal_error", times=2)
    bot = launch_bot(wait_ready=False)
    wait_for_health(bot)

    not_ready = bot.client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"] == {"releases_configured": False, "slack_auth": False}
    deadline = time.monotonic() + 15
    while not bot.readiness()["checks"]["slack_auth"]:
        assert time.monotonic() < deadline, "bot never verified its token"
        time.sleep(0.2)
    assert [call.ok for call in slack_api.calls("auth.test")][:3] == [False, False, True]


def test_health_ready_and_metrics_answer(bot_process, slack_requests) -> None:
    client = bot_process.client
    client.post_events(slack_requests.slash_command("help"))

    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {  # no REDIS_URL nor RELEASE_BOT_CONFIG: help only
        "ready": False,
        "checks": {"releases_configured": False, "slack_auth": True},
        "details": {
            "releases_configured": {
                "missing": ["RELEASE_BOT_CONFIG", "REDIS_URL or REDIS_SENTINELS"]
            }
        },
    }
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'release_bot_slack_event_seconds_count{status="200"} 1.0' in metrics.text
    assert client.get("/nowhere").status_code == 404


def test_sigterm_stops_the_bot_cleanly(bot_process) -> None:
    assert bot_process.stop() == 0
    assert '"event": "stopped"' in bot_process.log_text()


def test_rejected_token_stops_the_bot_with_a_clear_error(launch_bot) -> None:
    bot = launch_bot(extra_env={"SLACK_BOT_TOKEN": "xoxb-revoked-0000"}, wait_ready=False)
    assert bot.process.popen is not None

    assert bot.process.popen.wait(timeout=30) == 3
    assert "Slack rejected SLACK_BOT_TOKEN: invalid_auth" in bot.log_text()


def test_app_token_selects_socket_mode_and_a_refusal_is_clear(slack_api, launch_bot) -> None:
    bot = launch_bot(extra_env={"SLACK_APP_TOKEN": "xapp-1-A0RELBOT01-1-ffff"}, wait_ready=False)
    assert bot.process.popen is not None

    assert bot.process.popen.wait(timeout=30) == 3
    assert [call.answer["error"] for call in slack_api.calls("apps.connections.open")] == [
        "invalid_auth"
    ]
    assert "Slack refused the Socket Mode connection (SLACK_APP_TOKEN): invalid_auth" in (
        bot.log_text()
    )


def test_missing_configuration_names_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.entrypoints.cli", "serve"],
        env={"PATH": "/usr/bin:/bin", "SLACK_SIGNING_SECRET": SIGNING_SECRET},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "missing environment variable SLACK_BOT_TOKEN" in result.stderr


def test_bot_log_never_contains_the_token_or_signing_secret(bot_process, slack_requests) -> None:
    bot_process.client.post_events(slack_requests.slash_command("help"))
    bot_process.client.post_events(slack_requests.slash_command("help").with_body("text=forged"))
    bot_process.stop()
    log = bot_process.log_text()

    assert "Sending a request" in log  # slack_sdk's DEBUG lines, the chattiest, were written
    assert bot_process.environment["SLACK_BOT_TOKEN"] not in log
    assert SIGNING_SECRET not in log
    for line in log.splitlines():
        json.loads(line)  # every line is a JSON object


def test_redactor_masks_secrets_and_anything_shaped_like_a_slack_token() -> None:
    redact = SecretRedactor(["s3cr3t-signing"])
    event = {
        "event": "calling with xoxb-123-456-abcdef and s3cr3t-signing",
        "detail": {"headers": "Bearer xapp-1-A0-99-ff"},
        "count": 3,
    }

    redacted = redact(None, "info", event)

    assert redacted["event"] == f"calling with {REDACTED} and {REDACTED}"
    assert redacted["detail"] == str({"headers": f"Bearer {REDACTED}"})
    assert redacted["count"] == 3


def wait_for_health(bot) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if bot.client.get("/healthz").status_code == 200:
                return
        except requests.ConnectionError:
            bot.process.ensure_alive()
        assert time.monotonic() < deadline, "bot never answered /healthz"
        time.sleep(0.1)


# ---- the bot's Web API client against the stand-in -------------------------------------------


def verifier_for(slack_api: SlackStandIn) -> tuple[SlackTokenVerifier, list[str]]:
    rejections: list[str] = []
    client = web_client_for(slack_api)
    return SlackTokenVerifier(client, on_rejected=rejections.append), rejections


def test_token_check_retries_auth_test_after_1_then_2_s(slack_api) -> None:
    slack_api.fail_next("auth.test", error="internal_error", times=2)
    verifier, rejections = verifier_for(slack_api)

    with capture_logs() as logs:
        verifier.start()
        assert verifier.verified.wait(10), "auth.test was never retried to success"

    assert rejections == []
    retries = [(line["event"], line["error"], line["retry_in_s"]) for line in logs[:2]]
    assert retries == [
        ("auth.test failed, retrying", "internal_error", 1.0),
        ("auth.test failed, retrying", "internal_error", 2.0),
    ]
    assert logs[2]["event"] == "slack token verified"
    first, second, third = slack_api.calls("auth.test")
    assert [call.ok for call in (first, second, third)] == [False, False, True]
    assert 1.0 <= second.at - first.at < 1.5
    assert 2.0 <= third.at - second.at < 2.5


def test_a_rejected_token_is_not_retried(slack_api) -> None:
    slack_api.fail_next("auth.test", error="token_revoked", times=5)
    verifier, rejections = verifier_for(slack_api)

    verifier.start()
    deadline = time.monotonic() + 5
    while not rejections:
        assert time.monotonic() < deadline, "the rejected token was never reported"
        time.sleep(0.02)
    time.sleep(1.2)  # a retry would have come after 1 s

    assert rejections == ["Slack rejected SLACK_BOT_TOKEN: token_revoked"]
    assert len(slack_api.calls("auth.test")) == 1
    assert not verifier.verified.is_set()


def test_stopping_the_token_check_ends_its_backoff_at_once(slack_api) -> None:
    slack_api.fail_next("auth.test", error="internal_error", times=50)
    verifier, rejections = verifier_for(slack_api)
    verifier.start()
    deadline = time.monotonic() + 5
    while not slack_api.calls("auth.test"):
        assert time.monotonic() < deadline, "auth.test was never called"
        time.sleep(0.02)

    verifier.stop()
    deadline = time.monotonic() + 0.5
    while any(thread.name == "slack-auth-test" for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "the token check outlived stop()"
        time.sleep(0.01)

    assert len(slack_api.calls("auth.test")) == 1
    assert rejections == []
    assert not verifier.verified.is_set()


def test_web_client_waits_out_a_429_then_posts(slack_api) -> None:
    client = web_client_for(slack_api)
    slack_api.rate_limit_next("chat.postMessage", retry_after_s=1)

    started = time.monotonic()
    posted = client.chat_postMessage(channel=RELEASES.id, text="canary at 5 %")
    waited_s = time.monotonic() - started

    assert 1.0 <= waited_s < 2.5
    assert [call.http_status for call in slack_api.calls("chat.postMessage")] == [429, 200]
    assert [m["text"] for m in slack_api.messages(RELEASES.id)] == ["canary at 5 %"]
    assert posted["ts"] == slack_api.messages(RELEASES.id)[0]["ts"]


def test_web_client_gives_up_after_repeated_429s(slack_api) -> None:
    client = web_client_for(slack_api)
    slack_api.rate_limit_next("users.info", times=4, retry_after_s=0)

    with pytest.raises(SlackApiError) as raised:
        client.users_info(user=BOB.id)

    assert raised.value.response["error"] == "ratelimited"
    assert len(slack_api.calls("users.info")) == 4


def test_card_thread_and_update_round_trip(slack_api) -> None:
    client = web_client_for(slack_api)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*shop-api* v2"}}]

    card = client.chat_postMessage(channel=RELEASES.id, text="card", blocks=blocks)
    first = client.chat_postMessage(channel=RELEASES.id, text="stage 1", thread_ts=card["ts"])
    second = client.chat_postMessage(channel=RELEASES.id, text="stage 2", thread_ts=card["ts"])
    updated = client.chat_update(channel=RELEASES.id, ts=card["ts"], text="card v2", blocks=blocks)

    assert float(card["ts"]) < float(first["ts"]) < float(second["ts"])
    assert updated["message"]["text"] == "card v2"
    (top,) = slack_api.messages(RELEASES.id)
    assert top["text"] == "card v2" and top["blocks"] == blocks and top["reply_count"] == 2
    assert top["user"] == BOT_USER_ID
    thread = slack_api.thread(RELEASES.id, card["ts"])
    assert [m["text"] for m in thread] == ["stage 1", "stage 2"]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_update_of_unknown_message_and_reply_to_unknown_thread_fail(slack_api) -> None:
    client = web_client_for(slack_api)

    with pytest.raises(SlackApiError) as update:
        client.chat_update(channel=RELEASES.id, ts="1700000000.000001", text="x")
    with pytest.raises(SlackApiError) as reply:
        client.chat_postMessage(channel=RELEASES.id, text="x", thread_ts="1700000000.000001")
    with pytest.raises(SlackApiError) as empty:
        client.chat_postMessage(channel=RELEASES.id, text="")

    assert update.value.response["error"] == "message_not_found"
    assert reply.value.response["error"] == "thread_not_found"
    assert empty.value.response["error"] == "no_text"
    assert slack_api.messages(RELEASES.id) == []


def test_scripted_error_is_answered_once(slack_api) -> None:
    client = web_client_for(slack_api)
    slack_api.fail_next("chat.postMessage", error="channel_not_found")

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=RELEASES.id, text="first")
    client.chat_postMessage(channel=RELEASES.id, text="second")

    assert raised.value.response["error"] == "channel_not_found"
    assert [m["text"] for m in slack_api.messages(RELEASES.id)] == ["second"]


def test_ephemeral_views_users_groups_and_conversations(slack_api) -> None:
    client = web_client_for(slack_api)
    slack_api.add_user(BOB.id, name=BOB.name, real_name="Bob Builder")
    slack_api.add_usergroup("S0ONCALL01", user_ids=[BOB.id])
    slack_api.add_channel(RELEASES.id, name=RELEASES.name)
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Rollback"}, "blocks": []}

    ephemeral = client.chat_postEphemeral(channel=RELEASES.id, user=BOB.id, text="only you")
    opened = client.views_open(trigger_id="1.2.abc", view=view)

    assert slack_api.ephemerals(RELEASES.id)[0]["ts"] == ephemeral["message_ts"]
    assert opened["view"]["title"] == view["title"] and opened["view"]["id"].startswith("V")
    assert client.users_info(user=BOB.id)["user"]["real_name"] == "Bob Builder"
    assert client.usergroups_users_list(usergroup="S0ONCALL01")["users"] == [BOB.id]
    assert client.conversations_info(channel=RELEASES.id)["channel"]["name"] == RELEASES.name
    with pytest.raises(SlackApiError) as unknown_group:
        client.usergroups_users_list(usergroup="S0NOBODY01")
    assert unknown_group.value.response["error"] == "no_such_subteam"


def test_file_upload_v2_lands_in_the_thread(slack_api) -> None:
    client = web_client_for(slack_api)
    card = client.chat_postMessage(channel=RELEASES.id, text="card")

    client.files_upload_v2(
        channel=RELEASES.id, thread_ts=card["ts"], content="p99,120ms", filename="snapshot.csv"
    )

    (shared,) = slack_api.shared_files()
    assert shared["content"] == b"p99,120ms"
    assert (shared["channel"], shared["thread_ts"]) == (RELEASES.id, card["ts"])


def test_file_upload_v2_records_the_bytes_name_and_alt_text(slack_api) -> None:
    client = web_client_for(slack_api)
    card = client.chat_postMessage(channel=RELEASES.id, text="card")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

    answer = client.files_upload_v2(
        channel=RELEASES.id,
        thread_ts=card["ts"],
        content=png,
        filename="chart.png",
        title="shop-api chart",
        alt_txt="passed: all checks passed",
    )

    assert answer["files"] == [{"id": answer["file"]["id"], "title": "shop-api chart"}]
    (shared,) = slack_api.shared_files()
    assert shared["content"] == png and shared["size"] == len(png)
    assert (shared["name"], shared["alt_txt"]) == ("chart.png", "passed: all checks passed")
    steps = [call.method for call in slack_api.calls() if call.method.startswith("files.")]
    assert steps == ["files.getUploadURLExternal", "files.completeUploadExternal"]


def test_file_upload_steps_answer_slacks_errors(slack_api) -> None:
    client = web_client_for(slack_api)
    with pytest.raises(SlackApiError) as no_length:
        client.files_getUploadURLExternal(filename="a.png", length=0)
    with pytest.raises(SlackApiError) as long_alt:
        client.files_getUploadURLExternal(filename="a.png", length=3, alt_txt="x" * 1001)
    never_uploaded = client.files_getUploadURLExternal(filename="a.png", length=3)["file_id"]
    with pytest.raises(SlackApiError) as not_uploaded:
        client.files_completeUploadExternal(files=[{"id": never_uploaded}], channel_id=RELEASES.id)
    with pytest.raises(SlackApiError) as bad_channel:
        client.files_completeUploadExternal(files=[{"id": never_uploaded}], channel_id="nope")
    with pytest.raises(SlackApiError) as thread_without_channel:
        client.files_completeUploadExternal(files=[{"id": never_uploaded}], thread_ts="1.2")

    assert no_length.value.response["error"] == "invalid_arguments"
    assert long_alt.value.response["error"] == "invalid_arguments"
    assert not_uploaded.value.response["error"] == "file_not_found"
    assert bad_channel.value.response["error"] == "invalid_channel"
    assert thread_without_channel.value.response["error"] == "invalid_arguments"


def test_a_completed_upload_cannot_be_completed_again(slack_api) -> None:
    client = web_client_for(slack_api)
    done = client.files_upload_v2(channel=RELEASES.id, content=b"abc", filename="a.txt")

    with pytest.raises(SlackApiError) as again:
        client.files_completeUploadExternal(files=[{"id": done["file"]["id"]}])

    assert again.value.response["error"] == "file_not_found"
    assert slack_api.shared_files()[0]["thread_ts"] is None


# ---- the stand-in's wire format -----------------------------------------------------------------


def test_standin_checks_the_bearer_token(slack_api) -> None:
    missing = web_api(slack_api, "auth.test")
    wrong = web_api(slack_api, "auth.test", headers={"Authorization": "Bearer xoxb-wrong"})
    as_form_field = web_api(slack_api, "auth.test", data={"token": slack_api.bot_token})

    assert missing.json() == {"ok": False, "error": "not_authed"}
    assert wrong.json() == {"ok": False, "error": "invalid_auth"}
    assert as_form_field.json()["user_id"] == BOT_USER_ID


def test_standin_accepts_form_and_json_bodies_alike(slack_api) -> None:
    auth = {"Authorization": f"Bearer {slack_api.bot_token}"}
    blocks = [{"type": "divider"}]

    as_form = web_api(
        slack_api,
        "chat.postMessage",
        headers=auth,
        data={"channel": RELEASES.id, "text": "form", "blocks": json.dumps(blocks)},
    )
    as_json = web_api(
        slack_api,
        "chat.postMessage",
        headers=auth,
        json={"channel": RELEASES.id, "text": "json", "blocks": blocks},
    )

    assert as_form.json()["ok"] and as_json.json()["ok"]
    assert [(m["text"], m["blocks"]) for m in slack_api.messages(RELEASES.id)] == [
        ("form", blocks),
        ("json", blocks),
    ]


def test_standin_429_carries_retry_after(slack_api) -> None:
    slack_api.rate_limit_next("auth.test", retry_after_s=7)
    auth = {"Authorization": f"Bearer {slack_api.bot_token}"}

    limited = web_api(slack_api, "auth.test", headers=auth)
    after = web_api(slack_api, "auth.test", headers=auth)

    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert after.status_code == 200 and after.json()["ok"]


def test_standin_records_calls_and_resets(slack_api) -> None:
    client = web_client_for(slack_api)
    client.chat_postMessage(channel=RELEASES.id, text="hello")

    (call,) = slack_api.calls("chat.postMessage")
    assert call.params == {"channel": RELEASES.id, "text": "hello"}
    assert call.ok and call.at <= time.monotonic()

    slack_api.reset()
    assert slack_api.calls() == [] and slack_api.messages(RELEASES.id) == []


def test_standin_collects_what_is_posted_to_a_response_url(slack_api, slack_requests) -> None:
    command = slack_requests.slash_command("status shop-api")
    response_url = dict(parse_qsl(command.body))["response_url"]

    posted = requests.post(response_url, json={"text": "shop-api: 5 %"}, timeout=10)

    assert posted.status_code == 200
    (response,) = slack_api.responses()
    assert response["text"] == "shop-api: 5 %"
    assert response_url.endswith(response["response_url_id"])


# ---- the request builder, checked with Slack's own verifier and Bolt's parser --------------------


def test_requests_are_signed_as_slack_signs_them(slack_requests) -> None:
    request = slack_requests.block_action(
        action_id="approve", value="shop-api", message_ts="1732640000.000100", user=BOB
    )
    verifier = SignatureVerifier(SIGNING_SECRET)

    assert verifier.is_valid_request(request.body, request.headers)
    assert not verifier.is_valid_request(request.body + "x", request.headers)
    stale = slack_requests.slash_command("help", timestamp=int(time.time()) - 301)
    assert not verifier.is_valid_request(stale.body, stale.headers)


def test_block_action_parses_as_bolt_expects(slack_requests) -> None:
    request = slack_requests.block_action(
        action_id="rollback", value="shop-api", message_ts="1732640000.000100", user=BOB
    )

    body = BoltRequest(body=request.body, headers=request.headers).body

    assert is_block_actions(body)
    assert to_action(body) == body["actions"][0]
    assert body["actions"][0]["value"] == "shop-api"
    assert (body["user"]["id"], body["channel"]["id"]) == (BOB.id, RELEASES.id)
    assert body["container"]["message_ts"] == "1732640000.000100"
    assert body["response_url"].startswith("http://127.0.0.1:")


def test_standin_permalinks_take_slacks_two_forms(slack_api) -> None:
    client = web_client_for(slack_api)
    card = client.chat_postMessage(channel=RELEASES.id, text="card")
    reply = client.chat_postMessage(channel=RELEASES.id, text="stage 1", thread_ts=card["ts"])

    parent_link = client.chat_getPermalink(channel=RELEASES.id, message_ts=card["ts"])
    reply_link = client.chat_getPermalink(channel=RELEASES.id, message_ts=reply["ts"])
    with pytest.raises(SlackApiError) as unknown:
        client.chat_getPermalink(channel=RELEASES.id, message_ts="1700000000.000001")

    archive = f"{WORKSPACE_URL}archives/{RELEASES.id}/p"
    assert parent_link["permalink"] == archive + card["ts"].replace(".", "")
    assert reply_link["permalink"] == (
        f"{archive}{reply['ts'].replace('.', '')}?thread_ts={card['ts']}&cid={RELEASES.id}"
    )
    assert unknown.value.response["error"] == "message_not_found"


def web_client_for(slack_api: SlackStandIn) -> WebClient:
    settings = settings_for(slack_api)
    return build_web_client(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )


def test_views_update_and_publish_keep_slacks_ids_hashes_and_errors(slack_api) -> None:
    client = web_client_for(slack_api)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Start"}, "blocks": []}
    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "a"}}],
    }
    opened = client.views_open(trigger_id="1.2.abc", view=modal)["view"]

    changed = {**modal, "title": {"type": "plain_text", "text": "Started"}}
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=changed)["view"]
    assert (updated["id"], updated["title"]["text"]) == (opened["id"], "Started")
    assert updated["hash"] != opened["hash"]
    assert slack_api.opened_views()[0]["title"]["text"] == "Started"
    old, view_id = opened["hash"], opened["id"]
    for call, error in (
        (lambda: client.views_update(view_id=view_id, hash=old, view=modal), "hash_conflict"),
        (lambda: client.views_update(view_id="V000000999", view=modal), "not_found"),
        (lambda: client.views_update(view_id=opened["id"], view=home), "invalid_arguments"),
        (lambda: client.views_publish(user_id=BOB.id, view=modal), "invalid_arguments"),
        (lambda: client.views_publish(user_id="nobody", view=home), "not_found"),
    ):  # fmt: skip
        with pytest.raises(SlackApiError) as refused:
            call()
        assert refused.value.response["error"] == error

    first = client.views_publish(user_id=BOB.id, view=home)["view"]
    second = client.views_publish(user_id=BOB.id, view=home, hash=first["hash"])["view"]
    with pytest.raises(SlackApiError) as conflict:
        client.views_publish(user_id=BOB.id, view=home, hash=first["hash"])
    assert conflict.value.response["error"] == "hash_conflict"
    assert (first["type"], second["id"]) == ("home", first["id"])
    assert [v["hash"] for v in slack_api.published_home_views(BOB.id)] == [
        first["hash"],
        second["hash"],
    ]
    assert slack_api.published_home_views(ALICE.id) == []


def test_conversations_members_pages_through_a_channel(slack_api) -> None:
    client = web_client_for(slack_api)
    members = [f"U0MEMBER{n:02d}" for n in range(5)]
    slack_api.add_channel(RELEASES.id, name=RELEASES.name, members=members)

    pages, cursor = [], None
    while True:
        answer = client.conversations_members(channel=RELEASES.id, limit=2, cursor=cursor)
        pages.append(answer["members"])
        cursor = answer["response_metadata"]["next_cursor"]
        if not cursor:
            break

    assert pages == [members[:2], members[2:4], members[4:]]
    with pytest.raises(SlackApiError) as unknown:
        client.conversations_members(channel="C0UNKNOWN1")
    assert unknown.value.response["error"] == "channel_not_found"
