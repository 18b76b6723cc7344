"""Several bot replicas on one Redis: three real `release-bot serve` processes share one Redis,
one apiserver and one Slack stand-in, and drive 50 canary releases at once, started from signed
slash commands spread over the three. Every release must finish by itself, each transition must
be applied exactly once (by whichever replica held the release's lease), and Slack must get each
message exactly once. Stages are compressed to a second and the scheduler ticks every 0.25 s."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle
from pathlib import Path
from typing import Any

import redis
import yaml
from kubernetes import client as k8s

from bot.core.release import Phase, Release
from bot.kube.client import DEPLOYMENTS, VIRTUAL_SERVICES
from tests.infra.kube import KubeCluster
from tests.infra.processes import wait_until
from tests.infra.redis_server import RedisServer
from tests.infra.release_world import ACK_LIMIT_S
from tests.infra.slack import BOT_READY_TIMEOUT_S, BotProcess, LaunchBot
from tests.infra.slack_requests import ALICE, RELEASES, SignedRequest, SlackRequests
from tests.infra.slack_standin import SlackStandIn
from tests.kube_objects import Cluster, stable_deployment

REPLICAS = 3
APPS = tuple(f"app-{number:02d}" for number in range(50))
PLAN = [{"weight": 10, "duration": "1s"}, {"weight": 50, "duration": "1s"}]
"""Timed stages without approval; the apps file appends the 100 % stage (duration 0)."""
SCHEDULER = "release-bot"
EXPECTED_TRAIL = (
    ("start", ALICE.id),
    ("CanaryReady", SCHEDULER),
    ("StageTimerElapsed", SCHEDULER),  # 10 %
    ("StageTimerElapsed", SCHEDULER),  # 50 %
    ("StageTimerElapsed", SCHEDULER),  # 100 %: on to promotion
    ("PromotionDone", SCHEDULER),
)
"""Each release's audit trail: (action, actor), each applied once, in this order."""
THREAD_REPLIES = 7  # started, preflight, a stage change per stage, promoting, released
FINISH_TIMEOUT_S = 240.0  # a run takes about 50 s; a busy machine may take a few times longer


def test_three_replicas_drive_50_releases_each_transition_and_message_once(
    *,
    kube_cluster: KubeCluster,
    kube_admin: k8s.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    slack_api: SlackStandIn,
    slack_requests: SlackRequests,
    launch_bot: LaunchBot,
    tmp_path: Path,
) -> None:
    cluster = Cluster(kube_admin, namespace)
    _install_apps(cluster)
    config = tmp_path / "apps.yaml"
    config.write_text(yaml.safe_dump(_apps_file(namespace)))
    environment = {
        "REDIS_URL": redis_server.url,
        "RELEASE_BOT_CONFIG": str(config),
        "KUBECONFIG": str(kube_cluster.kubeconfig()),
        "RELEASE_BOT_TICK_SECONDS": "0.25",
        "RELEASE_BOT_LEASE_SECONDS": "3",
    }
    bots = [launch_bot(extra_env=environment, wait_ready=False) for _ in range(REPLICAS)]
    wait_until(
        lambda: all(bot.is_ready() for bot in bots),
        timeout_s=BOT_READY_TIMEOUT_S,
        what=f"{REPLICAS} bot replicas",
    )

    started = time.monotonic()
    slowest_ack = _start_all_at_once(bots, slack_requests)
    wait_until(lambda: len(slack_api.responses()) >= len(APPS), timeout_s=30, what="50 answers")
    assert sorted(response["text"] for response in slack_api.responses()) == [
        f":white_check_mark: Started a canary of {app} v2." for app in APPS
    ]

    try:
        finished = wait_until(
            lambda: _all_succeeded_and_told(redis_client),
            timeout_s=FINISH_TIMEOUT_S,
            what="every release SUCCEEDED with its Slack messages posted",
        )
    except TimeoutError:
        raise AssertionError(_unfinished(redis_client)) from None
    took_s = time.monotonic() - started
    releases = _releases(redis_client)
    assert sorted(releases) == list(APPS)
    assert all(release.phase is Phase.SUCCEEDED for release in releases.values())
    _assert_stable_runs_v2(cluster)

    applied = _assert_each_transition_once(redis_client, releases)
    _assert_each_message_once(slack_api, releases)
    by_replica = _transitions_by_replica(bots)
    assert sum(by_replica, Counter()) == applied, "the replicas' logs and the audit trail differ"
    scheduled = [
        sum(n for (_, action, _), n in replica.items() if action != "start")
        for replica in by_replica
    ]
    assert all(scheduled), f"a replica applied no scheduler transition: {scheduled}"
    print(
        f"{len(APPS)} releases on {REPLICAS} replicas: acknowledged in at most {slowest_ack:.3f} s,"
        f" all SUCCEEDED {took_s:.1f} s after the first command ({finished:.1f} s of waiting);"
        f" scheduler transitions applied per replica: {scheduled}"
    )


# ---------------------------------------------------------------- the world


def _install_apps(cluster: Cluster) -> None:
    """Each app its own stable Deployment (1 or 2 replicas) and VirtualService, rolled out."""
    for number, app in enumerate(APPS):
        image = f"registry.example/{app}:v1"
        cluster.create(
            DEPLOYMENTS, stable_deployment(name=app, replicas=1 + number % 2, image=image)
        )
        cluster.create(VIRTUAL_SERVICES, _virtual_service(app))
    cluster.rolled_out(*APPS)


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


