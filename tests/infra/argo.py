"""The real Argo Rollouts controller, built by scripts/build-argo-rollouts.sh, run against the
session's test apiserver (tests/infra/kube.py), so Rollouts really create ReplicaSets that kwok
makes Ready, and really pause, promote, abort and run their AnalysisRuns.

A pytest plugin (listed in tests/conftest.py): fixture `argo_controller`, started only by the
tests that ask for it. The CRDs it watches are installed with the control plane
(tests/infra/crds.py, the same release). A failing test that used it gets the controller's log
tail in its report.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.infra.kube import KubeCluster, create_namespace
from tests.infra.processes import ManagedProcess, built_bin_dir, free_port, wait_until

ROLLOUTS = ("argoproj.io", "v1alpha1")
MERGE_PATCH = "application/merge-patch+json"
Rollout = dict[str, Any]
CONTROLLER_NAMESPACE = "argo-rollouts"  # where it looks for its ConfigMap and notification Secret
PROBE_ROLLOUT = "controller-probe"


def ensure_argo_rollouts() -> Path:
    """Build (or find cached) rollouts-controller; return its directory."""
    return built_bin_dir("build-argo-rollouts.sh", what="the Argo Rollouts controller")


@dataclass
class ArgoController:
    """One rollouts-controller watching every namespace of the test cluster."""

    cluster: KubeCluster
    work_dir: Path
    bin_dir: Path = field(default_factory=ensure_argo_rollouts)
    healthz_port: int = 0
    metrics_port: int = 0
    process: ManagedProcess | None = None
    startup_seconds: float = 0.0

    def start(self) -> ArgoController:
        started = time.monotonic()
        self.healthz_port, self.metrics_port = free_port(), free_port()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        api = self.cluster.api_client()
        create_namespace(api, CONTROLLER_NAMESPACE)
        argv = [
            str(self.bin_dir / "rollouts-controller"),
            f"--kubeconfig={self.cluster.kubeconfig()}",
            "--leader-elect=false",
            f"--healthzPort={self.healthz_port}",
            f"--metricsPort={self.metrics_port}",
            "--loglevel=info",
            "--logformat=text",
        ]
        self.process = ManagedProcess(
            "rollouts-controller",
            argv,
            self.work_dir / "rollouts-controller.log",
            env={"POD_NAMESPACE": CONTROLLER_NAMESPACE},
        ).start()
        wait_until(self._healthz_answers, timeout_s=30, what="rollouts-controller /healthz")
        self._wait_for_probe_rollout(api)
        api.close()
        self.startup_seconds = round(time.monotonic() - started, 2)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines) if self.process else "(not started)"

    def _healthz_answers(self) -> bool:
        assert self.process is not None
        self.process.ensure_alive()
        url = f"http://127.0.0.1:{self.healthz_port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    def _wait_for_probe_rollout(self, api: k8s.ApiClient) -> None:
        """/healthz answers before the informers sync: a Rollout it reconciles proves it works."""
        rollouts = Rollouts(api, CONTROLLER_NAMESPACE)
        rollouts.create(probe_rollout())

        def reconciled(rollout: Rollout) -> bool:
            assert self.process is not None
            self.process.ensure_alive()
            return rollout.get("status", {}).get("phase") == "Healthy"

        rollouts.wait(PROBE_ROLLOUT, "reconciled by the controller", reconciled, timeout_s=60)


class Rollouts:
    """Argo objects of one namespace through plain API calls, the way Argo's kubectl plugin makes
    them (status changes through the status subresource): what tests write and read back."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.custom = k8s.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, body: Rollout, plural: str = "rollouts") -> None:
        self.custom.create_namespaced_custom_object(*ROLLOUTS, self.namespace, plural, body)

    def read(self, name: str, plural: str = "rollouts") -> Rollout:
        found = self.custom.get_namespaced_custom_object(*ROLLOUTS, self.namespace, plural, name)
        return dict(found)

    def list(self, plural: str) -> list[Rollout]:
        listed = self.custom.list_namespaced_custom_object(*ROLLOUTS, self.namespace, plural)
        return list(listed["items"])

    def patch_spec(self, name: str, patch: Rollout) -> None:
        self.custom.patch_namespaced_custom_object(
            *ROLLOUTS, self.namespace, "rollouts", name, patch, _content_type=MERGE_PATCH
        )

    def patch_status(self, name: str, status: Rollout) -> None:
        self.custom.patch_namespaced_custom_object_status(
            *ROLLOUTS,
            self.namespace,
            "rollouts",
            name,
            {"status": status},
            _content_type=MERGE_PATCH,
        )

    def wait(
        self, name: str, what: str, check: Callable[[Rollout], bool], timeout_s: float = 30
    ) -> Rollout:
        """Poll the Rollout until `check` holds; return it. A timeout shows its last status."""
        last: list[Rollout] = []

        def met() -> bool:
            last[:] = [self.read(name)]
            return check(last[0])

        try:
            wait_until(met, timeout_s=timeout_s, what=f"Rollout {name}: {what}", interval_s=0.1)
        except TimeoutError as error:
            status = last[0].get("status") if last else None
            raise TimeoutError(f"{error}; last status: {json.dumps(status)}") from None
        return last[0]


def error_ratio_template(prometheus_url: str, query: str) -> Rollout:
    """An AnalysisTemplate `error-ratio`: Argo's own analysis, one Prometheus query whose first
    result must stay below 0.05, no failure tolerated."""
    metric = {
        "name": "error-ratio",
        "successCondition": "result[0] < 0.05",
        "failureLimit": 0,
        "provider": {"prometheus": {"address": prometheus_url, "query": query}},
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "error-ratio"},
        "spec": {"metrics": [metric]},
    }


def probe_rollout() -> Rollout:
    labels = {"app": PROBE_ROLLOUT}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": PROBE_ROLLOUT},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "probe", "image": "probe:1"}]},
            },
            "strategy": {"canary": {"steps": [{"setWeight": 100}]}},
        },
    }


@pytest.fixture(scope="session")
def argo_controller(
    kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArgoController]:
    controller = ArgoController(
        cluster=kube_cluster, work_dir=Path(tmp_path_factory.mktemp("argo"))
    ).start()
    if os.environ.get("RELEASE_BOT_TEST_TIMINGS"):
        print(f"\nrollouts-controller startup: {controller.startup_seconds} s")
    yield controller
    controller.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """A failing test that used the controller shows what the controller logged."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    controller = getattr(item, "funcargs", {}).get("argo_controller")
    if report.failed and isinstance(controller, ArgoController):
        report.sections.append(("rollouts-controller log", controller.log_tail()))
