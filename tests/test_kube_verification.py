"""The verification Job runner (bot/kube/verification.py) against the real kube-apiserver, Job
controller and kwok (tests/infra/kwok_config.py ends the pods and serves their logs): a release
at the gate of its third stage (tests/releases.py, VERIFIED_PLAN) has its Job created once, read
as it ends, and removed; the Jobs and pods are read back as the admin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s

from bot.core.apps import AppConfig, ChannelRef, ReplicasRouter
from bot.core.machine import CanaryReady
from bot.core.plan import Plan, Stage
from bot.core.release import Phase
from bot.core.verification import Verification, VerificationState, VerificationStatus
from bot.kube.client import DEPLOYMENTS, JOBS
from bot.kube.verification import RELEASE_LABEL, VerificationJobs
from tests.infra.kwok_config import LOG_LINES, smoke_job
from tests.infra.processes import wait_until
from tests.kube_objects import Cluster, stable_deployment
from tests.releases import VERIFIED_JOB, VERIFIED_PLAN, run_in, start

APP_ACCOUNT = "shop-api-runner"


def app_config(namespace: str, verification: str) -> AppConfig:
    return AppConfig(
        name="shop-api",
        namespace=namespace,
        workload="shop-api",
        router=ReplicasRouter(provider="replicas"),
        slack_channel=ChannelRef("C0123ABCD"),
        plan=VERIFIED_PLAN,
        verification=json.loads(verification),
    )


@pytest.fixture
def cluster(kube_admin: k8s.ApiClient, namespace: str) -> Cluster:
    cluster = Cluster(kube_admin, namespace)
    stable = stable_deployment(replicas=1)
    stable["spec"]["template"]["spec"]["serviceAccountName"] = APP_ACCOUNT
    cluster.create(DEPLOYMENTS, stable)
    return cluster


def settle(jobs: VerificationJobs, state: VerificationState) -> VerificationStatus:
    release = run_in(Phase.VERIFYING).release
    seen: list[VerificationStatus] = []

    def reached() -> bool:
        seen[:] = [jobs.run(release)]
        return seen[0].state is state

    wait_until(reached, timeout_s=30, what=f"the Job {state}", interval_s=0.2)
    return seen[0]


def test_the_job_is_created_once_whoever_runs_it(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    app = app_config(cluster.namespace, smoke_job(fails=False, runs_for="2s"))
    release = run_in(Phase.VERIFYING).release
    one, other = VerificationJobs(kube_admin, app), VerificationJobs(kube_admin, app)

    assert one.run(release).state is VerificationState.RUNNING
    first = cluster.read(JOBS, VERIFIED_JOB)
    assert other.run(release).job_name == VERIFIED_JOB  # a second replica, or after a restart
    assert one.run(release).state is VerificationState.RUNNING
    again = cluster.read(JOBS, VERIFIED_JOB)
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    listed = cluster.of(JOBS).list_matching(label_selector=f"{RELEASE_LABEL}=rel-1")
    assert [job["metadata"]["uid"] for job in listed] == [first["metadata"]["uid"]]
    pod = first["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == APP_ACCOUNT
    assert pod["restartPolicy"] == "Never"
    assert (first["spec"]["activeDeadlineSeconds"], first["spec"]["backoffLimit"]) == (300, 0)
    assert first["spec"]["ttlSecondsAfterFinished"] == 3600

    assert settle(other, VerificationState.SUCCEEDED).log_tail == ()


def test_a_failed_job_says_why_with_its_last_log_lines(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    jobs = VerificationJobs(
        kube_admin, app_config(cluster.namespace, smoke_job(fails=True, runs_for="0s"))
    )

    failed = settle(jobs, VerificationState.FAILED)

    assert failed.reason == "Job has reached the specified backoff limit"
    assert failed.log_tail == LOG_LINES[-5:]  # log_lines: 5 of the stage's Verification


def test_an_unreadable_log_is_replaced_by_the_container_states(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    """A container kwok serves no log for: the apiserver's answer is an error, not lines."""
    verification = json.loads(smoke_job(fails=True, runs_for="0s"))
    container: dict[str, Any] = verification["jobs"]["smoke"]["template"]["spec"]["containers"][0]
    container["name"] = "unlogged"
    jobs = VerificationJobs(kube_admin, app_config(cluster.namespace, json.dumps(verification)))

    failed = settle(jobs, VerificationState.FAILED)

    first, *states = failed.log_tail
    assert first.startswith("(the pod's log could not be read: ")
    assert states == ["container unlogged: containerFailed, exit code 1: smoke checks failed"]


def test_remove_deletes_the_releases_jobs(kube_admin: k8s.ApiClient, cluster: Cluster) -> None:
    jobs = VerificationJobs(
        kube_admin, app_config(cluster.namespace, smoke_job(fails=False, runs_for="0s"))
    )
    jobs.run(run_in(Phase.VERIFYING).release)
    assert cluster.of(JOBS).get(VERIFIED_JOB) is not None

    jobs.remove("rel-1")
    jobs.remove("rel-1")  # again: nothing left, nothing fails

    assert cluster.of(JOBS).get(VERIFIED_JOB) is None


def test_a_job_past_its_timeout_is_stopped_by_the_job_controller(
    kube_admin: k8s.ApiClient, cluster: Cluster
) -> None:
    """The stage's timeout is the Job's activeDeadlineSeconds: its own controller ends it, and
    deletes its running pod with it, so there is no log left to read."""
    quick = Verification(job="smoke", timeout_s=2, log_lines=2)
    plan = Plan(name="quick", stages=(Stage(weight=10, duration_s=60, verification=quick),))
    run = start(plan=plan)
    run.accept(CanaryReady())
    app = app_config(cluster.namespace, smoke_job(fails=False, runs_for="5m"))
    jobs = VerificationJobs(kube_admin, app)
    seen: list[VerificationStatus] = []

    def ended() -> bool:
        seen[:] = [jobs.run(run.release)]
        return seen[0].state is not VerificationState.RUNNING

    wait_until(ended, timeout_s=30, what="the Job stopped at its deadline", interval_s=0.2)

    assert seen[0].state is VerificationState.FAILED
    assert seen[0].reason == "Job was active longer than specified deadline"
    assert seen[0].log_tail == ()
