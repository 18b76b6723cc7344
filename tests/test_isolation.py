"""One slow app never delays another's rollback: a real `release-bot serve` runs two canaries,
A and B, against the real apiserver, Redis, Prometheus and the Slack stand-in. A's writes hang
in a real validating admission webhook registered on the apiserver for A's namespace (its
server makes the bot's requests wait 30 s, failing closed, timeoutSeconds 30) and A's Prometheus
accepts connections and never answers. B's canary turns bad: B must be back at 100 % stable
(read back from the apiserver) and its alert posted within two check intervals of its first bad
sample in Prometheus, while A still hangs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from kubernetes import client as k8s

from bot.core.release import Phase, Release
from bot.kube.client import DEPLOYMENTS, VIRTUAL_SERVICES
from tests.infra.exporter import MetricsExporter
from tests.infra.hanging_servers import (
    HangingWebhook,
    SilentTcpServer,
    delete_webhook,
    register_webhook,
    wait_held,
)
from tests.infra.kube import KubeCluster, create_namespace
from tests.infra.processes import wait_until
from tests.infra.prometheus_server import PrometheusServer
from tests.infra.redis_server import RedisServer
from tests.infra.release_world import is_card
from tests.infra.slack import LaunchBot
from tests.infra.slack_requests import ALICE, RELEASES, SlackRequests
from tests.infra.slack_standin import SlackStandIn
from tests.kube_objects import Cluster, stable_deployment

INTERVAL_S = 2
WINDOW_S = 4
SLOW, FAST = "shop-a", "shop-b"
BOT_ACCOUNT = "release-bot"
METRICS = {
    "provider": "generic", "interval": f"{INTERVAL_S}s", "window": f"{WINDOW_S}s",
    "min_requests": 10, "failure_limit": 0, "snapshot_interval": "1h",
}  # fmt: skip


@dataclass
class Apps:
    slow_namespace: str
    fast_namespace: str
    kubeconfig: Path
    """The bot's: a ServiceAccount's token, so the webhook can tell the bot's requests apart."""
    bot_user: str


@pytest.fixture
def apps(kube_cluster: KubeCluster, kube_admin: k8s.ApiClient, namespace: str) -> Iterator[Apps]:
    fast_namespace = "t-" + uuid.uuid4().hex[:10]
    create_namespace(kube_admin, fast_namespace)
    for app, where in ((SLOW, namespace), (FAST, fast_namespace)):
        cluster = Cluster(kube_admin, where)
        cluster.create(
            DEPLOYMENTS,
            stable_deployment(name=app, image=f"registry.example/{app}:v1", readiness_probe=True),
        )
        cluster.create(VIRTUAL_SERVICES, _virtual_service(app))
        cluster.rolled_out(app)
    binding = f"release-bot-{namespace}"
    token = _service_account_token(kube_admin, namespace, binding)
    yield Apps(
        slow_namespace=namespace,
        fast_namespace=fast_namespace,
        kubeconfig=kube_cluster.kubeconfig(token=token, name=f"bot-{namespace}"),
        bot_user=f"system:serviceaccount:{namespace}:{BOT_ACCOUNT}",
    )
    k8s.RbacAuthorizationV1Api(kube_admin).delete_cluster_role_binding(binding)


