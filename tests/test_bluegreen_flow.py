"""Blue-green and hybrid releases end to end, as a team runs them from Slack: signed requests
reach a real `release-bot serve`, state is in the real Redis, the real apiserver (controllers,
kwok pods) runs blue and green (a hybrid's green behind Istio), Prometheus scrapes the tests'
exporter, and the Slack stand-in gets the messages. Everything the cluster holds is read back
with the kubernetes client itself, never through the bot's own code. The watch window and blue's
retention are compressed to seconds."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from bot.core.release import Phase
from tests.infra.exporter import MetricsExporter
from tests.infra.kwok_config import LOG_LINES, smoke_job
from tests.infra.processes import wait_until
from tests.infra.prometheus_server import PrometheusServer
from tests.infra.release_world import APP, World, is_card
from tests.infra.slack_requests import BOB, RELEASES
from tests.kube_objects import service

GREEN = f"{APP}-green"
PLAN = "    - {weight: 100, duration: 0s}\n"  # the app's canary plan; blue-green walks its own
WINDOW_S = 4
METRICS = (
    f"{{provider: generic, interval: 1s, window: {WINDOW_S}s, min_requests: 10, "
    "failure_limit: 0, snapshot_interval: 1m}"
)


# ---------------------------------------------------------------- reading the cluster back


def selector(world: World, service: str) -> dict[str, str] | None:
    found = _core(world).list_namespaced_service(
        world.cluster.namespace, field_selector=f"metadata.name={service}"
    )
    return dict(found.items[0].spec.selector) if found.items else None


def deployment(world: World, name: str) -> k8s.V1Deployment | None:
    found = k8s.AppsV1Api(world.kube_admin).list_namespaced_deployment(
        world.cluster.namespace, field_selector=f"metadata.name={name}"
    )
    return found.items[0] if found.items else None


def pods_of(world: World, version: str) -> set[str]:
    pods = _core(world).list_namespaced_pod(
        world.cluster.namespace, label_selector=f"app={APP},version={version}"
    )
    return {pod.metadata.name for pod in pods.items if pod.metadata.deletion_timestamp is None}


def endpoint_pods(world: World, service: str) -> set[str]:
    slices = k8s.DiscoveryV1Api(world.kube_admin).list_namespaced_endpoint_slice(
        world.cluster.namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    return {
        endpoint.target_ref.name
        for endpoint_slice in slices.items
        for endpoint in endpoint_slice.endpoints or []
        if endpoint.target_ref is not None
    }


def wait_endpoints_only(world: World, service: str, version: str) -> None:
    def only() -> bool:
        listed, wanted = endpoint_pods(world, service), pods_of(world, version)
        return bool(listed) and listed == wanted

    wait_until(only, timeout_s=20, what=f"{service}'s EndpointSlices listing only {version} pods")


def _core(world: World) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(world.kube_admin)


def switch_times(world: World) -> tuple[float, float]:
    """The seconds the thread reports for the switch: to the selector, to the EndpointSlices."""
    for text in world.thread_texts():
        found = re.search(r"green in ([0-9.]+) s \(EndpointSlices .* after ([0-9.]+) s\)", text)
        if found:
            return float(found[1]), float(found[2])
    raise AssertionError(f"no switch time in the thread: {world.thread_texts()}")


def start_and_preview(world: World, version: str) -> None:
    """Start a blue-green release; green comes up beside blue and waits on its preview."""
    answer = world.command(f"bluegreen {APP} {version}")
    assert answer.startswith(f":white_check_mark: Started a blue-green release of {APP} {version}")
    world.wait_for(Phase.AWAITING_APPROVAL, 0)


# ---------------------------------------------------------------- the tests


@pytest.fixture
def analysed(
    world_for: Any, prometheus_server: PrometheusServer, clean_exporter: MetricsExporter
) -> Any:
    def build(bluegreen: str) -> tuple[World, MetricsExporter]:
        world: World = world_for(
            "bluegreen",
            PLAN,
            metrics=METRICS,
            bluegreen=bluegreen,
            prometheus_url=prometheus_server.url,
        )
        return world, clean_exporter

    return build


def serve(exporter: MetricsExporter, namespace: str, *, green_errors: float = 0.0) -> None:
    """Blue's pods and green's, told apart only by their version label: green's pods copy blue's
    labels, track included (the checks compare green with blue by version)."""
    exporter.set_traffic(
        app=APP, version="v1", track="stable", qps=60, p99_s=0.1, namespace=namespace
    )
    exporter.set_traffic(
        app=APP,
        version="v2",
        track="stable",
        qps=20,
        error_ratio=green_errors,
        p99_s=0.12,
        namespace=namespace,
    )


def test_green_is_previewed_switched_to_and_switched_back_by_a_failing_check(
    analysed: Any, prometheus_server: PrometheusServer
) -> None:
    world, exporter = analysed("{watch_window: 2m, check_interval: 1s}")
    namespace = world.cluster.namespace
    serve(exporter, namespace)
    prometheus_server.wait_for_samples(
        f'http_requests_total{{namespace="{namespace}",code="200"}}', window_s=WINDOW_S
    )

    start_and_preview(world, "v2")
    green = deployment(world, GREEN)
    assert green is not None
    assert green.spec.template.spec.containers[0].image == "registry.example/shop/api:v2"
    assert green.spec.template.metadata.labels["version"] == "v2"
    assert selector(world, APP) == {"app": APP, "version": "v1"}  # pinned to blue, same pods
    assert selector(world, GREEN) == {"app": APP, "version": "v2"}
    wait_endpoints_only(world, GREEN, "v2")
    wait_endpoints_only(world, APP, "v1")
    card = world.card()
    assert "🔵 Blue* v1" in str(card["blocks"]) and "🟢 Green* v2" in str(card["blocks"])

    assert world.command(f"approve {APP}", user=BOB).startswith(":white_check_mark:")
    world.wait_for(Phase.RUNNING, 1)
    assert selector(world, APP) == {"app": APP, "version": "v2"}
    wait_endpoints_only(world, APP, "v2")
    world.wait_thread("Switched production to green in")
    selector_s, endpoints_s = switch_times(world)
    print(f"switch: selector {selector_s:.3f} s, EndpointSlices {endpoints_s:.3f} s")
    assert selector_s <= endpoints_s < 3.0

    serve(exporter, namespace, green_errors=0.4)  # green breaks on production traffic
    world.wait_for(Phase.ROLLED_BACK)
    assert selector(world, APP) == {"app": APP}  # the pin is dropped with green
    wait_endpoints_only(world, APP, "v1")
    assert deployment(world, GREEN) is None
    assert selector(world, GREEN) is None
    alerts = [m["text"] for m in world.slack.messages(RELEASES.id)[1:]]
    assert any("switching back to blue v1 automatically" in a and "error rate" in a for a in alerts)
    world.wait_thread("is back on blue v1 for all traffic")


def test_a_manual_rollback_switches_back_and_the_next_release_retires_blue(world_for: Any) -> None:
    world: World = world_for(
        "bluegreen", PLAN, bluegreen="{watch_window: 1s, retention: 3s, scale_down_grace: 1s}"
    )
    start_and_preview(world, "v2")
    world.command(f"approve {APP}", user=BOB)
    world.wait_for(Phase.KEEPING_BLUE)
    assert selector(world, APP) == {"app": APP, "version": "v2"}
    blue = deployment(world, APP)
    assert blue is not None and blue.spec.replicas == 4  # kept at full size

    assert world.command(f"rollback {APP} green looks wrong").startswith(":white_check_mark:")
    world.wait_for(Phase.ROLLED_BACK)
    assert selector(world, APP) == {"app": APP}
    wait_endpoints_only(world, APP, "v1")
    assert deployment(world, GREEN) is None

    start_and_preview(world, "v3")
    world.command(f"approve {APP}", user=BOB)
    world.wait_for(Phase.KEEPING_BLUE)
    done = world.wait_for(Phase.SUCCEEDED)  # retention over: blue scaled down, then deleted
    assert deployment(world, APP) is None
    green = deployment(world, GREEN)
    assert green is not None and green.spec.template.spec.containers[0].image.endswith(":v3")
    assert selector(world, APP) == {"app": APP}
    wait_endpoints_only(world, APP, "v3")
    assert selector(world, GREEN) is None  # the preview Service is gone too
    actions = [e.action for e in world.store.history(APP, limit=200) if e.release_id == done.id]
    assert "BlueRetentionElapsed" in actions and "PromotionDone" in actions


def test_after_blue_green_serves_the_green_slot_a_canary_and_a_blue_green_release_it(
    world_for: Any,
) -> None:
    world: World = world_for(
        "bluegreen", PLAN, bluegreen="{watch_window: 1s, retention: 1s, scale_down_grace: 1s}"
    )
    start_and_preview(world, "v2")
    world.command(f"approve {APP}", user=BOB)
    world.wait_for(Phase.SUCCEEDED)
    assert deployment(world, APP) is None  # production runs in the slot shop-api-green
    assert selector(world, APP) == {"app": APP}  # the pin is dropped with blue

    answer = world.command(f"canary {APP} v3")
    assert answer.startswith(":white_check_mark:"), answer
    world.wait_for(Phase.SUCCEEDED)
    serving = deployment(world, GREEN)
    assert serving is not None and serving.spec.template.spec.containers[0].image.endswith(":v3")
    assert serving.spec.template.metadata.labels["version"] == "v3"
    assert deployment(world, f"{GREEN}-canary") is None
    assert deployment(world, APP) is None and deployment(world, f"{APP}-canary") is None
    wait_endpoints_only(world, APP, "v3")

    start_and_preview(world, "v4")  # green goes into the free slot: shop-api again
    green = deployment(world, APP)
    assert green is not None and green.spec.template.spec.containers[0].image.endswith(":v4")
    assert selector(world, APP) == {"app": APP, "version": "v3"}
    world.command(f"approve {APP}", user=BOB)
    world.wait_for(Phase.SUCCEEDED)
    assert deployment(world, GREEN) is None
    assert selector(world, APP) == {"app": APP}
    wait_endpoints_only(world, APP, "v4")


def test_an_app_without_a_router_releases_by_blue_green_and_is_told_what_a_canary_needs(
    world_for: Any,
) -> None:
    world: World = world_for(
        "bluegreen-only", PLAN, bluegreen="{watch_window: 1s, retention: 1s, scale_down_grace: 1s}"
    )
    for kind in ("canary", "hybrid"):
        answer = world.command(f"{kind} {APP} v2")
        assert not answer.startswith(":white_check_mark:"), answer
        assert "add `router:` to the app in the apps file" in answer, answer
        assert deployment(world, f"{APP}-canary") is None  # refused: nothing created
        assert selector(world, GREEN) is None

    start_and_preview(world, "v2")
    world.command(f"approve {APP}", user=BOB)
    world.wait_for(Phase.SUCCEEDED)
    green = deployment(world, GREEN)
    assert green is not None and green.spec.template.spec.containers[0].image.endswith(":v2")
    assert deployment(world, APP) is None
    wait_endpoints_only(world, APP, "v2")


VAP = "admissionregistration.k8s.io/v1"


def freeze_production_selector(world: World) -> str:
    """A ValidatingAdmissionPolicy that refuses any change of the production Service's selector
    in this namespace; returns its name, once the apiserver enforces it."""
    name = f"selector-freeze-{world.cluster.namespace}"
    policy = {
        "apiVersion": VAP,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["services"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": f"object.metadata.name != '{APP}' || "
                    "object.spec.selector == oldObject.spec.selector",
                    "message": "change freeze: the production selector stays as it is",
                }
            ],
        },
    }
    binding = {
        "apiVersion": VAP,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": world.cluster.namespace}
                }
            },
        },
    }
    admission = k8s.AdmissionregistrationV1Api(world.kube_admin)
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)

    def enforced() -> bool:
        try:
            _core(world).patch_namespaced_service(
                APP,
                world.cluster.namespace,
                {"spec": {"selector": {"version": "probe"}}},
                dry_run="All",
            )
        except k8s.ApiException as refused:
            return "change freeze" in str(refused.body)
        return False

    wait_until(enforced, timeout_s=20, what="the admission policy enforced")
    return name


def test_a_switch_the_apiserver_refuses_leaves_blue_serving_and_says_why(world_for: Any) -> None:
    world: World = world_for("bluegreen", PLAN, bluegreen="{watch_window: 1m}")
    start_and_preview(world, "v2")
    policy = freeze_production_selector(world)

    answer = world.command(f"approve {APP}", user=BOB)
    assert answer.startswith(":no_entry_sign:") and "change freeze" in answer, answer
    refused = world.wait_for(Phase.AWAITING_APPROVAL, 0)
    assert refused.approvals == ()  # the approval given is spent; the next one switches
    assert selector(world, APP) == {"app": APP, "version": "v1"}
    wait_endpoints_only(world, APP, "v1")
    world.wait_thread("the apiserver refused to switch production")
    assert any(
        "change freeze" in m["text"] for m in world.slack.messages(RELEASES.id)[1:]
    )  # said in the channel too

    admission = k8s.AdmissionregistrationV1Api(world.kube_admin)
    admission.delete_validating_admission_policy_binding(policy)
    admission.delete_validating_admission_policy(policy)
    wait_until(
        lambda: world.command(f"approve {APP}", user=BOB).startswith(":white_check_mark:"),
        timeout_s=20,
        what="an approval that switches once the policy is gone",
    )
    world.wait_for(Phase.RUNNING, 1)
    assert selector(world, APP) == {"app": APP, "version": "v2"}


# ---------------------------------------------------------------- hybrid

HYBRID_PLAN = "    - {weight: 25, duration: 1s}\n    - {weight: 50, duration: 1s, approval: true}\n"


def route_weights(world: World) -> dict[str, int]:
    """The VirtualService's weights by subset, read with the kubernetes client."""
    route = k8s.CustomObjectsApi(world.kube_admin).get_namespaced_custom_object(
        "networking.istio.io", "v1", world.cluster.namespace, "virtualservices", APP
    )
    main = next(entry for entry in route["spec"]["http"] if entry.get("name") == "main")
    return {target["destination"]["subset"]: target.get("weight", 100) for target in main["route"]}


