"""/readyz of a real `release-bot serve` process follows Redis, the apiserver and the bot's own
configuration, and /healthz only says the process lives; plus the cached check behind it.

Run by pytest; uses the fixtures of tests/infra (slack, redis_server, kube)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.core.commands import USAGE
from bot.entrypoints.server import CachedCheck, Readiness
from handlers.commands import NOT_SET_UP
from tests.infra.kube import KubeCluster
from tests.infra.processes import free_port, wait_until
from tests.infra.redis_server import RedisServer
from tests.infra.slack import BotProcess, LaunchBot
from tests.infra.slack_requests import SlackRequests

APPS_FILE = (
    "plans:\n  e2e:\n    - {weight: 25, duration: 1m}\n"
    "apps:\n  shop-api:\n    namespace: default\n    workload: shop-api\n"
    "    slack_channel: C0RELEASES\n    plan: e2e\n"
    "    router: {provider: replicas, service: shop-api}\n"
)
FOLLOWS_WITHIN_S = 5.0
"""How soon /readyz must follow a dependency going or coming back (its answers stand 1 s)."""


@pytest.fixture
def apps_file(tmp_path: Path) -> Path:
    path = tmp_path / "apps.yaml"
    path.write_text(APPS_FILE)
    return path


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis for this test alone, so stopping it disturbs no other test."""
    server = RedisServer(data_dir=tmp_path / "redis").start()
    yield server
    server.stop()


def _checks(bot: BotProcess) -> dict[str, bool]:
    checks: dict[str, bool] = bot.readiness()["checks"]
    return checks


def _wait_readyz(bot: BotProcess, status: int, what: str) -> float:
    return wait_until(
        lambda: bot.client.get("/readyz").status_code == status,
        timeout_s=FOLLOWS_WITHIN_S,
        what=what,
        interval_s=0.05,
    )


# ---------------------------------------------------------------- Redis


def test_readyz_turns_503_while_redis_is_stopped_and_200_once_it_is_back(
    launch_bot: LaunchBot, own_redis: RedisServer, kube_cluster: KubeCluster, apps_file: Path
) -> None:
    bot = launch_bot(
        extra_env={
            "REDIS_URL": own_redis.url,
            "RELEASE_BOT_CONFIG": str(apps_file),
            "KUBECONFIG": str(kube_cluster.kubeconfig()),
        }
    )
    assert bot.readiness() == {
        "ready": True,
        "checks": {
            "releases_configured": True,
            "redis": True,
            "kube_apiserver": True,
            "slack_auth": True,
            "scheduler": True,
        },
    }

    own_redis.stop()
    down_s = _wait_readyz(bot, 503, "/readyz to turn 503 with Redis stopped")
    checks = _checks(bot)
    assert checks["redis"] is False
    assert all(ok for name, ok in checks.items() if name != "redis"), checks
    assert bot.client.get("/healthz").json() == {"status": "ok"}  # the process lives on

    own_redis.start()  # same port and data directory
    back_s = _wait_readyz(bot, 200, "/readyz to turn 200 with Redis back")
    assert all(_checks(bot).values())
    print(f"/readyz 503 {down_s:.2f} s after Redis stopped, 200 {back_s:.2f} s after it was back")


# ---------------------------------------------------------------- configuration


def test_without_redis_url_the_bot_is_not_ready_and_names_it_yet_answers_help(
    launch_bot: LaunchBot, slack_requests: SlackRequests, apps_file: Path
) -> None:
    bot = launch_bot(extra_env={"RELEASE_BOT_CONFIG": str(apps_file)})

    readyz = bot.client.get("/readyz")
    assert readyz.status_code == 503
    assert readyz.json() == {
        "ready": False,
        "checks": {"releases_configured": False, "slack_auth": True},
        "details": {"releases_configured": {"missing": ["REDIS_URL or REDIS_SENTINELS"]}},
    }
    assert bot.client.get("/healthz").status_code == 200
    help_answer = bot.client.post_events(slack_requests.slash_command("help"))
    assert help_answer.json()["text"] == f"```{USAGE}```"
    canary = bot.client.post_events(slack_requests.slash_command("canary shop-api v2"))
    assert canary.json()["text"] == NOT_SET_UP


