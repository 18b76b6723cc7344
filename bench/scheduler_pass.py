"""How much one scheduler pass costs: ReleaseService.tick() over 1,000, 10,000 and 100,000 releases.

Run by hand from the repository root (`python bench/scheduler_pass.py`, see bench/README.md); not
a pytest test. It starts Debian's redis-server on a free loopback port (no persistence), fills it
with N releases running their first stage (saved with their due times, as the bot saves them),
and times one pass: wall time, Redis round trips counted exactly on the client's connections (a
pipeline is one round trip, a Lua script call is one), and the process's resident memory. Two
kinds of pass:
  - idle: nothing is due; the baseline still lists, leases and reads every release, the due
    index answers with none;
  - due: every stage timer is due, so every release moves to its next stage and posts to Slack.
Each is measured for the code in bot/ ("now") and for the pass as it was before the due index
and the worker pool ("baseline", copied below), side by side in one run, because machines are
noisy.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

# Measure this checkout's bot (pip's editable install may point at another one), and reach tests/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
import structlog

from bot.application.service import RESYNC_S_DEFAULT, ReleaseService
from bot.core.apps import (
    AppConfig,
    AuthorizationConfig,
    BotConfig,
    ChannelRef,
    MetricsConfig,
    ReplicasRouter,
)
from bot.core.errors import TemporaryError
from bot.core.machine import Accepted, CanaryReady, Notify, start_release, transition
from bot.core.plan import DEFAULT_PLAN
from bot.core.ports import HistoryEntry, Observation, PreflightResult, SlackRefs
from bot.core.release import Release, ReleaseKind
from bot.core.schedule import next_due
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore, connect
from tests.infra.processes import ManagedProcess, free_port, wait_until

SIZES = (1_000, 10_000, 100_000)
FILLED_AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CHANNEL = "C0BENCH"
REQUESTER = "U0BENCH"
OTHER_REPLICA = "another-replica"

log = structlog.get_logger(__name__)


# ---------------------------------------------------------------- Redis, counted


class CountingConnection(redis.Connection):
    """A connection that counts what it sends: every command, and every pipeline as a whole, is
    written in one send_packed_command call and then waits for its answer, so one round trip."""

    round_trips = 0
    _lock = threading.Lock()  # lease renewers send from their own threads

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        with CountingConnection._lock:
            CountingConnection.round_trips += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def counted_client(url: str) -> redis.Redis:
    """The bot's own client (bot.redis.store.connect), its connections made by
    CountingConnection."""
    client = connect(url)
    client.connection_pool.connection_class = CountingConnection
    return client


def start_redis(data_dir: Path) -> tuple[ManagedProcess, str]:
    """Debian's redis-server on a free loopback port, nothing written to disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install Debian's redis-server (scripts/setup.sh)")
    port = free_port()
    argv = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]  # fmt: skip
    server = ManagedProcess("redis-server", argv, data_dir / "redis.log").start()
    url = f"redis://127.0.0.1:{port}/0"
    probe = redis.Redis.from_url(url)
    wait_until(lambda: bool(probe.ping()), timeout_s=15, what="redis-server")
    probe.close()
    return server, url


# ---------------------------------------------------------------- bench stand-ins for the ports


class BenchCluster:
    """ClusterPort stand-in: every reconcile succeeds at once and observes nothing new."""

    def stable_version(self, app: AppConfig, kind: ReleaseKind) -> str:
        return "v1"

    def preflight(self, app: AppConfig, version: str, kind: ReleaseKind) -> PreflightResult:
        return PreflightResult(blocked=False, summary="bench: no preflight")

    def reconcile(self, release: Release, app: AppConfig) -> Observation:
        return Observation()


class BenchAnnouncer:
    """AnnouncerPort stand-in: Slack accepts every card and message at once; it counts the thread
    messages, so the bench can tell that none was posted twice."""

    def __init__(self) -> None:
        self.notices: Counter[tuple[str, str]] = Counter()  # (release id, text) -> times posted

    def show_card(self, release: Release) -> SlackRefs:
        return SlackRefs(card_ts=release.card_ts or "1.0", thread_ts=release.thread_ts or "1.0")

    def notify(self, release: Release, notice: Notify) -> None:
        self.notices[(release.id, notice.text)] += 1


# ---------------------------------------------------------------- the pass before the due index
# A copy of the pass as it was at commit 4d6df89 (before the due-time index and the worker pool),
# so both run side by side in one process on the same Redis.


class BaselineReleaseStore(ReleaseStore):
    """release_ids_to_tick as it was: every active (or undelivered) release, every pass."""

    def release_ids_to_tick(self) -> list[str]:
        return sorted(self._call(self._redis.sunion, self._key("active"), self._key("undelivered")))


