"""Rollback latency: a bad canary's first bad sample in Prometheus -> 100 % stable in the apiserver,
and -> its alert in the Slack stand-in, with a 5 s check interval, on 1 and on 100 releases at once.

Run by hand from the repository root (`python bench/rollback_latency.py`, see bench/README.md); not
a pytest test. Everything is real but Slack: the control plane of tests/infra/kube.py (apiserver,
controllers, kwok), Redis, Prometheus scraping the tests' exporter every second, the Slack
stand-in; the bot is the real ReleaseService with its real adapters and scheduler loop, in this
process so that its own part can be timed: from the failed check's verdict (CanaryChecks.run
returning ChecksFailed) to the rollback's first reconcile call (the router's patch issued), in
steps: the decision (verdict -> the save sent), the save (one Lua call), and save -> patch. The
exporter runs in a process of its own (tests/infra/exporter_process.py): rendering 100 apps'
series every second in this one would take the GIL from the bot's threads, and time out
Prometheus's scrapes.

"now" is the service as it is; "baseline" is the same service with one worker and no batched
prefetch (each release's check queries Prometheus itself, one release after the other), as
passes ran before the worker pool: both are run in the same process, on the same components.
Each canary turns bad at once (50 % of its requests fail), so its error rate over the 10 s window
crosses 5 % within a second of its first bad sample; what follows is the bot's.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog
import yaml
from kubernetes import client as k8s
from redis import Redis

from bot.application.apps_file import load_config
from bot.application.checks import CanaryChecks, ReadingOf
from bot.application.scheduler import Scheduler
from bot.application.service import WORKERS_DEFAULT, ReleaseService
from bot.core.apps import AppConfig
from bot.core.machine import ChecksFailed, Event
from bot.core.ports import HistoryEntry, Observation, StoredRelease
from bot.core.release import Phase, Release
from bot.kube.client import DEPLOYMENTS, VIRTUAL_SERVICES
from bot.kube.reconciler import KubernetesCluster
from bot.metrics.prometheus import PrometheusMetrics
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore, connect
from bot.slack.announcer import SlackAnnouncer
from bot.slack.client import build_web_client
from tests.infra.exporter_process import ExporterProcess
from tests.infra.kube import KubeCluster, create_namespace
from tests.infra.processes import wait_until
from tests.infra.prometheus_server import PrometheusServer
from tests.infra.redis_server import RedisServer
from tests.infra.slack_standin import SlackStandIn
from tests.kube_objects import Cluster, stable_deployment

INTERVAL_S = 5
WINDOW_S = 10
CANARY_ERRORS = 0.5
TICK_S = 0.25
CHANNEL = "C0BENCH"
SIZES = (1, 100)
WATCHED_S = 60.0


@dataclass
class Marks:
    """Monotonic times per app: the failed check's verdict, the rollback's save sent and
    answered, and its patch issued."""

    verdict: dict[str, float] = field(default_factory=dict)
    save_sent: dict[str, float] = field(default_factory=dict)
    saved: dict[str, float] = field(default_factory=dict)
    patch_issued: dict[str, float] = field(default_factory=dict)

    def steps_ms(self, app: str) -> tuple[float, float, float, float] | None:
        """(verdict -> patch, verdict -> save sent, the save, saved -> patch) in ms."""
        marks = (self.verdict, self.save_sent, self.saved, self.patch_issued)
        if any(app not in mark for mark in marks):
            return None
        verdict, sent, saved, patched = (mark[app] for mark in marks)
        spans = (patched - verdict, sent - verdict, saved - sent, patched - saved)
        whole, deciding, saving, to_patch = (1000 * span for span in spans)
        return whole, deciding, saving, to_patch


class TimedStore(ReleaseStore):
    def __init__(self, client: Redis, *, prefix: str, marks: Marks) -> None:
        super().__init__(client, prefix=prefix)
        self.marks = marks

    def save(
        self,
        stored: StoredRelease,
        release: Release,
        *,
        entry: HistoryEntry | None,
        finished: bool,
        due_at: datetime | None = None,
        only_sooner: bool = False,
    ) -> StoredRelease:
        rolling_back = entry is not None and release.phase is Phase.ROLLING_BACK
        if rolling_back:
            self.marks.save_sent.setdefault(release.app, time.monotonic())
        saved = super().save(
            stored, release, entry=entry, finished=finished, due_at=due_at, only_sooner=only_sooner
        )
        if rolling_back:
            self.marks.saved.setdefault(release.app, time.monotonic())
        return saved


class TimedCluster(KubernetesCluster):
    def __init__(self, api: k8s.ApiClient, marks: Marks) -> None:
        super().__init__(api)
        self._marks = marks

    def reconcile(self, release: Release, app: AppConfig) -> Observation:
        if release.phase is Phase.ROLLING_BACK:
            self._marks.patch_issued.setdefault(release.app, time.monotonic())
        return super().reconcile(release, app)


class TimedChecks(CanaryChecks):
    def __init__(self, *, metrics: PrometheusMetrics, marks: Marks) -> None:
        super().__init__(metrics=metrics)
        self._marks = marks

    def run(
        self,
        release: Release,
        app: AppConfig,
        *,
        now: datetime,
        reading_of: ReadingOf | None = None,
    ) -> Event:
        event = super().run(release, app, now=now, reading_of=reading_of)
        if isinstance(event, ChecksFailed):
            self._marks.verdict.setdefault(release.app, time.monotonic())
        return event


class SerialService(ReleaseService):
    """The baseline: one worker, and each check reads its own release's metrics."""

    def _prefetch(self, due: list[str]) -> dict[str, ReadingOf]:
        return {}