# ---------------------------------------------------------------- the apiserver


class _ApiserverReadyz(BaseHTTPRequestHandler):
    """Answers GET /readyz as a healthy kube-apiserver does."""

    def do_GET(self) -> None:
        status, body = (200, b"ok") if self.path.startswith("/readyz") else (404, b"")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: stub\n"
        f"clusters: [{{name: stub, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: stub, user: {token: stub-token}}]\n"
        "contexts: [{name: stub, context: {cluster: stub, user: stub}}]\n"
    )
    return path


def test_readyz_turns_503_while_the_apiserver_is_unreachable_and_200_once_it_answers(
    launch_bot: LaunchBot, redis_server: RedisServer, apps_file: Path, tmp_path: Path
) -> None:
    port = free_port()  # closed until the stand-in apiserver listens on it
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    bot = launch_bot(
        extra_env={
            "REDIS_URL": redis_server.url,
            "RELEASE_BOT_CONFIG": str(apps_file),
            "KUBECONFIG": str(kubeconfig),
        },
        wait_ready=False,
    )
    wait_until(lambda: _checks(bot)["slack_auth"], timeout_s=30, what="the bot's token check")

    readyz = bot.client.get("/readyz")
    assert readyz.status_code == 503
    assert {name for name, ok in readyz.json()["checks"].items() if not ok} == {"kube_apiserver"}

    apiserver = ThreadingHTTPServer(("127.0.0.1", port), _ApiserverReadyz)
    threading.Thread(target=apiserver.serve_forever, daemon=True).start()
    try:
        back_s = _wait_readyz(bot, 200, "/readyz to turn 200 once the apiserver answers")
    finally:
        apiserver.shutdown()
        apiserver.server_close()
    print(f"/readyz 200 {back_s:.2f} s after the apiserver answered")


# ---------------------------------------------------------------- the cached check


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_check_asks_once_per_max_age() -> None:
    calls: list[float] = []
    clock = _Clock()
    check = CachedCheck(
        lambda: calls.append(clock.now) is None, timeout_s=1, max_age_s=1, clock=clock
    )

    assert [check() for _ in range(5)] == [True] * 5
    clock.now += 0.9
    assert check()
    assert len(calls) == 1
    clock.now += 0.2
    assert check()
    assert calls == pytest.approx([100.0, 101.1])


def test_a_hung_check_fails_within_its_timeout_and_runs_once_at_a_time() -> None:
    release = threading.Event()
    started: list[int] = []

    def hangs() -> bool:
        started.append(1)
        return release.wait(10)

    check = CachedCheck(hangs, timeout_s=0.2, max_age_s=1)
    began = time.monotonic()
    answers = [check() for _ in range(3)]
    waited_s = time.monotonic() - began

    assert answers == [False, False, False]
    assert waited_s < 1.5  # three waits of 0.2 s, not the 10 s the check hangs
    assert len(started) == 1  # the later callers waited on the same running check
    release.set()
    wait_until(check, timeout_s=2, what="the check to pass once the server answers")


def test_a_raising_check_fails() -> None:
    def raises() -> bool:
        raise ConnectionError("refused")

    assert CachedCheck(raises, timeout_s=1, max_age_s=1)() is False


def test_readiness_shows_the_details_of_failing_checks_only() -> None:
    readiness = Readiness()
    readiness.add("configured", lambda: False, detail={"missing": ["REDIS_URL"]})
    readiness.add("slack_auth", lambda: True, detail={"never": "shown"})

    assert readiness.body() == {
        "ready": False,
        "checks": {"configured": False, "slack_auth": True},
        "details": {"configured": {"missing": ["REDIS_URL"]}},
    }