def test_a_hybrid_release_previews_green_beside_blue_then_widens_it_in_canary_stages(
    world_for: Any,
) -> None:
    world: World = world_for("istio", HYBRID_PLAN)
    _core(world).create_namespaced_service(
        world.cluster.namespace, service(APP, {"app": APP, "track": "stable"})
    )
    answer = world.command(f"hybrid {APP} v2")
    assert answer.startswith(":white_check_mark: Started a hybrid release of shop-api v2"), answer

    world.wait_for(Phase.AWAITING_APPROVAL, 0)  # the preview: green full size, no users
    green = deployment(world, f"{APP}-canary")
    assert green is not None and green.spec.replicas == 4
    assert selector(world, GREEN) == {"app": APP, "track": "canary"}
    wait_endpoints_only(world, GREEN, "v2")
    assert route_weights(world) == {"stable": 100, "canary": 0}
    world.wait_thread("the preview: green v2 is ready on its preview Service")

    world.command(f"approve {APP}", user=BOB)
    world.wait_for(Phase.RUNNING, 1)
    wait_until(
        lambda: route_weights(world) == {"stable": 75, "canary": 25},
        timeout_s=20,
        what="25 % of production on green",
    )
    world.wait_for(Phase.AWAITING_APPROVAL, 2)
    assert route_weights(world) == {"stable": 50, "canary": 50}
    world.command(f"approve {APP}", user=BOB)

    world.wait_for(Phase.SUCCEEDED)
    blue = deployment(world, APP)
    assert blue is not None and blue.spec.template.spec.containers[0].image.endswith(":v2")
    assert deployment(world, f"{APP}-canary") is None
    wait_until(lambda: selector(world, GREEN) is None, timeout_s=10, what="preview Service gone")


