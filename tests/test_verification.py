"""Verification Jobs end to end: a real `release-bot serve` runs a canary whose stage names a Job;
the real Job controller runs it and kwok ends its pod (Succeeded, or Failed for pods labelled so,
tests/infra/kwok_config.py) and serves its log through the apiserver's `pods/log`. Traffic,
Jobs, pods and Deployments are read back from the apiserver as the admin, not through the
bot's code. The gateway-api router is used: its weights are plain numbers in the HTTPRoute.

Run by pytest; the failing case prints the time from the Job's failure to 100 % stable
(RELEASE_BOT_TEST_TIMINGS=1 to see it, or -s).
"""

from __future__ import annotations

import time
from typing import Any

from bot.core.release import Phase
from bot.kube.client import DEPLOYMENTS, HTTP_ROUTES, JOBS, PODS
from bot.kube.routers import HEADER_ENTRY_NAME
from bot.slack.cards import ACTION_ROLLBACK
from tests.infra.kwok_config import LOG_LINES, smoke_job
from tests.infra.processes import wait_until
from tests.infra.release_world import APP, World, is_card
from tests.infra.slack_requests import ALICE, RELEASES

APP_ACCOUNT = "shop-api-runner"
SHORT_LEASE = {"RELEASE_BOT_LEASE_SECONDS": "2"}  # a killed bot's claim lapses at once
GATED_PLAN = (
    "    - {weight: 25, duration: 2s}\n"
    "    - {weight: 50, duration: 1m, verification: {job: smoke, timeout: 1m, log_lines: 3}}\n"
)


def with_app_account(world: World) -> None:
    """The stable Deployment runs as the app's own ServiceAccount (as the team set it up)."""
    world.cluster.of(DEPLOYMENTS).merge_patch(
        APP, {"spec": {"template": {"spec": {"serviceAccountName": APP_ACCOUNT}}}}
    )
    world.cluster.rolled_out(APP)


def route_weights(world: World) -> dict[str, int]:
    """The managed HTTPRoute rule's backend weights, read from the apiserver."""
    route = world.cluster.read(HTTP_ROUTES, APP)
    (rule,) = [r for r in route["spec"]["rules"] if r.get("name") != HEADER_ENTRY_NAME]
    return {ref["name"]: ref.get("weight", 1) for ref in rule["backendRefs"]}


def stable_only(weights: dict[str, int]) -> bool:
    return weights.get("shop-api-canary", 0) == 0 and weights.get("shop-api-stable", 0) > 0


def job_condition(world: World, name: str, *kinds: str) -> bool:
    job = world.cluster.of(JOBS).get(name)
    conditions = (job or {}).get("status", {}).get("conditions", [])
    return any(c["type"] in kinds and c["status"] == "True" for c in conditions)


def the_job(world: World) -> dict[str, Any]:
    jobs = world.cluster.of(JOBS).list_matching(label_selector="")
    assert len(jobs) == 1, [job["metadata"]["name"] for job in jobs]
    return jobs[0]


def test_a_passing_verification_job_holds_the_traffic_then_the_stage_widens(
    world_for: Any,
) -> None:
    world: World = world_for(
        "gateway-api", GATED_PLAN, verification=smoke_job(fails=False, runs_for="3s")
    )
    with_app_account(world)
    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")

    verifying = world.wait_for(Phase.VERIFYING, 1)
    assert verifying.verification is not None
    name = verifying.verification.job_name
    assert name == f"{APP}-verify-{verifying.id}-1"
    wait_until(lambda: world.cluster.of(JOBS).get(name) is not None, timeout_s=10, what="the Job")
    job = the_job(world)
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == APP_ACCOUNT  # the app's, never the bot's
    assert job["spec"]["activeDeadlineSeconds"] == 60
    assert job["spec"]["backoffLimit"] == 0
    env = {e["name"]: e["value"] for e in pod_spec["containers"][0]["env"]}
    assert env["RELEASE_VERSION"] == "v2"
    assert env["RELEASE_STAGE_WEIGHT"] == "50"
    assert env["RELEASE_TARGET_URL"] == f"http://shop-api-canary.{world.cluster.namespace}.svc"
    pods: list[dict[str, Any]] = []

    def job_pod_made() -> bool:
        pods[:] = world.cluster.of(PODS).list_matching(label_selector=f"job-name={name}")
        return bool(pods)

    wait_until(job_pod_made, timeout_s=10, what="the Job's pod")
    assert [p["spec"]["serviceAccountName"] for p in pods] == [APP_ACCOUNT]

    # While the Job runs, the canary keeps the 25 % it had: the stage has not widened.
    assert route_weights(world) == {"shop-api-stable": 75, "shop-api-canary": 25}
    assert not job_condition(world, name, "Complete", "SuccessCriteriaMet")

    world.wait_for(Phase.RUNNING, 1)
    assert job_condition(world, name, "Complete", "SuccessCriteriaMet")
    wait_until(
        lambda: route_weights(world) == {"shop-api-stable": 50, "shop-api-canary": 50},
        timeout_s=10,
        what="50/50 after the Job passed",
    )
    world.wait_thread(f"verification Job `{name}` passed")

    # The release ends (a rollback here) and takes its Job with it.
    world.post(world.click(ACTION_ROLLBACK))
    world.wait_for(Phase.ROLLED_BACK)
    assert world.cluster.of(JOBS).get(name) is None


