"""Blue-green switch times on the real apiserver: median and max over N switches, against a
rolling update of the same Deployment measured in the same run.

Run by hand from the repository root: `python bench/bluegreen_switch.py [--switches 10]`. It
starts the tests' control plane (etcd, kube-apiserver, controllers, kwok; built once by
scripts/build-control-plane.sh) in a temporary directory, puts blue (4 pods) and green (4 pods)
beside each other behind a production Service, then times each switch as the bot does it
(bot.kube.bluegreen.BlueGreenStrategy reconciling a release in SWITCHING): from the start of the
reconcile to the apiserver serving the new selector, and to the EndpointSlices listing only
green's pods. Between two switches production goes back to blue (the preview's reconcile) and the
EndpointSlices settle. The baseline is what moving production to the new version costs without
blue-green: a rolling update of blue's Deployment to the new image, until it is rolled out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client as k8s

from bot.core.apps import AppConfig, BlueGreenConfig, ChannelRef, ReplicasRouter
from bot.core.machine import (
    Accepted,
    Approve,
    CanaryReady,
    Event,
    StageTimerElapsed,
    start_release,
    transition,
)
from bot.core.plan import DEFAULT_PLAN
from bot.core.release import Phase, Release, ReleaseKind
from bot.kube.bluegreen import BlueGreenStrategy
from tests.infra.kube import KubeCluster, create_namespace, wait_for_deployment_ready
from tests.infra.processes import wait_until
from tests.kube_objects import service, stable_deployment

APP = "shop-api"
PODS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bluegreen-") as work:
        cluster = KubeCluster(work_dir=Path(work)).start()
        try:
            run(cluster.api_client(), switches=args.switches)
        finally:
            cluster.stop()


def run(api: k8s.ApiClient, *, switches: int) -> None:
    namespace = "bench-" + uuid.uuid4().hex[:8]
    create_namespace(api, namespace)
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, stable_deployment(replicas=PODS))
    core.create_namespaced_service(namespace, service(APP, {"app": APP}))
    wait_for_deployment_ready(api, namespace=namespace, name=APP)
    app = _app(namespace)
    strategy = BlueGreenStrategy(app, api=api)
    preview, switching = _releases(app)

    strategy.reconcile(preview)  # production pinned to blue, green created
    wait_for_deployment_ready(api, namespace=namespace, name=f"{APP}-green")
    selector_s: list[float] = []
    endpoints_s: list[float] = []
    for _ in range(switches):
        strategy.reconcile(preview)  # production back on blue
        _settle(api, namespace, version="v1")
        timing = strategy.reconcile(switching).switched
        assert timing is not None and timing.selector_s is not None, timing
        assert timing.endpoints_s is not None, "EndpointSlices did not list only green in time"
        selector_s.append(timing.selector_s)
        endpoints_s.append(timing.endpoints_s)

    rolling_s = _rolling_update(api, namespace)
    _report(selector_s, endpoints_s, rolling_s)


def _app(namespace: str) -> AppConfig:
    return AppConfig(
        name=APP,
        namespace=namespace,
        workload=APP,
        router=ReplicasRouter(provider="replicas", service=APP),
        slack_channel=ChannelRef("C0BENCH"),
        plan=DEFAULT_PLAN,
        bluegreen=BlueGreenConfig(),
    )


def _releases(app: AppConfig) -> tuple[Release, Release]:
    """The same release on its preview (blue serves) and switching to green."""
    now = datetime.now(UTC)
    release = start_release(
        release_id="bench",
        app=APP,
        version="v2",
        previous_version="v1",
        plan=app.bluegreen.plan(),
        requested_by="U0BENCH",
        channel="C0BENCH",
        four_eyes=False,
        now=now,
        kind=ReleaseKind.BLUE_GREEN,
        blue_green=app.bluegreen.times(),
    ).release
    for event in (CanaryReady(), StageTimerElapsed()):
        release = _accepted(release, event, now)
    preview = release
    assert preview.phase is Phase.AWAITING_APPROVAL
    return preview, _accepted(preview, Approve(by="U0LEAD"), now)


def _accepted(release: Release, event: Event, now: datetime) -> Release:
    decided = transition(release, event, now=now)
    assert isinstance(decided, Accepted), decided
    return decided.release


def _settle(api: k8s.ApiClient, namespace: str, *, version: str) -> None:
    """Wait until the production EndpointSlices list only `version`'s pods."""
    core, discovery = k8s.CoreV1Api(api), k8s.DiscoveryV1Api(api)

    def settled() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector=f"app={APP},version={version}")
        wanted = {pod.metadata.name for pod in pods.items}
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={APP}"
        )
        listed = {
            e.target_ref.name for s in slices.items for e in s.endpoints or [] if e.target_ref
        }
        return bool(listed) and listed == wanted

    wait_until(settled, timeout_s=30, what=f"EndpointSlices on {version}", interval_s=0.02)


def _rolling_update(api: k8s.ApiClient, namespace: str) -> float:
    """Seconds for blue's Deployment to roll to a new image, all pods ready: the baseline."""
    started = time.perf_counter()
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "x:v9"}]}}}}
    k8s.AppsV1Api(api).patch_namespaced_deployment(APP, namespace, patch)
    wait_for_deployment_ready(api, namespace=namespace, name=APP, timeout_s=120)
    return time.perf_counter() - started


def _report(selector_s: list[float], endpoints_s: list[float], rolling_s: float) -> None:
    median_endpoints = statistics.median(endpoints_s)
    print(f"blue-green switch, {len(selector_s)} switches, {PODS} pods a side:")
    print(
        f"  apiserver serves the new selector: median {statistics.median(selector_s):.3f} s, "
        f"max {max(selector_s):.3f} s"
    )
    print(
        f"  EndpointSlices list only green:    median {median_endpoints:.3f} s, "
        f"max {max(endpoints_s):.3f} s"
    )
    print(f"baseline, a rolling update of blue to a new image: {rolling_s:.3f} s")
    print(f"ratio baseline / median switch (EndpointSlices): {rolling_s / median_endpoints:.1f}x")


if __name__ == "__main__":
    main()