def _apps_file(namespace: str) -> dict[str, Any]:
    return {
        "plans": {"quick": PLAN},
        "apps": {
            app: {
                "namespace": namespace,
                "workload": app,
                "slack_channel": RELEASES.id,
                "plan": "quick",
                "router": _istio_router(app),
            }
            for app in APPS
        },
    }


def _istio_router(app: str) -> dict[str, str]:
    return {"provider": "istio", "virtual_service": app, "destination_rule": app, "host": app}


def _start_all_at_once(bots: list[BotProcess], requests: SlackRequests) -> float:
    """`/release canary app-NN v2` for every app, all at once, spread round-robin over the bots;
    each must be acknowledged in time. Returns the slowest acknowledgement in seconds."""
    commands = [requests.slash_command(f"canary {app} v2", user=ALICE) for app in APPS]
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        acks = list(pool.map(_post_timed, cycle(bots), commands))
    assert [status for status, _ in acks] == [200] * len(APPS)
    slowest = max(seconds for _, seconds in acks)
    assert slowest < ACK_LIMIT_S, f"a command was acknowledged after {slowest:.2f} s"
    return slowest


def _post_timed(bot: BotProcess, request: SignedRequest) -> tuple[int, float]:
    """(HTTP status, seconds to the acknowledgement) of one request as Slack posts it."""
    began = time.monotonic()
    response = bot.client.post_events(request)
    return response.status_code, time.monotonic() - began


def _releases(client: redis.Redis) -> dict[str, Release]:
    """Every release record in Redis, by app (each app has one release in this test)."""
    records = [client.hget(key, "json") for key in client.keys("rb:release:*")]
    releases = [Release.model_validate_json(record) for record in records if record]
    return {release.app: release for release in releases}


def _all_succeeded_and_told(client: redis.Redis) -> bool:
    releases = _releases(client).values()
    return (
        len(releases) == len(APPS)
        and all(release.phase is Phase.SUCCEEDED for release in releases)
        and client.scard("rb:undelivered") == 0
    )


def _unfinished(client: redis.Redis) -> str:
    """Which releases had not finished (or told Slack everything) in time, by phase."""
    by_phase: dict[str, list[str]] = {}
    for app, release in sorted(_releases(client).items()):
        if release.phase is not Phase.SUCCEEDED or release.outbox or release.card_stale:
            by_phase.setdefault(f"{release.phase} (stage {release.stage_index})", []).append(app)
    return f"not finished after {FINISH_TIMEOUT_S:.0f} s: {by_phase}"


# ---------------------------------------------------------------- what must hold


def _assert_stable_runs_v2(cluster: Cluster) -> None:
    """Every stable Deployment runs v2 and no canary is left."""
    deployments = cluster.of(DEPLOYMENTS).list_matching(label_selector="")
    images = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in deployments
    }
    assert images == {app: f"registry.example/{app}:v2" for app in APPS}


def _assert_each_transition_once(
    client: redis.Redis, releases: dict[str, Release]
) -> Counter[tuple[str, str, int | None]]:
    """Each app's audit trail is exactly the expected transitions, each applied once by the
    expected actor and nothing refused; returns them counted by (release, action, stage)."""
    applied: Counter[tuple[str, str, int | None]] = Counter()
    for app, release in releases.items():
        entries = [json.loads(line) for line in client.lrange(f"rb:history:{app}", 0, -1)]
        trail = [(entry["action"], entry["actor"], entry["outcome"]) for entry in entries]
        expected = [(action, actor, "applied") for action, actor in EXPECTED_TRAIL]
        assert trail == expected, (app, trail)
        assert {entry["release_id"] for entry in entries} == {release.id}
        applied.update((release.id, entry["action"], entry["stage"]) for entry in entries)
    return applied


def _assert_each_message_once(slack: SlackStandIn, releases: dict[str, Release]) -> None:
    """One card per release, updated in place; each thread reply posted once."""
    cards = slack.messages(RELEASES.id)
    card_posts = [c for c in slack.calls("chat.postMessage") if not c.params.get("thread_ts")]
    assert len(cards) == len(card_posts) == len(APPS), [card["text"] for card in cards]
    cards_by_ts = {card["ts"]: card for card in cards}
    assert set(cards_by_ts) == {release.card_ts for release in releases.values()}
    posted = Counter(
        (call.params.get("thread_ts"), call.params.get("text"))
        for call in slack.calls("chat.postMessage")
    )
    assert [key for key, count in posted.items() if count > 1] == []
    for app, release in releases.items():
        assert release.card_ts is not None and release.outbox == ()
        assert cards_by_ts[release.card_ts]["text"].startswith(f"{app} v2: ✅")
        texts = [reply["text"] for reply in slack.thread(RELEASES.id, release.card_ts)]
        assert len(texts) == len(set(texts)) == THREAD_REPLIES, (app, texts)
        assert f"started a canary of {app} v2" in texts[0], texts
        assert f"{app} v2 is released" in texts[-1], texts
    updated = {call.params["ts"] for call in slack.calls("chat.update")}
    assert updated == {release.card_ts for release in releases.values()}


def _transitions_by_replica(bots: list[BotProcess]) -> list[Counter[tuple[str, str, int | None]]]:
    """What each replica's log says it applied, counted by (release, action, stage)."""
    counted = []
    for bot in bots:
        lines = [json.loads(line) for line in bot.log_text().splitlines() if line.startswith("{")]
        counted.append(
            Counter(
                (line["release"], line["action"], line["stage"])
                for line in lines
                if line.get("event") == "transition_applied"
            )
        )
    return counted