def test_a_failing_verification_job_rolls_the_canary_back_with_its_log_lines(
    world_for: Any,
) -> None:
    world: World = world_for(
        "gateway-api", GATED_PLAN, verification=smoke_job(fails=True, runs_for="1s")
    )
    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")
    verifying = world.wait_for(Phase.VERIFYING, 1)
    assert verifying.verification is not None
    name = verifying.verification.job_name

    wait_until(
        lambda: job_condition(world, name, "FailureTarget", "Failed"),
        timeout_s=20,
        what="the Job failing",
        interval_s=0.02,
    )
    failed_at = time.monotonic()
    wait_until(
        lambda: stable_only(route_weights(world)),
        timeout_s=20,
        what="100 % stable",
        interval_s=0.02,
    )
    stable_at = time.monotonic()
    wait_until(
        lambda: world.cluster.of(DEPLOYMENTS).get("shop-api-canary") is None,
        timeout_s=20,
        what="the canary removed",
        interval_s=0.02,
    )
    gone_at = time.monotonic()
    print(
        f"\nverification Job failed -> 100 % stable: {stable_at - failed_at:.2f} s, "
        f"-> canary Deployment deleted: {gone_at - failed_at:.2f} s"
    )

    done = world.wait_for(Phase.ROLLED_BACK)
    assert done.outcome_by is None  # the bot rolled back by itself
    assert done.outcome_reason is not None and name in done.outcome_reason
    assert stable_only(route_weights(world))
    assert world.cluster.of(DEPLOYMENTS).get("shop-api-canary") is None
    assert world.cluster.of(JOBS).get(name) is None  # removed with the release

    world.wait_thread("of verification Job")
    thread = "\n".join(world.thread_texts())
    assert f"verification Job `{name}` failed" in thread
    for line in LOG_LINES[-3:]:  # log_lines: 3, served by kwok through pods/log
        assert line in thread
    assert LOG_LINES[0] not in thread
    alerts = [m for m in world.slack.messages(RELEASES.id) if not is_card(m)]
    assert any(name in alert["text"] and "rolling back" in alert["text"] for alert in alerts)


def test_a_restarted_bot_takes_up_the_running_job_instead_of_starting_another(
    world_for: Any,
) -> None:
    world: World = world_for(
        "gateway-api",
        GATED_PLAN,
        verification=smoke_job(fails=False, runs_for="4s"),
        bot_env=SHORT_LEASE,
    )
    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")
    verifying = world.wait_for(Phase.VERIFYING, 1)
    assert verifying.verification is not None
    name = verifying.verification.job_name
    wait_until(lambda: world.cluster.of(JOBS).get(name) is not None, timeout_s=10, what="the Job")
    uid = the_job(world)["metadata"]["uid"]

    world.kill_bot()  # mid-verification: the record in Redis says which Job and since when
    world.relaunch(extra_env=SHORT_LEASE)

    running = world.wait_for(Phase.RUNNING, 1)
    assert the_job(world)["metadata"]["uid"] == uid  # the same Job, taken up, not a second one
    assert running.stage_started_at is not None
    assert running.stage_started_at > verifying.verification.started_at
    wait_until(
        lambda: route_weights(world) == {"shop-api-stable": 50, "shop-api-canary": 50},
        timeout_s=10,
        what="50/50 after the Job passed",
    )