@dataclass
class World:
    kube: KubeCluster
    api: k8s.ApiClient
    redis: RedisServer
    exporter: ExporterProcess
    prometheus: PrometheusServer
    slack: SlackStandIn
    work_dir: Path


@contextmanager
def world() -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix="bench-rollback-") as work:
        root = Path(work)
        kube = KubeCluster(work_dir=root / "kube").start()
        redis_server = RedisServer(data_dir=root / "redis").start()
        exporter = ExporterProcess().start()
        prometheus = PrometheusServer(
            data_dir=root / "prometheus", scrape_target=exporter.target
        ).start()
        slack = SlackStandIn(bot_token="xoxb-bench").start()
        api = kube.api_client()
        try:
            yield World(kube, api, redis_server, exporter, prometheus, slack, root)
        finally:
            api.close()
            slack.close()
            prometheus.stop()
            exporter.stop()
            redis_server.stop()
            kube.stop()


def app_names(size: int) -> list[str]:
    return [f"app-{index:03d}" for index in range(size)]


def install(world: World, namespace: str, apps: list[str]) -> Path:
    """Each app's stable Deployment and VirtualService, rolled out; the apps file."""
    cluster = Cluster(world.api, namespace)
    for app in apps:
        cluster.create(
            DEPLOYMENTS,
            stable_deployment(name=app, image=f"registry.example/{app}:v1", readiness_probe=True),
        )
        cluster.create(
            VIRTUAL_SERVICES,
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": app},
                "spec": {"hosts": [app], "http": [{"route": [{"destination": {"host": app}}]}]},
            },
        )
    cluster.rolled_out(*apps)
    metrics = {
        "provider": "generic", "interval": f"{INTERVAL_S}s", "window": f"{WINDOW_S}s",
        "min_requests": 10, "failure_limit": 0, "snapshot_interval": "1h",
    }  # fmt: skip
    document = {
        "plans": {"bench": [{"weight": 10, "duration": "1h"}]},
        "apps": {
            app: {
                "namespace": namespace, "workload": app, "slack_channel": CHANNEL, "plan": "bench",
                "router": {"provider": "istio", "virtual_service": app,
                           "destination_rule": app, "host": app},
                "metrics": metrics,
            }
            for app in apps
        },
    }  # fmt: skip
    path = world.work_dir / f"apps-{namespace}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def serve(world: World, namespace: str, apps: list[str], *, canary_errors: float) -> None:
    """Every app's traffic, changed at the same instant."""
    stable = {"namespace": namespace, "version": "v1", "track": "stable", "qps": 40}
    canary = {"namespace": namespace, "version": "v2", "track": "canary", "qps": 20,
              "error_ratio": canary_errors, "p99_s": 0.12}  # fmt: skip
    world.exporter.set_traffics(
        [{**track, "app": app} for app in apps for track in (stable, canary)]
    )


