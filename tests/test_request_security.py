"""Request security of /slack/events (bot.entrypoints.request_guard), through the real endpoint.

Run by pytest; a real `release-bot serve` (tests/infra/slack.py) gets requests signed as Slack
signs them (tests/infra/slack_requests.py), and forged, tampered, stale and malformed ones. A
listener that ran would answer a button click on its response_url, which the Slack stand-in
records: no recorded response means no listener ran.
"""

from __future__ import annotations

import json
import secrets
import time
from urllib.parse import urlencode

import pytest
import requests

from bot.entrypoints.request_guard import MAX_BODY_BYTES, MAX_CLOCK_SKEW_S
from tests.infra.processes import wait_until
from tests.infra.slack import SIGNING_SECRET, BotProcess
from tests.infra.slack_requests import SignedRequest, SlackRequests, slack_signature
from tests.infra.slack_standin import SlackStandIn

UNKNOWN_BUTTON = "no_such_button"
"""A click on it makes the catch-all listener answer on the response_url at once."""

QUIET_S = 1.0
"""How long a test waits for a response_url call that must not come."""


def click(slack_requests: SlackRequests, **overrides: int) -> SignedRequest:
    return slack_requests.block_action(
        action_id=UNKNOWN_BUTTON, value="rel-1:0", message_ts="1700000000.000100", **overrides
    )


def post(bot: BotProcess, body: bytes | str, headers: dict[str, str]) -> requests.Response:
    data = body.encode() if isinstance(body, str) else body
    return requests.post(
        f"{bot.client.base_url}/slack/events", data=data, headers=headers, timeout=10
    )


def signed(body: str, *, content_type: str = "application/x-www-form-urlencoded") -> SignedRequest:
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": slack_signature(SIGNING_SECRET, timestamp=stamp, body=body),
    }
    return SignedRequest(body=body, headers=headers)


def assert_no_traceback(bot: BotProcess) -> None:
    log = bot.log_text()
    assert "Traceback" not in log
    assert '"exception"' not in log


def assert_no_listener_ran(slack_api: SlackStandIn) -> None:
    time.sleep(QUIET_S)
    assert slack_api.responses() == []
    assert slack_api.calls("chat.postMessage") == []


# ---- the control: a genuine click reaches the listener ---------------------------------------


def test_a_genuine_click_reaches_the_listener(bot_process, slack_api, slack_requests) -> None:
    assert bot_process.client.post_events(click(slack_requests)).status_code == 200

    wait_until(lambda: slack_api.responses() != [], timeout_s=10, what="the listener's answer")
    assert UNKNOWN_BUTTON in slack_api.responses()[0]["text"]


# ---- malformed bodies: 400, short JSON, no traceback ------------------------------------------


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("payload=not-json", FORM),
        ("payload=%7B", FORM),
        ("payload=%5B1%2C2%5D", FORM),
        ("payload=null", FORM),
        ("{not json", FORM),
        ("[1]", "application/json"),
    ],
)
def test_a_signed_body_that_does_not_parse_is_400_without_traceback(
    bot_process, slack_api, body, content_type
) -> None:
    response = post(bot_process, *_parts(signed(body, content_type=content_type)))

    assert response.status_code == 400
    assert response.json() == {"error": "malformed request body"}
    assert_no_traceback(bot_process)
    assert_no_listener_ran(slack_api)


def test_an_unsigned_body_that_does_not_parse_is_401_never_parsed(bot_process, slack_api) -> None:
    response = post(bot_process, "payload=not-json", {"Content-Type": "application/json"})

    assert response.status_code == 401
    assert response.json() == {"error": "invalid request signature"}
    assert_no_traceback(bot_process)


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", ""])
def test_a_wrong_content_type_is_400(bot_process, slack_api, slack_requests, content_type) -> None:
    request = click(slack_requests)
    headers = {**request.headers, "Content-Type": content_type}

    response = post(bot_process, request.body, headers)

    assert response.status_code == 400
    assert response.json() == {"error": "unsupported Content-Type"}
    assert_no_traceback(bot_process)
    assert_no_listener_ran(slack_api)