# ---------------------------------------------------------------- a verification Job on the preview

PREVIEW_JOB = "{verification: {job: smoke, timeout: 1m, log_lines: 3}}"


def job_env(world: World, name: str) -> dict[str, str]:
    job = k8s.BatchV1Api(world.kube_admin).read_namespaced_job(name, world.cluster.namespace)
    container = job.spec.template.spec.containers[0]
    return {variable.name: variable.value for variable in container.env or []}


def preview_job(world: World) -> str:
    """The name of the preview's verification Job, once the apiserver has it; its target is the
    preview Service, reached with no header."""
    verifying = world.wait_for(Phase.VERIFYING, 0)
    assert verifying.verification is not None
    name = verifying.verification.job_name
    jobs = k8s.BatchV1Api(world.kube_admin)
    wait_until(
        lambda: bool(
            jobs.list_namespaced_job(
                world.cluster.namespace, field_selector=f"metadata.name={name}"
            ).items
        ),
        timeout_s=10,
        what="the preview's verification Job",
    )
    env = job_env(world, name)
    namespace = world.cluster.namespace
    assert env["RELEASE_TARGET_URL"] == f"http://{GREEN}.{namespace}.svc"  # the preview Service
    assert not env["RELEASE_CANARY_HEADER"]  # green is reached by its Service, no header
    return name


