"""The Slack side of the test infrastructure: the Web API stand-in and the bot as a real process.

A pytest plugin (listed in tests/conftest.py). Fixtures:
- `slack_standin`: the stand-in for Slack's Web API (session-scoped; see slack_standin.py);
- `slack_api`: the same stand-in, reset for the test (no calls, messages or faults left over);
- `slack_requests`: builds requests signed with the bot's signing secret;
- `launch_bot`: starts `python -m bot.entrypoints.cli serve` with extra environment, waits
  until it is up (`BotProcess.is_up`: /readyz passes every check the environment allows);
- `bot_process`: one bot launched with the defaults (HTTP mode, LOG_LEVEL=DEBUG).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.infra.processes import ManagedProcess, free_port, wait_until
from tests.infra.slack_requests import SignedRequest, SlackRequests
from tests.infra.slack_standin import SlackStandIn

REPO_ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = secrets.token_hex(16)
"""The bot's signing secret in every test run (random, so a leak into a log is unmistakable)."""

BOT_READY_TIMEOUT_S = 30.0
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
"""The only variables a bot process inherits: the test decides all of its configuration."""
RELEASE_VARIABLES = ("RELEASE_BOT_CONFIG", "REDIS_URL")
"""Without both the bot answers only `/release help` and /readyz says releases_configured false."""


@dataclass
class BotClient:
    """Talks HTTP to a running bot."""

    base_url: str

    def post_events(self, request: SignedRequest) -> requests.Response:
        return requests.post(
            f"{self.base_url}/slack/events",
            data=request.body.encode(),
            headers=request.headers,
            timeout=10,
        )

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.base_url}{path}", timeout=10)


@dataclass
class BotProcess:
    """A `release-bot serve` subprocess and what a test needs to drive and inspect it."""

    process: ManagedProcess
    port: int
    environment: dict[str, str]

    @property
    def client(self) -> BotClient:
        return BotClient(f"http://127.0.0.1:{self.port}")

    def log_text(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, then wait; returns the exit code."""
        self.process.stop()
        return self.process.popen.returncode if self.process.popen else None

    def is_ready(self) -> bool:
        self.process.ensure_alive()
        return self.client.get("/readyz").status_code == 200

    @property
    def releases_configured(self) -> bool:
        return all(name in self.environment for name in RELEASE_VARIABLES)

    def readiness(self) -> dict[str, Any]:
        """/readyz's JSON body."""
        self.process.ensure_alive()
        body: dict[str, Any] = self.client.get("/readyz").json()
        return body

    def is_up(self) -> bool:
        """Ready, or (without RELEASE_VARIABLES: a bot that only answers help) ready but for
        releases_configured, which such a bot reports false on purpose."""
        if self.releases_configured:
            return self.is_ready()
        checks = dict(self.readiness()["checks"])
        return checks.pop("releases_configured") is False and all(checks.values())


LaunchBot = Callable[..., BotProcess]


@pytest.fixture(scope="session")
def slack_standin() -> Iterator[SlackStandIn]:
    standin = SlackStandIn(bot_token=f"xoxb-{secrets.randbelow(10**12)}-{secrets.token_hex(12)}")
    yield standin.start()
    standin.close()


@pytest.fixture
def slack_api(slack_standin: SlackStandIn) -> SlackStandIn:
    slack_standin.reset()
    return slack_standin


@pytest.fixture
def slack_requests(slack_standin: SlackStandIn) -> SlackRequests:
    return SlackRequests(
        signing_secret=SIGNING_SECRET, response_url_base=slack_standin.response_url_base
    )


@pytest.fixture
def launch_bot(slack_api: SlackStandIn, tmp_path: Path) -> Iterator[LaunchBot]:
    """`launch_bot(extra_env={...}, wait_ready=True)`: a new bot process, stopped after the test."""
    launched: list[BotProcess] = []

    def launch(
        *, extra_env: Mapping[str, str] | None = None, wait_ready: bool = True
    ) -> BotProcess:
        port = free_port()
        environment = {
            "SLACK_BOT_TOKEN": slack_api.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack_api.api_url,
            "PORT": str(port),
            "LOG_LEVEL": "DEBUG",
            **(extra_env or {}),
        }
        bot = BotProcess(
            _bot_process(environment, tmp_path / f"bot-{len(launched)}.log"), port, environment
        )
        launched.append(bot)
        bot.process.start()
        if wait_ready:
            wait_until(bot.is_up, timeout_s=BOT_READY_TIMEOUT_S, what="release-bot serve")
        return bot

    yield launch
    for bot in launched:
        bot.stop()


@pytest.fixture
def bot_process(launch_bot: LaunchBot) -> BotProcess:
    return launch_bot()


def _bot_process(environment: Mapping[str, str], log_path: Path) -> ManagedProcess:
    """`env -i` so the bot sees exactly `environment` (plus PATH and locale), nothing else."""
    inherited = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    assignments = [f"{name}={value}" for name, value in {**inherited, **environment}.items()]
    argv = ["env", "-i", *assignments, sys.executable, "-m", "bot.entrypoints.cli", "serve"]
    return ManagedProcess("release-bot", argv, log_path, cwd=REPO_ROOT)