def test_a_body_over_the_limit_is_400_even_signed(bot_process, slack_api) -> None:
    request = signed(urlencode({"text": "x" * MAX_BODY_BYTES}))

    response = post(bot_process, *_parts(request))

    assert response.status_code == 400
    assert response.json() == {"error": f"request body over {MAX_BODY_BYTES} bytes"}
    assert_no_traceback(bot_process)
    assert_no_listener_ran(slack_api)


def test_a_body_at_the_limit_is_read(bot_process, slack_requests) -> None:
    command = slack_requests.slash_command("help")
    padding = "&x=" + "p" * (MAX_BODY_BYTES - len(command.body) - 3)
    request = signed(command.body + padding)
    assert len(request.body) == MAX_BODY_BYTES

    response = post(bot_process, *_parts(request))

    assert response.status_code == 200
    assert "Usage" in response.json()["text"]


# ---- forged, tampered, replayed: 401, no listener --------------------------------------------


def test_forged_tampered_and_replayed_clicks_are_401_and_reach_no_listener(
    bot_process, slack_api, slack_requests
) -> None:
    forger = SlackRequests(
        signing_secret=secrets.token_hex(16), response_url_base=slack_api.response_url_base
    )
    genuine = click(slack_requests)
    now = int(time.time())
    rejected = {
        "forged": click(forger),
        "tampered": genuine.with_body(genuine.body.replace("rel-1", "rel-2")),
        "replayed": click(slack_requests, timestamp=now - MAX_CLOCK_SKEW_S - 5),
        "from the future": click(slack_requests, timestamp=now + MAX_CLOCK_SKEW_S + 5),
        "unsigned": SignedRequest(genuine.body, {"Content-Type": genuine.headers["Content-Type"]}),
        "bad timestamp": SignedRequest(
            genuine.body, {**genuine.headers, "X-Slack-Request-Timestamp": "soon"}
        ),
        "signature v1": SignedRequest(
            genuine.body,
            {**genuine.headers, "X-Slack-Signature": "v1=" + "0" * 64},
        ),
    }
    assert genuine.body != rejected["tampered"].body

    statuses = {name: bot_process.client.post_events(r).status_code for name, r in rejected.items()}

    assert statuses == dict.fromkeys(rejected, 401)
    assert_no_listener_ran(slack_api)
    assert_no_traceback(bot_process)


def test_a_replay_just_inside_the_window_is_accepted(bot_process, slack_requests) -> None:
    recent = click(slack_requests, timestamp=int(time.time()) - MAX_CLOCK_SKEW_S + 30)

    assert bot_process.client.post_events(recent).status_code == 200


def test_only_post_is_accepted(bot_process) -> None:
    response = bot_process.client.get("/slack/events")

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


# ---- secrets never in a log line or an answer ------------------------------------------------


def test_a_token_in_a_request_body_never_reaches_the_log_or_an_answer(
    bot_process, slack_requests
) -> None:
    token = f"xoxb-{secrets.randbelow(10**12)}-{secrets.token_hex(12)}"
    command = slack_requests.slash_command(f"pause shop-api {token}")
    carrying = {
        "signed command": command,
        "tampered command": command.with_body(command.body + "&x=1"),
        "signed malformed payload": signed(f"payload={token}"),
        "unsigned malformed payload": SignedRequest(f"payload={{{token}", {}),
        "oversized": signed(f"token={token}&text=" + "x" * MAX_BODY_BYTES),
    }

    answers = {name: bot_process.client.post_events(r) for name, r in carrying.items()}
    bot_process.stop()

    assert [a.status_code for a in answers.values()] == [200, 401, 400, 401, 400]
    for answer in answers.values():
        assert token not in answer.text
        assert SIGNING_SECRET not in answer.text
    log = bot_process.log_text()
    assert "slack_request_rejected" in log  # the rejections were logged...
    assert token not in log  # ...without the body
    assert SIGNING_SECRET not in log
    assert "Traceback" not in log


def _parts(request: SignedRequest) -> tuple[str, dict[str, str]]:
    return request.body, request.headers


def test_rejections_are_json_lines(bot_process) -> None:
    post(bot_process, "payload=1", {})
    bot_process.stop()
    lines = [json.loads(line) for line in bot_process.log_text().splitlines()]

    (rejection,) = [line for line in lines if line["event"] == "slack_request_rejected"]
    assert rejection["status"] == "401 Unauthorized"
    assert rejection["reason"] == "invalid request signature"