def start_and_verify(world: World, version: str) -> str:
    """Start a blue-green release whose preview names a Job; returns the Job's name once it
    exists, production still on blue."""
    answer = world.command(f"bluegreen {APP} {version}")
    assert answer.startswith(f":white_check_mark: Started a blue-green release of {APP} {version}")
    name = preview_job(world)
    assert selector(world, APP) == {"app": APP, "version": "v1"}  # blue serves meanwhile
    assert selector(world, GREEN) == {"app": APP, "version": version}
    return name


def test_a_failing_preview_job_ends_the_release_before_the_switch_with_blue_serving(
    world_for: Any,
) -> None:
    world: World = world_for(
        "bluegreen",
        PLAN,
        bluegreen=PREVIEW_JOB,
        verification=smoke_job(fails=True, runs_for="1s"),
    )
    name = start_and_verify(world, "v2")
    jobs = k8s.BatchV1Api(world.kube_admin)

    def job_failed() -> bool:
        job = jobs.read_namespaced_job(name, world.cluster.namespace)
        conditions = job.status.conditions or []
        return any(c.type in ("FailureTarget", "Failed") and c.status == "True" for c in conditions)

    wait_until(job_failed, timeout_s=20, what="the preview's Job failing", interval_s=0.02)
    failed_at = time.monotonic()
    wait_until(
        lambda: deployment(world, GREEN) is None,
        timeout_s=20,
        what="green removed",
        interval_s=0.02,
    )
    print(f"\npreview Job failed -> green Deployment deleted: {time.monotonic() - failed_at:.2f} s")

    done = world.wait_for(Phase.ROLLED_BACK)
    assert done.outcome_by is None and name in (done.outcome_reason or "")
    assert done.switch_requested_at is None  # the switch was never asked for
    # read back: blue serves; with green gone the version pin is dropped (one slot is left)
    assert selector(world, APP) == {"app": APP}
    wait_endpoints_only(world, APP, "v1")
    assert deployment(world, GREEN) is None
    assert selector(world, GREEN) is None
    jobs = k8s.BatchV1Api(world.kube_admin).list_namespaced_job(world.cluster.namespace)
    assert [
        job.metadata.name for job in jobs.items if job.metadata.deletion_timestamp is None
    ] == []
    alerts = [m["text"] for m in world.slack.messages(RELEASES.id) if not is_card(m)]
    assert any(
        name in alert
        and "before production reached green" in alert
        and "blue v1 goes on serving" in alert
        for alert in alerts
    ), alerts
    world.wait_thread("of verification Job")
    thread = "\n".join(world.thread_texts())
    for line in LOG_LINES[-3:]:  # log_lines: 3, served by kwok through pods/log
        assert line in thread


