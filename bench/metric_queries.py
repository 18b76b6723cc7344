"""Prometheus queries per check interval: 1, 100 and 1,000 releases checked every 5 s.

Run by hand from the repository root (`python bench/metric_queries.py`, see bench/README.md); not
a pytest test. Real Redis and a real Prometheus scraping the tests' exporter (the first
SERVING apps serve canary and stable traffic: the Python exporter cannot render more series each
second on a small machine; the others' checks are inconclusive, and query just the same); the
cluster and Slack are the free stand-ins of scheduler_pass.py.
Each release runs a stage with metric checks every INTERVAL_S, the last checks spread evenly over
the previous interval, and the scheduler passes every TICK_S for one interval of real time. The
instant queries the checks send are counted on the adapter's HTTP client.

"now" batches the checks that come due in a pass (one query per metric per Prometheus, split per
release); "baseline" is the same service with each check reading its own release's metrics, as
before: both in the same run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog

from bench.scheduler_pass import (
    BenchAnnouncer,
    BenchCluster,
    app_name,
    bench_config,
    running_release,
)
from bot.application.checks import CanaryChecks, ReadingOf
from bot.application.service import ReleaseService
from bot.core.apps import (
    BotConfig,
    MetricsConfig,
)
from bot.core.ports import HistoryEntry
from bot.metrics import prometheus as prometheus_adapter
from bot.metrics.prometheus import PrometheusMetrics
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore, connect
from tests.infra.exporter import MetricsExporter
from tests.infra.prometheus_server import PrometheusServer
from tests.infra.redis_server import RedisServer

INTERVAL_S = 5
TICK_S = 0.5
WINDOW_S = 30
NAMESPACE = "bench"
SIZES = (1, 100, 1_000)
SERVING = 10


class Queries:
    """Instant queries sent by the adapter, counted as they go out."""

    count = 0

    @classmethod
    def install(cls) -> None:
        original = prometheus_adapter._Client.get

        def counted(client: Any, path: str, **kwargs: Any) -> Any:
            cls.count += path == "/api/v1/query"
            return original(client, path, **kwargs)

        prometheus_adapter._Client.get = counted  # type: ignore[method-assign]


class PerReleaseService(ReleaseService):
    """The baseline: no prefetch, so each release's check sends its own queries."""

    def _prefetch(self, due: list[str]) -> dict[str, ReadingOf]:
        return {}


def config(size: int, prometheus_url: str) -> BotConfig:
    """scheduler_pass.py's apps, each with metric checks every INTERVAL_S on `prometheus_url`."""
    metrics = MetricsConfig.model_validate(
        {"interval": f"{INTERVAL_S}s", "window": f"{WINDOW_S}s", "snapshot_interval": "1d",
         "prometheus_url": prometheus_url, "min_requests": 1}
    )  # fmt: skip
    base = bench_config(size)
    apps = {name: app.model_copy(update={"metrics": metrics}) for name, app in base.apps.items()}
    return BotConfig(source=base.source, apps=apps, plans=base.plans)


def fill(store: ReleaseStore, size: int, *, now: datetime) -> None:
    """N releases in their first stage, checked last at times spread over the last interval."""
    for index in range(size):
        last_check = now - timedelta(seconds=INTERVAL_S * (index + 0.5) / size)
        release = running_release(index).evolve(
            analysis_enabled=True, last_check_at=last_check, last_snapshot_at=now
        )
        entry = HistoryEntry(
            at=now.isoformat(), release_id=release.id, actor="U0BENCH", action="start",
            outcome="applied",
        )  # fmt: skip
        store.create(release, entry=entry, due_at=last_check + timedelta(seconds=INTERVAL_S))


def one_interval(redis_url: str, bot_config: BotConfig, *, baseline: bool) -> tuple[int, float]:
    """Queries sent, and seconds the passes took, over one check interval of real time."""
    store = ReleaseStore(connect(redis_url))
    store._redis.flushall()
    fill(store, len(bot_config.apps), now=datetime.now(UTC))
    service_class = PerReleaseService if baseline else ReleaseService
    service = service_class(
        config=bot_config,
        store=store,
        leases=Leases(store=store),
        cluster=BenchCluster(),
        announcer=BenchAnnouncer(),
        checks=CanaryChecks(metrics=PrometheusMetrics(default_url=None)),
    )
    before, busy_s = Queries.count, 0.0
    ends = time.monotonic() + INTERVAL_S
    while time.monotonic() < ends:
        started = time.monotonic()
        service.tick()
        busy_s += time.monotonic() - started
        time.sleep(max(0.0, TICK_S - (time.monotonic() - started)))
    return Queries.count - before, busy_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    Queries.install()
    with tempfile.TemporaryDirectory(prefix="bench-queries-") as work:
        root = Path(work)
        redis_server = RedisServer(data_dir=root / "redis").start()
        exporter = MetricsExporter().start()
        prometheus = PrometheusServer(data_dir=root / "prom", scrape_target=exporter.target)
        prometheus.start()
        try:
            exporter.set_traffics(
                {"namespace": NAMESPACE, "app": app_name(index), "version": track,
                 "track": track, "qps": 10}
                for index in range(min(max(args.sizes), SERVING))
                for track in ("stable", "canary")
            )  # fmt: skip
            selector = f'http_requests_total{{namespace="{NAMESPACE}",track="canary"}}'
            prometheus.wait_for_samples(selector, window_s=5, timeout_s=120)
            print(
                f"Instant Prometheus queries in one {INTERVAL_S} s check interval (a pass every "
                f"{TICK_S} s), and the seconds the passes took in it."
            )
            print(f"{'releases':>8} | {'baseline':>8} {'s':>6} | {'now':>5} {'s':>6} | ratio")
            for size in args.sizes:
                bot_config = config(size, prometheus.url)
                old, old_s = one_interval(redis_server.url, bot_config, baseline=True)
                new, new_s = one_interval(redis_server.url, bot_config, baseline=False)
                print(
                    f"{size:>8,} | {old:>8,} {old_s:>6.2f} | {new:>5,} {new_s:>6.2f} | "
                    f"{old / new:.1f}x fewer",
                    flush=True,
                )
        finally:
            prometheus.stop()
            exporter.stop()
            redis_server.stop()


if __name__ == "__main__":
    main()
