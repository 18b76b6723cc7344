"""How fast release-bot acknowledges Slack, against bare Bolt apps measured in the same run.

Run by hand from the repository root (`python bench/acks.py`, see bench/README.md); not a pytest
test. It starts, one after the other on free loopback ports:
  - "bolt-waitress": a bare Bolt App behind Bolt's WSGI adapter on waitress (default settings);
  - "bolt-aiohttp": a bare Bolt AsyncApp on aiohttp (AsyncApp.start), the baseline of the ratios;
  - "release-bot": `python -m bot.entrypoints.cli serve` from this checkout, HTTP mode, with a
    real redis-server (AOF, fsync always, as the tests run it), an apps file with one app whose
    canary runs its first stage, and the Slack stand-in (tests/infra/slack_standin.py) as the
    Web API and as the target of every `response_url`.
The bare apps' listeners acknowledge and do nothing else. Each is sent, by Debian's wrk at 16
connections (2 threads), requests signed exactly as Slack signs them (bench/acks.lua), each kind
for ROUNDS rounds of SECONDS s after a 2 s warm-up:
  - status: `/release status shop-api` (read-only: the bot reads Redis and answers the card in
    the acknowledgement);
  - pause: `/release pause shop-api` (mutating: acknowledged at once, carried out after the ack;
    the first one pauses the release, the later ones are refused by the state machine, each
    audited and answered through its response_url);
  - click: the card's Resume button (the same, as a block_actions payload).
Every request carries its own trigger id (the pool holds more requests than a round sends, or
the script says it wrapped). It prints req/s and p99 of each round and their mean, and each
figure's ratio to bolt-aiohttp's; for release-bot's mutating kinds also how long after the
round the last after-ack answer reached the stand-in.
`--profile DIR`: also records release-bot under py-spy during one more round of each kind.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# Measure this checkout's bot (pip's editable install may point at another one), and reach tests/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bot.application.apps_file import load_config
from bot.core.machine import Accepted, CanaryReady, start_release, transition
from bot.core.ports import HistoryEntry
from bot.core.release import Release
from bot.redis.store import ReleaseStore, connect
from bot.slack.cards import ACTION_RESUME, ButtonRef
from tests.infra.processes import free_port, wait_until
from tests.infra.redis_server import RedisServer
from tests.infra.slack_requests import RELEASES, SignedRequest, SlackRequests
from tests.infra.slack_standin import SlackStandIn

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = "shop-api"
CONNECTIONS = 16
WRK_THREADS = 2
ROUNDS = 2
SECONDS = 10
WARM_UP_SECONDS = 2
POOL_SIZE = 30_000
"""Signed requests written for one wrk run; more than any server here answers in SECONDS."""
KINDS = ("status", "pause", "click")
TARGETS = ("bolt-waitress", "bolt-aiohttp", "release-bot")
BASELINE = "bolt-aiohttp"
AFTER_ACK_TIMEOUT_S = 120.0
LUA_SCRIPT = Path(__file__).with_name("acks.lua")


@dataclass(frozen=True)
class Server:
    port: int
    pid: int

    def cpu_s(self) -> float:
        """CPU time the process has used so far, all its threads (user + system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Round:
    requests: int
    seconds: float
    p99_ms: float
    errors: int
    cpu_ms: float = 0.0
    """The server's CPU time per request, its after-ack work included."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


# ---------------------------------------------------------------- the bare Bolt apps


def serve_bare_waitress(port: int, signing_secret: str, api_url: str, token: str) -> None:
    """A bare Bolt App on Bolt's WSGI adapter and waitress (its default 4 threads)."""
    import waitress
    from slack_bolt import Ack, App
    from slack_bolt.adapter.wsgi import SlackRequestHandler
    from slack_sdk import WebClient

    app = App(
        client=WebClient(token=token, base_url=api_url),
        signing_secret=signing_secret,
        token_verification_enabled=False,
    )

    @app.command("/release")
    def command(ack: Ack, command: dict[str, str]) -> None:
        ack(text=f"bare: {command['text']}", response_type="ephemeral")

    @app.action(re.compile(".*"))
    def click(ack: Ack) -> None:
        ack()

    waitress.serve(SlackRequestHandler(app), host="127.0.0.1", port=port, _quiet=True)


def serve_bare_aiohttp(port: int, signing_secret: str, api_url: str, token: str) -> None:
    """A bare Bolt AsyncApp on aiohttp (AsyncApp.start)."""
    from slack_bolt.async_app import AsyncAck, AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    app = AsyncApp(
        client=AsyncWebClient(token=token, base_url=api_url),
        signing_secret=signing_secret,
    )

    @app.command("/release")
    async def command(ack: AsyncAck, command: dict[str, str]) -> None:
        await ack(text=f"bare: {command['text']}", response_type="ephemeral")

    @app.action(re.compile(".*"))
    async def click(ack: AsyncAck) -> None:
        await ack()

    asyncio.set_event_loop(asyncio.new_event_loop())
    app.start(port=port, host="127.0.0.1")


BARE_SERVERS = {"bolt-waitress": serve_bare_waitress, "bolt-aiohttp": serve_bare_aiohttp}


# ---------------------------------------------------------------- the world around release-bot


def running_release(apps: Path) -> Release:
    """shop-api's canary in its first stage (of the apps file's plan), card and thread posted."""
    now = datetime.now(UTC)
    started = start_release(
        release_id="bench-acks",
        app=APP,
        version="v2",
        previous_version="v1",
        plan=load_config(apps).plans["bench"],
        requested_by="U0BENCH001",
        channel=RELEASES.id,
        four_eyes=False,
        now=now,
    )
    running = transition(started.release, CanaryReady(), now=now)
    assert isinstance(running, Accepted), running
    return running.release.evolve(card_ts="1.1", thread_ts="1.1")


def seed(redis_url: str, apps: Path) -> Release:
    """A fresh Redis holding shop-api's running release (as the bot's own store writes it)."""
    store = ReleaseStore(connect(redis_url))
    release = running_release(apps)
    entry = HistoryEntry(
        at=datetime.now(UTC).isoformat(),
        release_id=release.id,
        actor="U0BENCH001",
        action="start",
        outcome="applied",
    )
    store.create(release, entry=entry)
    return release


def button_value(release: Release) -> str:
    """The value of the card's buttons: the release and the stage the card shows."""
    return ButtonRef(release_id=release.id, stage_index=release.stage_index).value


def write_world(directory: Path) -> tuple[Path, Path]:
    """The apps file (one app in the releases channel) and a kubeconfig whose apiserver is a
    closed loopback port: acknowledgements never reach the cluster."""
    apps = directory / "apps.yaml"
    apps.write_text(
        "plans:\n  bench:\n    - {weight: 10, duration: 1h}\n"
        f"apps:\n  {APP}:\n    namespace: shop\n    workload: {APP}\n    plan: bench\n"
        f"    slack_channel: {RELEASES.id}\n    router: {{provider: replicas}}\n"
    )
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "none", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "none", "user": {"token": "bench"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    return apps, kubeconfig


@contextmanager
def running(name: str, argv: list[str], env: dict[str, str], log: Path) -> Iterator[Server]:
    """A server process on a free port (PORT in its environment)."""
    port = free_port()
    inherited = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    process = subprocess.Popen(
        argv,
        env={**inherited, **env, "PORT": str(port)},
        cwd=REPO_ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        try:
            wait_until(lambda: _listening(port, process), timeout_s=30, what=name)
        except TimeoutError:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        yield Server(port, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"exited with {process.returncode}")
    return requests.post(f"http://127.0.0.1:{port}/slack/events", timeout=2).status_code < 500


# ---------------------------------------------------------------- requests and wrk


def signed_pool(kind: str, slack: SlackRequests, button_value: str, path: Path) -> Path:
    """POOL_SIZE requests of `kind`, freshly signed, one per line for bench/acks.lua."""
    with path.open("w") as out:
        for _ in range(POOL_SIZE):
            request = _request(kind, slack, button_value)
            headers = request.headers
            stamp, signature = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
            out.write(f"{stamp} {signature} {request.body}\n")
    return path


def _request(kind: str, slack: SlackRequests, button_value: str) -> SignedRequest:
    if kind == "status":
        return slack.slash_command(f"status {APP}")
    if kind == "pause":
        return slack.slash_command(f"pause {APP}")
    return slack.block_action(action_id=ACTION_RESUME, value=button_value, message_ts="1.1")


def wrk(port: int, pool: Path, seconds: float) -> Round:
    argv = [
        "wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{port}/slack/events", "--", str(pool),
        str(WRK_THREADS),
    ]  # fmt: skip
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("ACKS_JSON "))
    figures = json.loads(line.removeprefix("ACKS_JSON "))
    errors = sum(figures[key] for key in ("connect", "read", "write", "status", "timeout"))
    return Round(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p99_ms=figures["p99_us"] / 1e3,
        errors=errors,
    )


# ---------------------------------------------------------------- the run


@dataclass
class Bench:
    workdir: Path
    standin: SlackStandIn
    slack: SlackRequests
    signing_secret: str
    button_value: str = ""

    def warm_up(self, server: Server, kind: str) -> None:
        wrk(server.port, self.pool(kind), WARM_UP_SECONDS)
        self.drain()

    def measure(self, target: str, server: Server, kind: str) -> Round:
        """One round of `kind` against `target`, printed as it ends."""
        pool = self.pool(kind)
        answered_before = len(self.standin.responses())
        cpu_before = server.cpu_s()
        measured = wrk(server.port, pool, SECONDS)
        line = (
            f"  {target:>13} {kind:>6}: {measured.rate:7.0f} req/s  p99 {measured.p99_ms:6.1f} ms"
        )
        if measured.errors:
            line += f"  {measured.errors} errors (non-2xx, timeouts)"
        if target == "release-bot" and kind != "status":
            waited = self.wait_answers(answered_before + measured.requests)
            line += f"  all {measured.requests} carried out and answered {waited:.1f} s after"
        cpu_ms = (server.cpu_s() - cpu_before) * 1000 / max(measured.requests, 1)
        line += f"  CPU {cpu_ms:.2f} ms/request"
        if measured.requests > POOL_SIZE:
            line += " (pool wrapped: trigger ids repeated)"
        print(line, flush=True)
        return dataclasses.replace(measured, cpu_ms=cpu_ms)

    def pool(self, kind: str) -> Path:
        """A freshly signed pool of `kind` requests."""
        return signed_pool(kind, self.slack, self.button_value, self.workdir / f"pool-{kind}.txt")

    def wait_answers(self, count: int) -> float:
        """Seconds after the round until the stand-in got `count` response_url answers."""
        return wait_until(
            lambda: len(self.standin.responses()) >= count,
            timeout_s=AFTER_ACK_TIMEOUT_S,
            what=f"{count} after-ack answers",
            interval_s=0.05,
        )

    def drain(self) -> None:
        """Let after-ack work of the warm-up finish before a measured round."""
        before = -1
        while before != len(self.standin.responses()):
            before = len(self.standin.responses())
            time.sleep(0.5)


def bot_environment(bench: Bench, redis_url: str, apps: Path, kubeconfig: Path) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": bench.standin.bot_token,
        "SLACK_SIGNING_SECRET": bench.signing_secret,
        "SLACK_API_URL": bench.standin.api_url,
        "RELEASE_BOT_CONFIG": str(apps),
        "REDIS_URL": redis_url,
        "KUBECONFIG": str(kubeconfig),
        "RELEASE_BOT_TICK_SECONDS": "3600",
    }


def target_argv(target: str) -> list[str]:
    if target == "release-bot":
        return [sys.executable, "-m", "bot.entrypoints.cli", "serve"]
    return [sys.executable, str(Path(__file__).resolve()), "--serve", target]


def run(profile_dir: Path | None, *, targets: tuple[str, ...], kinds: tuple[str, ...]) -> None:
    signing_secret = secrets.token_hex(16)
    standin = SlackStandIn(bot_token=f"xoxb-1-{secrets.token_hex(12)}").start()
    results: dict[tuple[str, str], list[Round]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-acks-") as tmp:
        workdir = Path(tmp)
        slack = SlackRequests(
            signing_secret=signing_secret, response_url_base=standin.response_url_base
        )
        bench = Bench(workdir, standin, slack, signing_secret)
        redis_server = RedisServer(data_dir=workdir / "redis").start()
        try:
            apps, kubeconfig = write_world(workdir)
            bench.button_value = button_value(seed(redis_server.url, apps))
            bot_env = bot_environment(bench, redis_server.url, apps, kubeconfig)
            bare_env = {
                "BENCH_SIGNING_SECRET": signing_secret,
                "BENCH_API_URL": standin.api_url,
                "BENCH_TOKEN": standin.bot_token,
            }
            print(_machine(), flush=True)
            with ExitStack() as servers:
                servers_by_target = {
                    target: servers.enter_context(
                        running(
                            target,
                            target_argv(target),
                            bot_env if target == "release-bot" else bare_env,
                            workdir / f"{target}.log",
                        )
                    )
                    for target in targets
                }
                if "release-bot" in servers_by_target:
                    _wait_first_pass(workdir / "release-bot.log")
                for kind in kinds:
                    for target in targets:
                        bench.warm_up(servers_by_target[target], kind)
                    for _ in range(ROUNDS):  # rounds interleaved: the machine's load drifts
                        for target in targets:
                            results.setdefault((target, kind), []).append(
                                bench.measure(target, servers_by_target[target], kind)
                            )
                if profile_dir is not None and "release-bot" in servers_by_target:
                    _profile(bench, servers_by_target["release-bot"], profile_dir)
        finally:
            redis_server.stop()
            standin.close()
    report(results, targets=targets, kinds=kinds)


def _wait_first_pass(log: Path) -> None:
    """The scheduler's first pass (at start) has given up on the absent apiserver: the release
    is deferred (or, before the due-time index, retried later). A pass that finds nothing due
    logs nothing: after FIRST_PASS_WAIT_S the rounds begin anyway."""
    try:
        wait_until(
            lambda: any(mark in log.read_text(errors="replace") for mark in FIRST_PASS_MARKS),
            timeout_s=FIRST_PASS_WAIT_S,
            what="the scheduler's first pass",
            interval_s=0.5,
        )
    except TimeoutError:
        print(f"  (no scheduler pass logged within {FIRST_PASS_WAIT_S:.0f} s; going on)")


FIRST_PASS_MARKS = ("reconcile_deferred", "tick_retry_later", "scheduler_pass_failed")
FIRST_PASS_WAIT_S = 30.0


def _profile(bench: Bench, server: Server, profile_dir: Path) -> None:
    """py-spy records release-bot (the thread holding the GIL: its CPU) during one round a kind."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        out = profile_dir / f"release-bot-{kind}.txt"
        argv = [
            "py-spy", "record", "--pid", str(server.pid), "--format", "raw", "--output", str(out),
            "--duration", str(SECONDS), "--rate", "250", "--gil",
        ]  # fmt: skip
        spy = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        measured = wrk(server.port, bench.pool(kind), SECONDS)
        spy.wait()
        print(f"  profiled {kind}: {measured.rate:.0f} req/s under py-spy -> {out}", flush=True)


def _machine() -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min); Python "
        f"{sys.version.split()[0]}; wrk -t{WRK_THREADS} -c{CONNECTIONS}, {ROUNDS} x {SECONDS} s"
    )


def report(
    results: dict[tuple[str, str], list[Round]], *, targets: tuple[str, ...], kinds: tuple[str, ...]
) -> None:
    print("\nmean of the rounds; ratio = figure / bolt-aiohttp's figure for the same kind")
    print(
        f"{'server':>13} {'kind':>6} | {'req/s':>7} {'ratio':>6} | {'p99 ms':>7} {'ratio':>6} | "
        f"{'CPU ms/req':>10} {'ratio':>6}"
    )
    for kind in kinds:
        base = _means(results.get((BASELINE, kind), []))
        for target in targets:
            means = _means(results[target, kind])
            rate, p99, cpu = (f"{mean:.0f}" if mean > 99 else f"{mean:.2f}" for mean in means)
            ratio = [mean / base_mean for mean, base_mean in zip(means, base, strict=True)]
            print(
                f"{target:>13} {kind:>6} | {rate:>7} {ratio[0]:5.2f}x | {p99:>7} {ratio[1]:5.2f}x"
                f" | {cpu:>10} {ratio[2]:5.2f}x"
            )
    print("goal: release-bot >= 0.80x the req/s and <= 2.00x the p99 of bolt-aiohttp")


def _means(rounds: list[Round]) -> tuple[float, float, float]:
    if not rounds:  # the baseline was not run (--targets): ratios show as nan
        return float("nan"), float("nan"), float("nan")
    return (
        statistics.mean(r.rate for r in rounds),
        statistics.mean(r.p99_ms for r in rounds),
        statistics.mean(r.cpu_ms for r in rounds),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--serve", choices=sorted(BARE_SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy profiles into DIR")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    args = parser.parse_args()
    if args.serve:
        BARE_SERVERS[args.serve](
            int(os.environ["PORT"]),
            os.environ["BENCH_SIGNING_SECRET"],
            os.environ["BENCH_API_URL"],
            os.environ["BENCH_TOKEN"],
        )
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    run(args.profile, targets=tuple(args.targets), kinds=tuple(args.kinds))


if __name__ == "__main__":
    main()