def test_a_passing_preview_job_opens_the_approval_which_switches(world_for: Any) -> None:
    world: World = world_for(
        "bluegreen",
        PLAN,
        bluegreen=PREVIEW_JOB,
        verification=smoke_job(fails=False, runs_for="2s"),
    )
    name = start_and_verify(world, "v2")

    world.wait_for(Phase.AWAITING_APPROVAL, 0)
    world.wait_thread(f"verification Job `{name}` passed")
    assert selector(world, APP) == {"app": APP, "version": "v1"}  # passing is not the switch
    assert world.command(f"approve {APP}", user=BOB).startswith(":white_check_mark:")
    world.wait_for(Phase.RUNNING, 1)
    assert selector(world, APP) == {"app": APP, "version": "v2"}
    wait_endpoints_only(world, APP, "v2")


def test_a_failing_hybrid_preview_job_ends_the_release_before_any_user_reaches_green(
    world_for: Any,
) -> None:
    world: World = world_for(
        "istio",
        HYBRID_PLAN,
        bluegreen=PREVIEW_JOB,
        verification=smoke_job(fails=True, runs_for="1s"),
    )
    _core(world).create_namespaced_service(
        world.cluster.namespace, service(APP, {"app": APP, "track": "stable"})
    )
    answer = world.command(f"hybrid {APP} v2")
    assert answer.startswith(":white_check_mark: Started a hybrid release of shop-api v2"), answer
    name = preview_job(world)
    assert route_weights(world) == {"stable": 100, "canary": 0}  # no user on green meanwhile

    done = world.wait_for(Phase.ROLLED_BACK)
    assert done.stage_index == 0 and name in (done.outcome_reason or "")
    assert route_weights(world) == {"stable": 100}  # the route back to stable alone
    assert deployment(world, f"{APP}-canary") is None
    wait_until(lambda: selector(world, GREEN) is None, timeout_s=10, what="preview Service gone")
    alerts = [m["text"] for m in world.slack.messages(RELEASES.id) if not is_card(m)]
    assert any(name in alert and "before production reached green" in alert for alert in alerts), (
        alerts
    )
