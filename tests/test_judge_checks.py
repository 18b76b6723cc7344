"""The metric checks (bot.application.checks) with a statistical judge, reading the real
Prometheus (which scrapes the tests' exporter every second) through the Prometheus adapter.

What the flow tests in tests/test_analysis_flow.py do not show: the judge's missing-data rule
turns into an inconclusive check (the release would pause, never promote), and a stage without
public traffic is not judged statistically."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.application.apps_file import load_config
from bot.application.checks import CanaryChecks
from bot.core.apps import AppConfig
from bot.core.machine import CanaryReady, ChecksInconclusive, ChecksPassed, StageTimerElapsed
from bot.metrics.prometheus import PrometheusMetrics
from tests.infra.exporter import MetricsExporter
from tests.infra.prometheus_server import PrometheusServer
from tests.releases import MINUTE, start

NAMESPACE = "judge-test"
LOOKBACK_S = 16


def app_config(tmp_path: Path) -> AppConfig:
    path = tmp_path / "apps.yaml"
    path.write_text(
        f"""\
apps:
  shop-api:
    namespace: {NAMESPACE}
    workload: shop-api
    slack_channel: C0DEPLOYS
    router: {{provider: istio, virtual_service: shop-api, destination_rule: shop-api,
             host: shop-api}}
    metrics:
      window: 4s
      min_requests: 10
      judge: {{kind: mann-whitney, lookback: {LOOKBACK_S}s, samples: 8, min_samples: 6}}
"""
    )
    return load_config(path).app("shop-api")


def serve(exporter: MetricsExporter, track: str, version: str) -> None:
    exporter.set_traffic(
        namespace=NAMESPACE, app="shop-api", version=version, track=track, qps=40, p99_s=0.1
    )


def test_a_canary_too_new_to_sample_is_inconclusive_and_a_0_percent_stage_is_not_judged(
    prometheus_server: PrometheusServer, clean_exporter: MetricsExporter, tmp_path: Path
) -> None:
    app = app_config(tmp_path)
    checks = CanaryChecks(metrics=PrometheusMetrics(default_url=prometheus_server.url))
    serve(clean_exporter, "stable", "v1")
    stable = f'http_requests_total{{namespace="{NAMESPACE}",track="stable"}}'
    prometheus_server.wait_for_samples(stable, window_s=LOOKBACK_S)
    serve(clean_exporter, "canary", "v2")
    canary = f'http_requests_total{{namespace="{NAMESPACE}",track="canary"}}'
    prometheus_server.wait_for_samples(canary, window_s=4)
    time.sleep(1)
    now = datetime.now(UTC)

    run = start()
    run.accept(CanaryReady(), after=MINUTE)  # stage 1/4: 0 %, header-routed
    header_stage = checks.run(run.release, app, now=now)
    run.accept(StageTimerElapsed(), after=timedelta(hours=1))  # stage 2/4: 5 %
    public_stage = checks.run(run.release, app, now=now)

    assert isinstance(header_stage, ChecksPassed)  # limits passed, the judge not asked
    assert "statistical judge" not in header_stage.summary
    assert isinstance(public_stage, ChecksInconclusive), public_stage
    assert public_stage.reason.startswith(
        "statistical judge: not judged, missing data for error rate; it never promotes on it"
    )
    assert "stable samples, need 6 of each" in public_stage.reason