def weights(world: World, namespace: str) -> dict[str, tuple[int, int]]:
    """(stable, canary) public weights of every VirtualService, read back from the apiserver."""
    found = k8s.CustomObjectsApi(world.api).list_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "virtualservices"
    )
    shares = {}
    for item in found["items"]:
        split = {"stable": 0, "canary": 0}
        for http in item["spec"]["http"]:
            destinations = http.get("route", [])
            if http.get("match"):
                continue
            for entry in destinations:
                subset = entry["destination"].get("subset", "stable")
                split[subset] += entry.get("weight", 100 if len(destinations) == 1 else 0)
        shares[item["metadata"]["name"]] = (split["stable"], split["canary"])
    return shares


@dataclass(frozen=True)
class Figures:
    to_stable_s: list[float]
    to_alert_s: list[float]
    bot_steps_ms: list[tuple[float, float, float, float]]
    """Per release: verdict -> patch, and its steps (Marks.steps_ms)."""
    load: tuple[float, float]
    """The machine's 1-minute load average as the canaries turned bad, and at the watch's end."""
    missed: int
    """Releases not back at stable, or not alerted, within WATCHED_S."""


def scenario(world: World, size: int, *, baseline: bool, workers: int) -> Figures:
    namespace = "b-" + uuid.uuid4().hex[:8]
    create_namespace(world.api, namespace)
    apps = app_names(size)
    config = load_config(install(world, namespace, apps))
    world.exporter.reset()
    world.slack.reset()
    serve(world, namespace, apps, canary_errors=0.0)
    scraped(world, namespace, size)

    marks = Marks()
    store = TimedStore(connect(world.redis.url), prefix=f"rb-{namespace}:", marks=marks)
    service_class = SerialService if baseline else ReleaseService
    service = service_class(
        config=config,
        store=store,
        leases=Leases(store=store),
        cluster=TimedCluster(world.api, marks),
        announcer=SlackAnnouncer(
            client=build_web_client(token=world.slack.bot_token, base_url=world.slack.api_url),
            config=config,
        ),
        checks=TimedChecks(
            metrics=PrometheusMetrics(default_url=world.prometheus.url), marks=marks
        ),
        workers=1 if baseline else workers,
    )
    scheduler = Scheduler(tick=service.tick, interval_s=TICK_S)
    scheduler.start()
    try:
        for app in apps:
            outcome = service.start(
                app_name=app, version="v2", plan_name=None, user="U0BENCH", channel=CHANNEL
            )
            assert outcome.applied, outcome.message
        wait_until(
            lambda: all_checked_once(store, apps),
            timeout_s=120 + size,
            what="every release running with a passing check",
            interval_s=0.5,
        )
        serve(world, namespace, apps, canary_errors=CANARY_ERRORS)
        load_before = os.getloadavg()[0]
        first_bad = first_bad_sample(world, namespace)
        stable_at, alert_at = watch(world, namespace, apps, deadline=first_bad + WATCHED_S)
        load_after = os.getloadavg()[0]
        settled(store, apps)
    finally:
        scheduler.stop()
    never = first_bad + WATCHED_S  # not back (or not alerted) while watched: counted as that
    return Figures(
        to_stable_s=[stable_at.get(app, never) - first_bad for app in apps],
        to_alert_s=[alert_at.get(app, never) - first_bad for app in apps],
        bot_steps_ms=[steps for app in apps if (steps := marks.steps_ms(app)) is not None],
        load=(load_before, load_after),
        missed=sum(app not in stable_at or app not in alert_at for app in apps),
    )


def scraped(world: World, namespace: str, size: int) -> None:
    """Until Prometheus has every app's stable series, then one window more. (Not
    wait_for_samples: with hundreds of series the exporter can miss a scrape on a busy machine.)"""
    query = f'count(count by (app) (http_requests_total{{namespace="{namespace}"}}))'
    client = world.prometheus.client()

    def every_app() -> bool:
        answer = client.custom_query(query)
        return bool(answer) and int(float(answer[0]["value"][1])) >= size

    wait_until(every_app, timeout_s=120, what=f"{size} apps' series in Prometheus")
    time.sleep(WINDOW_S)


def all_checked_once(store: ReleaseStore, apps: list[str]) -> bool:
    for app in apps:
        stored = store.active(app)
        if stored is None or stored.release.phase is not Phase.RUNNING:
            return False
        if stored.release.checks_passed < 1:
            return False
    return True