class BaselineReleaseService(ReleaseService):
    """tick as it was: every listed release, one after the other, leased and read."""

    def __init__(self, *, store: BaselineReleaseStore, **kwargs: Any) -> None:
        super().__init__(store=store, **kwargs)
        self._baseline_store = store

    def tick(self, wait_s: float | None = None) -> None:
        for release_id in self._baseline_store.release_ids_to_tick():
            with self._leases.hold_release(release_id) as stored:
                if stored is None:
                    continue
                try:
                    applied, _ = self._tick_release(stored)
                    if not applied:
                        self._deliver(stored)
                except TemporaryError as error:
                    log.warning("tick_retry_later", release=stored.release.id, error=str(error))


# ---------------------------------------------------------------- releases to tick


def app_name(index: int) -> str:
    return f"app-{index:05d}"


def bench_config(size: int) -> BotConfig:
    apps = {
        app_name(index): AppConfig(
            name=app_name(index),
            namespace="bench",
            workload=app_name(index),
            container=None,
            router=ReplicasRouter(provider="replicas"),
            slack_channel=ChannelRef(CHANNEL),
            plan=DEFAULT_PLAN,
            metrics=MetricsConfig(),
            alert_mention="",
            authorization=AuthorizationConfig(),
        )
        for index in range(size)
    }
    return BotConfig(source="bench", apps=apps, plans={DEFAULT_PLAN.name: DEFAULT_PLAN})


def running_release(index: int) -> Release:
    """A release in its first stage (1 h), its card and thread posted, nothing left to send."""
    started = start_release(
        release_id=f"bench{index:05d}",
        app=app_name(index),
        version="v2",
        previous_version="v1",
        plan=DEFAULT_PLAN,
        requested_by=REQUESTER,
        channel=CHANNEL,
        four_eyes=False,
        now=FILLED_AT,
    )
    running = transition(started.release, CanaryReady(), now=FILLED_AT)
    assert isinstance(running, Accepted), running
    return running.release.evolve(card_ts=f"{index}.1", thread_ts=f"{index}.1")


@cache
def running_releases(size: int) -> tuple[Release, ...]:
    return tuple(running_release(index) for index in range(size))


def fill(client: redis.Redis, size: int) -> None:
    """N running releases, saved as the bot saves them: with their due time (the resync, the
    first stage's timer being later)."""
    client.flushall()
    store = ReleaseStore(client)
    for release in running_releases(size):
        entry = HistoryEntry(
            at=FILLED_AT.isoformat(), release_id=release.id, actor=REQUESTER, action="start",
            outcome="applied",
        )  # fmt: skip
        due_at = next_due(release, now=FILLED_AT, check_interval_s=60, resync_s=RESYNC_S_DEFAULT)
        store.create(release, entry=entry, due_at=due_at)


def lease_elsewhere(client: redis.Redis, release_ids: list[str]) -> None:
    """Another replica is working on these releases right now."""
    for release_id in release_ids:
        client.set(f"rb:lease:{release_id}", OTHER_REPLICA, px=60_000)


# ---------------------------------------------------------------- one measured pass


@dataclass(frozen=True, slots=True)
class Pass:
    seconds: float
    round_trips: int
    rss_mib: float


def resident_mib() -> float:
    """This process's resident memory now (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_pass(
    client: redis.Redis, *, size: int, due: bool, baseline: bool, held_elsewhere: int = 0
) -> Pass:
    """Fill Redis, time one pass, and check it did its job; the first `held_elsewhere`
    releases are leased by another replica, so the pass must leave them alone."""
    fill(client, size)
    skipped = [release.id for release in running_releases(size)[:held_elsewhere]]
    lease_elsewhere(client, skipped)
    now = FILLED_AT + timedelta(seconds=DEFAULT_PLAN.stages[0].duration_s if due else 0)
    announcer = BenchAnnouncer()
    service = make_service(
        client, size=size, clock=lambda: now, announcer=announcer, baseline=baseline
    )
    service.index_unindexed()  # once per resync period; not part of the measured pass
    client.ping()  # the pool's connection is open before counting starts
    before = CountingConnection.round_trips
    started = time.perf_counter()
    service.tick()
    seconds = time.perf_counter() - started
    figures = Pass(seconds, CountingConnection.round_trips - before, resident_mib())
    check_pass(client, announcer, size=size, due=due, skipped=set(skipped))
    return figures


def make_service(
    client: redis.Redis,
    *,
    size: int,
    clock: Callable[[], datetime],
    announcer: BenchAnnouncer,
    baseline: bool,
) -> ReleaseService:
    ports: dict[str, Any] = {
        "config": bench_config(size),
        "cluster": BenchCluster(),
        "announcer": announcer,
        "clock": clock,
    }
    if baseline:
        store = BaselineReleaseStore(client)
        return BaselineReleaseService(store=store, leases=Leases(store=store), **ports)
    store = ReleaseStore(client)
    return ReleaseService(store=store, leases=Leases(store=store), **ports)


def check_pass(
    client: redis.Redis, announcer: BenchAnnouncer, *, size: int, due: bool, skipped: set[str]
) -> None:
    """Due releases moved on exactly once (stage and audit trail), the others did not; every
    message was posted once; nothing is left to post; other replicas' leases are untouched."""
    store = ReleaseStore(client)
    releases = store.active_releases()
    problems = [] if len(releases) == size else [f"{len(releases)} releases, not {size}"]
    told = {release_id for release_id, _ in announcer.notices}
    for stored in releases:
        release = stored.release
        moved = due and release.id not in skipped
        applied = [e for e in store.history(release.app) if e.action == "StageTimerElapsed"]
        if release.stage_index != int(moved) or len(applied) != int(moved):
            problems.append(f"{release.id}: stage {release.stage_index}, {len(applied)} applied")
        if moved != (release.id in told):
            problems.append(f"{release.id}: {'no' if moved else 'unexpected'} thread messages")
    twice = [key for key, times in announcer.notices.items() if times > 1]
    problems += [f"{release_id}: posted more than once: {text}" for release_id, text in twice]
    if client.scard("rb:undelivered"):
        problems.append("messages left unposted")
    if any(client.get(f"rb:lease:{release_id}") != OTHER_REPLICA for release_id in skipped):
        problems.append("another replica's lease was taken or dropped")
    if problems:
        raise SystemExit("the pass went wrong:\n" + "\n".join(problems[:20]))


