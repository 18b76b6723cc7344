"""A scheduler pass keeps releases apart (bot.application.service.ReleaseService.tick): a release
whose cluster calls fail or hang never keeps its own metric check, nor another release's, from
rolling back a bad canary.

Run by pytest on the real Redis and the real Prometheus scraping the tests' exporter (the bad
canary's numbers are real); the cluster is the demo's simulated one, made to fail or to hang
for one app, as an apiserver behind a stuck admission webhook would. The end-to-end version,
with a real webhook on the real apiserver, is tests/test_isolation.py.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from bot.application.checks import CanaryChecks
from bot.application.service import ReleaseService
from bot.core.apps import BotConfig, MetricsConfig
from bot.core.errors import TemporaryError
from bot.core.plan import Plan, Stage
from bot.core.ports import Observation
from bot.core.release import Phase, Release
from bot.entrypoints.demo import DEMO_APP, SimulatedCluster, Transcript
from bot.metrics.prometheus import PrometheusMetrics
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore
from tests.infra.exporter import MetricsExporter
from tests.infra.prometheus_server import PrometheusServer
from tests.test_telemetry import RecordingAnnouncer

NAMESPACE = "pass-isolation"
SLOW, FAST = "slow-app", "fast-app"
WINDOW_S = 4
PLAN = Plan(
    name="isolated", stages=(Stage(weight=10, duration_s=3600), Stage(weight=100, duration_s=0))
)


class TroubledCluster(SimulatedCluster):
    """The simulated cluster, except that once `armed`, the `troubled` app's reconcile fails
    (`failing`) or hangs until `release_hang` is set; `calls` counts those reconciles."""

    def __init__(self, troubled: str, *, failing: bool) -> None:
        super().__init__(transcript=Transcript())
        self.troubled, self.failing = troubled, failing
        self.armed = threading.Event()
        self.release_hang = threading.Event()
        self.calls = 0

    def reconcile(self, release: Release, app: Any) -> Observation:
        if release.app == self.troubled and self.armed.is_set():
            self.calls += 1
            if self.failing:
                raise TemporaryError("kube-apiserver answered 500: admission webhook timed out")
            self.release_hang.wait(30)
        return super().reconcile(release, app)


def service_for(
    client: redis.Redis, cluster: TroubledCluster, prometheus: PrometheusServer
) -> tuple[ReleaseService, ReleaseStore]:
    metrics = MetricsConfig.model_validate(
        {"interval": "1s", "window": f"{WINDOW_S}s", "min_requests": 5, "failure_limit": 0,
         "snapshot_interval": "1h", "prometheus_url": prometheus.url}
    )  # fmt: skip
    apps = {
        name: DEMO_APP.model_copy(
            update={
                "name": name,
                "namespace": NAMESPACE,
                "workload": name,
                "plan": PLAN,
                "metrics": metrics,
            }
        )
        for name in (SLOW, FAST)
    }
    config = BotConfig(source="tests", apps=apps, plans={PLAN.name: PLAN})
    store = ReleaseStore(client)
    service = ReleaseService(
        config=config,
        store=store,
        leases=Leases(store=store),
        cluster=cluster,
        announcer=RecordingAnnouncer(),
        checks=CanaryChecks(metrics=PrometheusMetrics(default_url=None)),
    )
    return service, store


def serve(exporter: MetricsExporter, app: str, *, canary_errors: float) -> None:
    exporter.set_traffic(namespace=NAMESPACE, app=app, version="v1", track="stable", qps=40)
    exporter.set_traffic(
        namespace=NAMESPACE, app=app, version="v2", track="canary", qps=20,
        error_ratio=canary_errors,
    )  # fmt: skip


@pytest.fixture
def bad_fast_canary(
    clean_exporter: MetricsExporter, prometheus_server: PrometheusServer
) -> MetricsExporter:
    """The fast app's canary fails half its requests, the slow app's serves well; Prometheus
    holds a full window of both."""
    serve(clean_exporter, FAST, canary_errors=0.5)
    serve(clean_exporter, SLOW, canary_errors=0.0)
    selector = f'http_requests_total{{namespace="{NAMESPACE}",track="canary",code=~"5.."}}'
    prometheus_server.wait_for_samples(selector, window_s=WINDOW_S)
    return clean_exporter


def start_running(service: ReleaseService, store: ReleaseStore, *apps: str) -> dict[str, str]:
    """Each app's release started and ticked until running; app -> release id."""
    ids = {}
    for app in apps:
        outcome = service.start(app_name=app, version="v2", plan_name=None, user="U0ANA",
                                channel=DEMO_APP.slack_channel.value)  # fmt: skip
        assert outcome.applied and outcome.release is not None, outcome.message
        ids[app] = outcome.release.id
    for _ in range(5):
        if all(phase(store, ids[app]) is Phase.RUNNING for app in apps):
            return ids
        service.tick()
    raise AssertionError({app: phase(store, ids[app]) for app in apps})


def phase(store: ReleaseStore, release_id: str) -> Phase:
    stored = store.get(release_id)
    assert stored is not None
    return stored.release.phase


def test_a_failing_reconcile_never_skips_the_check_that_rolls_back(
    redis_client: redis.Redis, prometheus_server: PrometheusServer, bad_fast_canary: Any
) -> None:
    cluster = TroubledCluster(FAST, failing=True)
    service, store = service_for(redis_client, cluster, prometheus_server)
    ids = start_running(service, store, FAST)
    cluster.armed.set()

    service.tick()  # the release's reconcile fails; its due check reads the bad canary anyway

    assert cluster.calls >= 1
    assert phase(store, ids[FAST]) is Phase.ROLLING_BACK
    stored = store.get(ids[FAST])
    assert stored is not None and stored.release.outcome_reason is not None
    assert stored.release.outcome_reason.startswith("checks failed: error rate is")
    due, _ = store.release_ids_due(datetime.now(UTC))
    assert ids[FAST] in due  # still due: the rollback's own reconcile failed too, so it retries


def test_a_hanging_release_holds_only_its_own_worker(
    redis_client: redis.Redis, prometheus_server: PrometheusServer, bad_fast_canary: Any
) -> None:
    cluster = TroubledCluster(SLOW, failing=False)
    service, store = service_for(redis_client, cluster, prometheus_server)
    ids = start_running(service, store, SLOW, FAST)
    cluster.armed.set()
    try:
        began = time.monotonic()
        service.tick(0.5)  # the slow app's reconcile hangs; the pass does not wait for it
        waited_s = time.monotonic() - began
        assert waited_s < 5, f"the pass waited {waited_s:.1f} s for the hanging release"
        assert phase(store, ids[FAST]) is Phase.ROLLING_BACK
        assert cluster.calls == 1 and phase(store, ids[SLOW]) is Phase.RUNNING

        service.tick(0.5)  # still in flight: left alone, not worked twice
        assert cluster.calls == 1
    finally:
        cluster.release_hang.set()
    for _ in range(20):  # once it answers, the slow app's check passes and it goes on
        if cluster.calls > 1:
            break
        time.sleep(0.1)
        service.tick(0.5)
    assert cluster.calls > 1 and phase(store, ids[SLOW]) is Phase.RUNNING