def settled(store: ReleaseStore, apps: list[str]) -> None:
    """Until every release has finished (rolled back, its last messages posted), so that none of
    this scenario's work is left to compete with the next one's."""
    try:
        wait_until(
            lambda: all(store.active(app) is None for app in apps),
            timeout_s=WATCHED_S, what="every release finished", interval_s=0.5,
        )  # fmt: skip
    except TimeoutError as error:
        print(f"  ({error})", flush=True)


def first_bad_sample(world: World, namespace: str) -> float:
    errors = f'sum(http_requests_total{{namespace="{namespace}",track="canary",code=~"5.."}})'
    client = world.prometheus.client()
    started = time.monotonic()
    return started + wait_until(
        lambda: bool(client.custom_query(errors)), timeout_s=15, what="canary errors",
        interval_s=0.02,
    )  # fmt: skip


def watch(
    world: World, namespace: str, apps: list[str], *, deadline: float
) -> tuple[dict[str, float], dict[str, float]]:
    """When each app's route is back at 100 % stable, and when its alert is in the channel."""
    stable_at: dict[str, float] = {}
    alert_at: dict[str, float] = {}
    while (len(stable_at) < len(apps) or len(alert_at) < len(apps)) and time.monotonic() < deadline:
        now = time.monotonic()
        for app, split in weights(world, namespace).items():
            if split == (100, 0):
                stable_at.setdefault(app, now)
        for message in world.slack.messages(CHANNEL):
            text = str(message.get("text", ""))
            if "error rate is" in text:
                for app in apps:
                    if f"{app} v2" in text:
                        alert_at.setdefault(app, now)
        time.sleep(0.05)
    return stable_at, alert_at


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{statistics.median(values):6.2f} / {max(values):6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument(
        "--paths", nargs="+", choices=("baseline", "now"), default=["baseline", "now"]
    )
    parser.add_argument("--workers", type=int, default=WORKERS_DEFAULT, help="the now path's")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with world() as bench_world:
        print(
            f"Rollback latency, check interval {INTERVAL_S} s, window {WINDOW_S} s, scheduler "
            f"pass every {TICK_S} s; seconds from the first bad sample in Prometheus, "
            "median / max over the releases; bot's part: verdict -> patch issued, ms."
        )
        header = f"{'releases':>8} {'path':>8} | {'-> 100 % stable':>15} | {'-> alert':>15}"
        print(f"{header} | {'bot ms':>15} | stable vs 2 intervals | load")
        steps: list[str] = []
        for size in args.sizes:
            for baseline in [path == "baseline" for path in args.paths]:
                figures = scenario(bench_world, size, baseline=baseline, workers=args.workers)
                path = f"{size:>8} {'baseline' if baseline else 'now':>8}"
                print(f"{path} | {row(figures)}", flush=True)
                steps.append(f"{path} | {step_row(figures.bot_steps_ms)}")
        print(
            "\nThe bot's part in steps, ms, median / max: decide (verdict -> save sent), "
            "save (one Lua call), saved -> patch issued; and the steps of the slowest release."
        )
        columns = " | ".join(f"{name:>15}" for name in ("decide", "save", "-> patch"))
        print(f"{'releases':>8} {'path':>8} | {columns} | slowest")
        print("\n".join(steps))


def row(figures: Figures) -> str:
    bound = 2 * INTERVAL_S
    missed = f"; {figures.missed} not done in {WATCHED_S:.0f} s" * bool(figures.missed)
    bot_ms = [whole for whole, *_ in figures.bot_steps_ms]
    return (
        f"{summary(figures.to_stable_s):>15} | {summary(figures.to_alert_s):>15} | "
        f"{summary(bot_ms):>15} | max {max(figures.to_stable_s) / bound:.2f} of {bound} s"
        f"{missed:>12} | {figures.load[0]:.1f} -> {figures.load[1]:.1f}"
    )


def step_row(steps_ms: list[tuple[float, float, float, float]]) -> str:
    if not steps_ms:
        return "none"
    columns = [summary([step[index] for step in steps_ms]) for index in (1, 2, 3)]
    slowest = max(steps_ms)
    return (
        " | ".join(f"{column:>15}" for column in columns)
        + " | "
        + " + ".join(f"{span:.1f}" for span in slowest[1:])
    )


if __name__ == "__main__":
    main()
