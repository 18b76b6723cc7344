"""Debian's prometheus on a free loopback port, scraping the tests' metrics exporter every second.

A pytest plugin (listed in tests/conftest.py): fixtures `metrics_exporter`, `prometheus_server`
and `clean_exporter`.
"""

from __future__ import annotations

import logging
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_api_client import PrometheusConnect

from tests.infra.exporter import MetricsExporter
from tests.infra.processes import ManagedProcess, free_port, wait_until

SCRAPE_INTERVAL_S = 1
EXPORTER_JOB = "release-bot-test-exporter"
log = logging.getLogger(__name__)


@dataclass
class PrometheusServer:
    data_dir: Path
    scrape_target: str
    port: int = 0
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> PrometheusConnect:
        return PrometheusConnect(self.url, disable_ssl=True)

    def start(self) -> PrometheusServer:
        """Start, or start again on the same port and data directory (the TSDB replays its WAL)."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError(
                "prometheus not found: install Debian's prometheus (scripts/setup.sh does)"
            )
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.data_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self._config()))
        argv = [
            binary, f"--config.file={config_path}", f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]  # fmt: skip
        started = time.monotonic()
        self.process = ManagedProcess("prometheus", argv, self.data_dir / "prometheus.log").start()
        wait_until(self._is_ready, timeout_s=30, what="prometheus /-/ready")
        # Prometheus 2.42 hands targets to its scrape manager only after a fixed 5 s throttle,
        # so the first scrape, and this wait, take ~6 s on every start.
        wait_until(
            self._exporter_is_up, timeout_s=15, what=f"prometheus target {self.scrape_target}"
        )
        log.info(
            "prometheus on port %d ready and scraping in %.2f s",
            self.port,
            time.monotonic() - started,
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def wait_for_samples(self, selector: str, *, window_s: int, timeout_s: float = 30) -> float:
        """Wait until every series `selector` matches has samples spanning `window_s` seconds.

        From then on rate(selector[window_s]) is exact: no window reaches back before the series
        began, where Prometheus would extrapolate only down to zero and under-report the rate.
        Returns the seconds waited. Series that vanished and came back under the same labels
        count their old samples too, so tests that need a fresh window use fresh labels.
        """
        span_s = window_s + SCRAPE_INTERVAL_S
        query = f"count_over_time({selector}[{span_s}s])"
        prometheus = self.client()

        def spans_the_window() -> bool:
            counts = [float(series["value"][1]) for series in prometheus.custom_query(query)]
            return bool(counts) and min(counts) >= span_s // SCRAPE_INTERVAL_S

        return wait_until(
            spans_the_window, timeout_s=timeout_s, what=f"{window_s} s of samples of {selector}"
        )

    def _config(self) -> dict[str, object]:
        interval = f"{SCRAPE_INTERVAL_S}s"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {"job_name": EXPORTER_JOB, "static_configs": [{"targets": [self.scrape_target]}]}
            ],
        }

    def _is_ready(self) -> bool:
        assert self.process is not None
        self.process.ensure_alive()
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    def _exporter_is_up(self) -> bool:
        targets = self.client().get_targets(state="active")["activeTargets"]
        return any(
            target["labels"]["job"] == EXPORTER_JOB and target["health"] == "up"
            for target in targets
        )


@pytest.fixture(scope="session")
def metrics_exporter() -> Iterator[MetricsExporter]:
    exporter = MetricsExporter().start()
    yield exporter
    exporter.stop()


@pytest.fixture(scope="session")
def prometheus_server(
    tmp_path_factory: pytest.TempPathFactory, metrics_exporter: MetricsExporter
) -> Iterator[PrometheusServer]:
    data_dir = Path(tmp_path_factory.mktemp("prometheus"))
    server = PrometheusServer(data_dir=data_dir, scrape_target=metrics_exporter.target).start()
    yield server
    server.stop()


@pytest.fixture
def clean_exporter(metrics_exporter: MetricsExporter) -> MetricsExporter:
    """The session's exporter with no traffic and no series: every test sets its own."""
    metrics_exporter.reset()
    return metrics_exporter