def test_a_hanging_app_never_delays_another_apps_rollback(
    *,
    apps: Apps,
    kube_admin: k8s.ApiClient,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    prometheus_server: PrometheusServer,
    clean_exporter: MetricsExporter,
    slack_api: SlackStandIn,
    slack_requests: SlackRequests,
    launch_bot: LaunchBot,
    tmp_path: Path,
) -> None:
    silent = SilentTcpServer().start()
    webhook = HangingWebhook(tmp_path / "webhook", hangs=lambda user: user == apps.bot_user)
    webhook.start()
    webhook_name = f"hang-{apps.slow_namespace}"
    try:
        config = tmp_path / "apps.yaml"
        config.write_text(yaml.safe_dump(_apps_file(apps, silent.url, prometheus_server.url)))
        bot = launch_bot(
            extra_env={
                "REDIS_URL": redis_server.url,
                "RELEASE_BOT_CONFIG": str(config),
                "KUBECONFIG": str(apps.kubeconfig),
                "RELEASE_BOT_TICK_SECONDS": "0.25",
            }
        )
        _serve(clean_exporter, apps.fast_namespace, canary_errors=0.0)
        selector = f'http_requests_total{{namespace="{apps.fast_namespace}",code="200"}}'
        prometheus_server.wait_for_samples(selector, window_s=WINDOW_S)
        for app in (SLOW, FAST):
            request = slack_requests.slash_command(f"canary {app} v2", user=ALICE)
            assert bot.client.post_events(request).status_code == 200
        wait_until(
            lambda: _checked_once(redis_client, FAST) and _past_start(redis_client, SLOW),
            timeout_s=60,
            what="B running with a passing check, A past its start",
        )

        # From now on, each of the bot's writes in A's namespace hangs in the webhook: someone
        # edits A's route (the admin's own write is let through), so the bot's next pass of A
        # must write it back.
        register_webhook(kube_admin, webhook, name=webhook_name, namespace=apps.slow_namespace)
        wait_until(
            lambda: _drift(kube_admin, apps.slow_namespace, webhook),
            timeout_s=15,
            what="the webhook in use on A's namespace",
            interval_s=0.2,
        )
        wait_held(webhook, timeout_s=15)

        _serve(clean_exporter, apps.fast_namespace, canary_errors=0.10)
        first_bad = _first_bad_sample(prometheus_server, apps.fast_namespace)
        back_on_stable = alerted = None
        held_at_rollback = 0
        deadline = first_bad + 30
        while (back_on_stable is None or alerted is None) and time.monotonic() < deadline:
            now = time.monotonic()
            if back_on_stable is None and _weights(kube_admin, apps.fast_namespace, FAST) == (
                100,
                0,
            ):
                back_on_stable, held_at_rollback = now - first_bad, webhook.held
            if alerted is None and _alerts(slack_api, FAST):
                alerted = now - first_bad
            time.sleep(0.05)
        slow = _release(redis_client, SLOW)
        print(
            f"A hanging (webhook holding {held_at_rollback} of the bot's requests, "
            f"{silent.connections} connections to A's silent Prometheus): B's first bad sample "
            f"-> 100 % stable {back_on_stable} s, -> alert {alerted} s "
            f"(check interval {INTERVAL_S} s)"
        )
        bound_s = 2 * INTERVAL_S + 2  # two intervals, and a second or two for a busy machine
        assert back_on_stable is not None and back_on_stable <= bound_s
        assert alerted is not None and alerted <= bound_s
        assert held_at_rollback >= 1, "A was not hanging when B was rolled back"
        assert _weights(kube_admin, apps.slow_namespace, SLOW) == (50, 50)  # A's drift stands
        assert not slow.phase.is_terminal
        assert silent.connections >= 1  # A's checks did ask its Prometheus
        assert "error rate is" in _alerts(slack_api, FAST)[0]
        # A only paused itself, its metrics being inconclusive (its Prometheus never answers)
        assert all("inconclusive" in text for text in _alerts(slack_api, SLOW))
    finally:
        try:
            delete_webhook(kube_admin, webhook_name)
        except k8s.ApiException as error:
            if error.status != 404:
                raise
        webhook.stop()
        silent.stop()


# ---------------------------------------------------------------- the apps


def _apps_file(apps: Apps, slow_prometheus: str, fast_prometheus: str) -> dict[str, Any]:
    def app(name: str, namespace: str, prometheus: str) -> dict[str, Any]:
        return {
            "namespace": namespace,
            "workload": name,
            "slack_channel": RELEASES.id,
            "plan": "isolated",
            "router": {
                "provider": "istio",
                "virtual_service": name,
                "destination_rule": name,
                "host": name,
            },
            "metrics": {**METRICS, "prometheus_url": prometheus},
        }

    return {
        "plans": {"isolated": [{"weight": 10, "duration": "10m"}]},
        "apps": {
            SLOW: app(SLOW, apps.slow_namespace, slow_prometheus),
            FAST: app(FAST, apps.fast_namespace, fast_prometheus),
        },
    }


def _virtual_service(app: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": app},
        "spec": {
            "hosts": [app],
            "http": [{"name": "main", "route": [{"destination": {"host": app}}]}],
        },
    }