# ---------------------------------------------------------------- the table


def check_both(client: redis.Redis) -> None:
    """Before measuring (and warming up Redis' script cache): both passes leave releases another
    replica holds alone, and move every other due release on once."""
    for baseline in (True, False):
        one_pass(client, size=40, due=True, baseline=baseline, held_elsewhere=10)
        one_pass(client, size=40, due=False, baseline=baseline, held_elsewhere=10)


def measured(
    client: redis.Redis, *, size: int, due: bool, repeat: int, with_baseline: bool
) -> tuple[Pass | None, Pass]:
    """Median seconds of `repeat` passes, baseline and now alternating, with their round trips
    (always the same from one pass to the next) and the resident memory after the last one."""
    baseline, now = [], []
    for _ in range(repeat):
        if with_baseline:
            baseline.append(one_pass(client, size=size, due=due, baseline=True))
        now.append(one_pass(client, size=size, due=due, baseline=False))
    return (median_pass(baseline) if baseline else None), median_pass(now)


def median_pass(passes: list[Pass]) -> Pass:
    seconds = statistics.median(p.seconds for p in passes)
    return Pass(seconds, passes[0].round_trips, passes[-1].rss_mib)


def report(
    client: redis.Redis, *, sizes: tuple[int, ...], repeat: int, baseline_up_to: int
) -> None:
    load = ", ".join(f"{figure:.1f}" for figure in os.getloadavg())
    print(f"One ReleaseService.tick() pass (median of {repeat}, 1 above {baseline_up_to:,});")
    print("rt = Redis round trips; MiB = the bench process's resident memory after the pass.")
    print(f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) before the first pass.")
    columns = f"{'baseline s':>10} {'rt':>8} {'MiB':>5} | {'now s':>8} {'rt':>7} {'MiB':>5}"
    print(f"{'releases':>9} {'timers':>6} | {columns} | {'faster':>7} | rt ratio")
    for size in sizes:
        for due in (False, True):
            with_baseline = size <= baseline_up_to
            times = repeat if with_baseline else 1
            before, after = measured(
                client, size=size, due=due, repeat=times, with_baseline=with_baseline
            )
            old = (
                f"{before.seconds:>10.3f} {before.round_trips:>8,} {before.rss_mib:>5.0f}"
                if before
                else f"{'(not run)':>10} {'':>8} {'':>5}"
            )
            faster = f"{before.seconds / after.seconds:>6.0f}x" if before else f"{'':>7}"
            ratio = f"{before.round_trips / after.round_trips:,.2f}x fewer" if before else ""
            print(
                f"{size:>9,} {'due' if due else 'idle':>6} | {old} | "
                f"{after.seconds:>8.4f} {after.round_trips:>7,} {after.rss_mib:>5.0f} | "
                f"{faster} | {ratio}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeat", type=int, default=3, help="passes per figure (median)")
    parser.add_argument(
        "--baseline-up-to", type=int, default=10_000, help="largest size the baseline runs at"
    )
    args = parser.parse_args()
    # Warnings only (a pass that retries says so): 10,000 transition logs would be timed too.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as data_dir:
        server, url = start_redis(Path(data_dir))
        client = counted_client(url)
        try:
            check_both(client)
            report(
                client,
                sizes=tuple(args.sizes),
                repeat=args.repeat,
                baseline_up_to=args.baseline_up_to,
            )
        finally:
            client.close()
            server.stop()


if __name__ == "__main__":
    main()
