"""Hypothesis fuzzing of the request parsers and of /slack/events on a real bot process.

Run by pytest. parse_command and parse_button_value must answer any input with a value or their
own error; the endpoint must answer any body and headers with 200, 400, 401 or 404 (Bolt: no
listener for a well-formed request), never a 5xx, and log no traceback.
"""

from __future__ import annotations

import json
import time
import typing
from urllib.parse import urlencode

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.commands import Command, UsageError, parse_command
from bot.slack.cards import ButtonRef, InvalidButtonValue, parse_button_value
from tests.infra.slack import SIGNING_SECRET, BotProcess
from tests.infra.slack_requests import slack_signature

COMMAND_TYPES = typing.get_args(Command)
WORDS = [
    "canary",
    "bluegreen",
    "status",
    "list",
    "history",
    "advance",
    "approve",
    "pause",
    "resume",
    "rollback",
    "promote",
    "lock",
    "unlock",
    "help",
    "shop-api",
    "web",
    "1.2.3",
    "v2",
    "registry/img:1.0",
    "img@sha256:",
    "--plan",
    "--for",
    "--reason",
    "--wait",
    "--",
    "\u2014",
    "\u2013",
    "1h",
    "30m",
    "0s",
    "-5m",
    "fast",
    "\u201cquoted\u201d",
    "'q'",
    '"q"',
    "&amp;",
    "&lt;",
    "&gt;",
    "<@U1>",
    "<#C1|x>",
    "*",
    ".",
    ":",
    "@",
    "Shop-API",
]
command_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=8).map(" ".join),
)


@settings(max_examples=600, deadline=None)
@given(command_texts)
def test_parse_command_returns_a_command_or_raises_usage_error(text: str) -> None:
    try:
        command = parse_command(text)
    except UsageError as error:
        assert error.problem
        assert error.usage
    else:
        assert isinstance(command, COMMAND_TYPES)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
button_values = st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, b: f"{a}:{b}", st.text(max_size=20), st.text("0123456789:", max_size=8)),
    json_values,
)


@settings(max_examples=600, deadline=None)
@given(button_values)
def test_parse_button_value_returns_a_ref_or_raises_invalid_button_value(value: object) -> None:
    try:
        ref = parse_button_value(value)
    except InvalidButtonValue as error:
        assert len(str(error)) < 200  # the value is shown cut short, never whole
    else:
        assert isinstance(ref, ButtonRef)
        assert parse_button_value(ref.value) == ref


# ---- the endpoint -----------------------------------------------------------------------------

ALLOWED_STATUSES = {200, 400, 401, 404}
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/json",
    "application/JSON; charset=utf-8",
    "text/plain",
    "",
]
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40).map(
    str.strip
)
form_fields = st.dictionaries(
    st.sampled_from(["payload", "command", "text", "type", "token", "ssl_check"])
    | st.text(max_size=8),
    st.text(max_size=40) | json_values.map(json.dumps),
    max_size=5,
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    form_fields.map(lambda fields: urlencode(fields).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    json_values.map(lambda value: urlencode({"payload": json.dumps(value)}).encode()),
)


@st.composite
def requests_to_events(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    body = draw(bodies)
    headers = {"Content-Type": draw(st.sampled_from(CONTENT_TYPES) | header_text)}
    how = draw(st.sampled_from(["signed", "unsigned", "stale", "garbage headers"]))
    stamp = str(int(time.time()) - (400 if how == "stale" else 0))
    if how in {"signed", "stale"} and _is_utf8(body):
        signature = slack_signature(SIGNING_SECRET, timestamp=stamp, body=body.decode())
        headers |= {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
    elif how == "garbage headers":
        headers |= {
            "X-Slack-Request-Timestamp": draw(header_text),
            "X-Slack-Signature": draw(header_text),
        }
    return body, headers


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_the_endpoint_answers_any_request_without_5xx_or_traceback(bot_process) -> None:
    statuses: set[int] = set()

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests_to_events())
    def answer(request: tuple[bytes, dict[str, str]]) -> None:
        body, headers = request
        response = _post(bot_process, body, headers)
        statuses.add(response.status_code)
        assert response.status_code in ALLOWED_STATUSES, (response.status_code, body, headers)

    answer()
    bot_process.process.ensure_alive()
    assert {400, 401} <= statuses  # the strategies reached the guard's both refusals
    assert "Traceback" not in bot_process.log_text()


def _post(bot: BotProcess, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{bot.client.base_url}/slack/events", data=body, headers=headers, timeout=10
    )