def _service_account_token(api: k8s.ApiClient, namespace: str, binding: str) -> str:
    """A ServiceAccount for the bot, bound to cluster-admin, and a token of it."""
    core = k8s.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": BOT_ACCOUNT}})
    k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding(
        {
            "metadata": {"name": binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": BOT_ACCOUNT, "namespace": namespace}],
        }
    )
    request = core.create_namespaced_service_account_token(
        BOT_ACCOUNT, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    return str(request.status.token)


# ---------------------------------------------------------------- traffic and read-backs


def _serve(exporter: MetricsExporter, namespace: str, *, canary_errors: float) -> None:
    exporter.set_traffic(
        app=FAST, version="v1", track="stable", qps=60, p99_s=0.1, namespace=namespace
    )
    exporter.set_traffic(
        app=FAST, version="v2", track="canary", qps=20, error_ratio=canary_errors, p99_s=0.12,
        namespace=namespace,
    )  # fmt: skip


def _first_bad_sample(prometheus: PrometheusServer, namespace: str) -> float:
    """When Prometheus first holds a canary 5xx sample (monotonic seconds)."""
    errors = f'sum(http_requests_total{{namespace="{namespace}",track="canary",code=~"5.."}})'
    client = prometheus.client()
    started = time.monotonic()
    return started + wait_until(  # wait_until returns the seconds it waited
        lambda: bool(client.custom_query(errors)), timeout_s=10, what="canary errors",
        interval_s=0.05,
    )  # fmt: skip


def _release(client: redis.Redis, app: str) -> Release:
    release_id = client.get(f"rb:active:{app}")
    if release_id is None:  # finished: the newest record of the app
        records = [client.hget(key, "json") for key in client.keys("rb:release:*")]
        found = [Release.model_validate_json(r) for r in records if r]
        return next(release for release in found if release.app == app)
    record = client.hget(f"rb:release:{release_id}", "json")
    assert record is not None
    return Release.model_validate_json(record)


def _checked_once(client: redis.Redis, app: str) -> bool:
    if client.get(f"rb:active:{app}") is None:
        return False
    release = _release(client, app)
    return release.phase is Phase.RUNNING and release.checks_passed >= 1


def _past_start(client: redis.Redis, app: str) -> bool:
    if client.get(f"rb:active:{app}") is None:
        return False
    release = _release(client, app)
    return release.phase in (Phase.RUNNING, Phase.PAUSED) and release.card_ts is not None


def _route(api: k8s.ApiClient, namespace: str, app: str) -> dict[str, Any]:
    objects = k8s.CustomObjectsApi(api)
    found: dict[str, Any] = objects.get_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "virtualservices", app
    )
    return found


def _weights(api: k8s.ApiClient, namespace: str, app: str) -> tuple[int, int]:
    """(stable, canary) weights of the VirtualService's routes, as the apiserver has them."""
    shares = {"stable": 0, "canary": 0}
    for http in _route(api, namespace, app)["spec"]["http"]:
        destinations = http.get("route", [])
        for entry in destinations:
            subset = entry["destination"].get("subset", "stable")
            if http.get("match"):
                continue  # the header route to the canary carries no public traffic
            shares[subset] += entry.get("weight", 100 if len(destinations) == 1 else 0)
    return shares["stable"], shares["canary"]


def _drift(api: k8s.ApiClient, namespace: str, webhook: HangingWebhook) -> bool:
    """Set A's public route to 50/50 as a person would (the webhook lets the admin through);
    True once the webhook has seen that write, i.e. the apiserver calls it."""
    seen_before = len(webhook.seen)
    route = _route(api, namespace, SLOW)
    for http in route["spec"]["http"]:
        if http.get("match"):
            continue
        for entry in http.get("route", []):
            entry["weight"] = 50
    k8s.CustomObjectsApi(api).replace_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "virtualservices", SLOW, route
    )
    return len(webhook.seen) > seen_before and _weights(api, namespace, SLOW) == (50, 50)


def _alerts(slack: SlackStandIn, app: str) -> list[str]:
    """Channel posts about `app` that are neither a card nor an approval request."""
    return [
        str(message.get("text", ""))
        for message in slack.messages(RELEASES.id)
        if not is_card(message) and app in str(message.get("text", ""))
    ]
