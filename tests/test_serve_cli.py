"""What a newcomer meets running `release-bot`: its help, its version, its configuration errors,
and how `serve` ends when PORT is taken or Slack cannot be reached.

Run by pytest; each case runs `python3 -m bot.entrypoints.cli ...` as a subprocess (a real port
bound, a closed loopback port for Slack)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version

import pytest

from bot.entrypoints.exit_codes import (
    EXIT_BAD_CONFIG,
    EXIT_CODES,
    EXIT_PORT_UNAVAILABLE,
    EXIT_SLACK_UNREACHABLE,
)
from bot.entrypoints.settings import _HELP, Settings
from tests.infra.processes import free_port
from tests.infra.slack import INHERITED_VARIABLES, REPO_ROOT, SIGNING_SECRET, BotProcess

BOT_TOKEN = "xoxb-1-test"
APP_TOKEN = "xapp-1-A0RELBOT01-1-ffff"


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    inherited = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    return subprocess.run(
        [sys.executable, "-m", "bot.entrypoints.cli", *args],
        env={**inherited, **(env or {})},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/api/"


def assert_one_clear_line(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The run ended with `exit_code`, one plain stderr line, a last JSON log line, no traceback."""
    assert result.returncode == exit_code, (result.stdout[-2000:], result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("release-bot: ")
    last = json.loads(result.stdout.splitlines()[-1])
    assert (last["event"], last["exit_code"]) == ("fatal", exit_code)
    assert f"release-bot: {last['reason']}" == line
    return line


# ---------------------------------------------------------------- --version and --help


def test_version_comes_from_the_installed_package() -> None:
    result = run_cli("--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"release-bot {version('release-bot')}"


def test_every_setting_has_one_line_of_help() -> None:
    variables = {name.upper() for name in Settings.model_fields}

    assert variables == set(_HELP), "settings.py's _HELP and the Settings fields differ"


def test_serve_help_lists_each_environment_variable_on_one_line_and_the_exit_codes() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()

    for field_name, field in Settings.model_fields.items():
        variable = field_name.upper()
        (line,) = [line for line in lines if line.split()[:1] == [variable]]
        assert _HELP[variable] in line
        if field.default not in (None, ...) and not field.is_required():
            assert f"(default {field.default})" in line
    assert "SLACK_BOT_TOKEN" in next(line for line in lines if "(required)" in line)
    for code, meaning in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", result.stdout, re.MULTILINE)


def test_readme_lists_the_same_exit_codes() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Running it for real", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\d+)` \| (.+) \|$", section, re.MULTILINE)

    assert [(int(code), meaning) for code, meaning in rows] == list(EXIT_CODES)


# ---------------------------------------------------------------- bad settings


def test_three_bad_variables_are_reported_in_one_message() -> None:
    result = run_cli(
        "serve",
        env={
            "SLACK_BOT_TOKEN": "not-a-bot-token",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "PORT": "http",
            "RELEASE_BOT_TICK_SECONDS": "-1",
        },
    )

    assert result.returncode == EXIT_BAD_CONFIG
    assert result.stderr.count("invalid configuration") == 1
    problems = result.stderr.splitlines()[1:]
    assert [problem.split()[2].rstrip(":") for problem in problems] == [
        "SLACK_BOT_TOKEN",
        "RELEASE_BOT_TICK_SECONDS",
        "PORT",
    ], result.stderr
    assert "must be a bot token starting with xoxb-" in problems[0]
    assert "not-a-bot-token" not in result.stderr  # a value may be a secret: never echoed


def test_a_missing_signing_secret_is_reported_with_the_other_problems() -> None:
    result = run_cli("serve", env={"PORT": "0"})  # no token, no signing secret, a bad port

    assert result.returncode == EXIT_BAD_CONFIG
    assert result.stderr.splitlines()[1:] == [
        f"  missing environment variable SLACK_BOT_TOKEN ({_HELP['SLACK_BOT_TOKEN']})",
        "  environment variable SLACK_SIGNING_SECRET: is required in HTTP mode "
        "(no SLACK_APP_TOKEN is set)",
        "  environment variable PORT: Input should be greater than or equal to 1",
    ]


# ---------------------------------------------------------------- PORT taken


def test_a_taken_port_ends_serve_with_one_clear_line_and_its_own_exit_code() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli(
            "serve",
            env={
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": closed_port_url(),
                "PORT": str(port),
            },
        )

    line = assert_one_clear_line(result, EXIT_PORT_UNAVAILABLE)
    assert f"cannot listen on PORT {port}: Address already in use" in line


# ---------------------------------------------------------------- Slack unreachable


class _SlackApiGivingAClosedWebSocket(BaseHTTPRequestHandler):
    """apps.connections.open succeeds, with a WebSocket URL on which nobody listens."""

    websocket_port = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"ok": True, "url": f"ws://127.0.0.1:{self.websocket_port}/link"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def slack_api_with_closed_websocket() -> Iterator[str]:
    _SlackApiGivingAClosedWebSocket.websocket_port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlackApiGivingAClosedWebSocket)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/"
    server.shutdown()
    server.server_close()


def _socket_mode_run(api_url: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "serve",
        env={
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_URL": api_url,
            "PORT": str(free_port()),
        },
    )


def test_socket_mode_with_the_slack_api_unreachable_ends_with_one_clear_line() -> None:
    api_url = closed_port_url()

    line = assert_one_clear_line(_socket_mode_run(api_url), EXIT_SLACK_UNREACHABLE)

    assert f"Slack unreachable at SLACK_API_URL {api_url}" in line
    assert "Connection refused" in line


def test_socket_mode_with_the_websocket_unreachable_ends_with_one_clear_line(
    slack_api_with_closed_websocket: str,
) -> None:
    result = _socket_mode_run(slack_api_with_closed_websocket)

    line = assert_one_clear_line(result, EXIT_SLACK_UNREACHABLE)
    assert "Socket Mode WebSocket could not be opened" in line


# ---------------------------------------------------------------- Bolt's start-up warning


def test_serve_starts_without_bolts_token_unused_warning(bot_process: BotProcess) -> None:
    bot_process.stop()
    log = bot_process.log_text()

    lines = [json.loads(line) for line in log.splitlines()]
    assert "starting" in [line["event"] for line in lines]
    assert "will be unused" not in log
    warnings = [line["event"] for line in lines if line["level"] == "warning"]
    assert warnings == ["releases_disabled"]  # this bot has no apps file nor Redis, on purpose
