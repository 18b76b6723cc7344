"""Verification Jobs in the cluster: the reconciler (bot.kube.reconciler) runs the Job a
release's gate names and reads how it ends; any strategy's reconcile can do the same.

The Job is `job_name(app, release, stage)` (bot.core.verification), so whichever replica
reconciles the release finds the one Job instead of starting another: creating it is a no-op once
it exists. It runs in the app's namespace with the app's ServiceAccount (the apps file's
verification.service_account, else the stable Deployment's serviceAccountName, else `default`),
never the bot's: the bot only names it in the pod template. Its pods are told what to test by
environment variables (VERIFICATION_ENV). `activeDeadlineSeconds` is the stage's timeout, so the
Job controller stops a Job that runs too long; `backoffLimit` is 0 unless the template sets it;
`ttlSecondsAfterFinished` removes a finished Job the bot did not (KEEP_FINISHED_S); the bot
deletes the release's Jobs when the release ends (`remove`).

When a Job failed, the last lines of its failed pod's log are read through the `log`
subresource; when the log cannot be read (no kubelet answers, the pod is gone), the pod's
container states stand in for it, so the thread always says something of why.
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client as k8s

from bot.core.apps import AppConfig, GatewayApiRouter, IstioRouter, ReplicasRouter
from bot.core.errors import PermanentError, ReleaseBotError
from bot.core.release import Release, ReleaseKind
from bot.core.verification import Verification, VerificationState, VerificationStatus
from bot.kube.client import DEPLOYMENTS, JOBS, PODS, NamespacedResources, Object
from bot.kube.routers import DEFAULT_OPTIONS
from bot.kube.workloads import MANAGED_BY, MANAGED_BY_LABEL

RELEASE_LABEL = "release-bot.io/release"
KEEP_FINISHED_S = 3600
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
_SUCCEEDED_CONDITIONS = ("SuccessCriteriaMet", "Complete")
_FAILED_CONDITIONS = ("FailureTarget", "Failed")

VERIFICATION_ENV = {
    "RELEASE_ID": "the release's id",
    "RELEASE_APP": "the app's name in the apps file",
    "RELEASE_NAMESPACE": "the app's namespace",
    "RELEASE_VERSION": "the version being released",
    "RELEASE_PREVIOUS_VERSION": "the version stable runs",
    "RELEASE_STAGE": "the stage the Job gates (1 for the first)",
    "RELEASE_STAGE_WEIGHT": "that stage's canary weight in percent",
    "RELEASE_TARGET_URL": "where to send test traffic: green's preview Service for a blue-green "
    "release and a hybrid one's preview, else the canary's Service where the router has one "
    "(gateway-api), else the app's Service or mesh host",
    "RELEASE_CANARY_HEADER": "`name: value` of the header that reaches the canary while the "
    "release routes by header (istio, gateway-api, not on a preview); empty otherwise",
}
"""The variables every container of a verification Job gets, and what each holds."""


class VerificationJobs:
    """The verification Jobs of one app."""

    def __init__(self, api: k8s.ApiClient, app: AppConfig) -> None:
        self._app = app
        self._jobs = NamespacedResources(api, JOBS, app.namespace)
        self._pods = NamespacedResources(api, PODS, app.namespace)
        self._deployments = NamespacedResources(api, DEPLOYMENTS, app.namespace)

    def run(self, release: Release) -> VerificationStatus:
        """Create the Job of the release's gate unless it exists, and say how it stands."""
        run = release.verification
        assert run is not None  # only called while a gate runs its Job
        verification = run.verification
        job = self._jobs.reconcile(
            run.job_name,
            lambda current: current or self._job(release, run.job_name, verification),
        )
        return self._status(job, verification)

    def remove(self, release_id: str) -> None:
        """Delete the release's Jobs (and, in the background, their pods)."""
        for job in self._jobs.list_matching(label_selector=f"{RELEASE_LABEL}={release_id}"):
            self._jobs.delete(job["metadata"]["name"])

    def _job(self, release: Release, name: str, verification: Verification) -> Object:
        spec = copy.deepcopy(dict(self._template(verification)))
        spec.setdefault("backoffLimit", 0)
        spec["activeDeadlineSeconds"] = verification.timeout_s
        spec["ttlSecondsAfterFinished"] = KEEP_FINISHED_S
        labels = {MANAGED_BY_LABEL: MANAGED_BY, RELEASE_LABEL: release.id}
        pod = spec.setdefault("template", {})
        pod.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        pod_spec = pod["spec"]
        pod_spec.setdefault("restartPolicy", "Never")
        pod_spec["serviceAccountName"] = self._service_account()
        env = [{"name": key, "value": value} for key, value in self._env(release).items()]
        for container in pod_spec["containers"]:
            given = [e for e in container.get("env", []) if e.get("name") not in VERIFICATION_ENV]
            container["env"] = [*given, *env]
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": self._app.namespace, "labels": labels},
            "spec": spec,
        }

    def _template(self, verification: Verification) -> Any:
        if verification.template is not None:
            return verification.template
        template = self._app.verification.jobs.get(verification.job or "")
        if template is None:
            raise PermanentError(
                f"app {self._app.name} has no verification Job template {verification.job!r} "
                "(apps file: verification.jobs)"
            )
        return template

    def _service_account(self) -> str:
        """The app's, never the bot's: the apps file's, else the stable Deployment's."""
        if self._app.verification.service_account:
            return self._app.verification.service_account
        stable = self._deployments.get(self._app.workload)
        pod_spec = (stable or {}).get("spec", {}).get("template", {}).get("spec", {})
        return str(pod_spec.get("serviceAccountName") or "default")

    def _env(self, release: Release) -> dict[str, str]:
        namespace = self._app.namespace
        header = DEFAULT_OPTIONS.header
        return {
            "RELEASE_ID": release.id,
            "RELEASE_APP": release.app,
            "RELEASE_NAMESPACE": namespace,
            "RELEASE_VERSION": release.version,
            "RELEASE_PREVIOUS_VERSION": release.previous_version or "",
            "RELEASE_STAGE": str(release.stage_index + 1),
            "RELEASE_STAGE_WEIGHT": str(release.stage.weight),
            "RELEASE_TARGET_URL": self._target_url(release),
            "RELEASE_CANARY_HEADER": (
                f"{header.name}: {header.value}" if self._routes_by_header(release) else ""
            ),
        }

    def _target_url(self, release: Release) -> str:
        router, namespace = self._app.router, self._app.namespace
        if release.previews(release.stage_index):
            return (
                f"http://{self._app.bluegreen.preview_service_of(self._app.name)}.{namespace}.svc"
            )
        if isinstance(router, GatewayApiRouter):
            return f"http://{router.canary_service}.{namespace}.svc"
        if isinstance(router, IstioRouter):
            return f"http://{router.host}"
        service = router.service if isinstance(router, ReplicasRouter) else None
        return f"http://{service or self._app.workload}.{namespace}.svc"

    def _routes_by_header(self, release: Release) -> bool:
        """A blue-green release, or a hybrid one's preview, reaches green by its Service only."""
        if release.kind is ReleaseKind.BLUE_GREEN or release.previews(release.stage_index):
            return False
        return isinstance(self._app.router, IstioRouter | GatewayApiRouter)

    def _status(self, job: Object, verification: Verification) -> VerificationStatus:
        name = job["metadata"]["name"]
        listed = job.get("status", {}).get("conditions", [])
        conditions = {c["type"]: c for c in listed if c["status"] == "True"}
        if any(kind in conditions for kind in _SUCCEEDED_CONDITIONS):
            return VerificationStatus(job_name=name, state=VerificationState.SUCCEEDED)
        failed = next((conditions[k] for k in _FAILED_CONDITIONS if k in conditions), None)
        if failed is None:
            return VerificationStatus(job_name=name, state=VerificationState.RUNNING)
        reason = failed.get("message") or failed.get("reason") or "the Job failed"
        return VerificationStatus(
            job_name=name,
            state=VerificationState.FAILED,
            reason=str(reason),
            log_tail=tuple(self._log_tail(name, verification.log_lines)),
        )

    def _log_tail(self, job_name: str, lines: int) -> list[str]:
        """The failed pod's last log lines; its container states when the log cannot be read."""
        pods = self._pods.list_matching(label_selector=f"{JOB_NAME_LABEL}={job_name}")
        if not pods:
            return []
        pod = max(pods, key=_failed_first)
        container = _failed_container(pod)
        try:
            return self._pods.log_tail(pod["metadata"]["name"], container=container, lines=lines)
        except ReleaseBotError as error:
            states = _container_states(pod)
            return [f"(the pod's log could not be read: {error})", *states][: lines + 1]


def _failed_first(pod: Object) -> tuple[bool, str]:
    """Sort key: a failed pod before others, then the newest."""
    failed = pod.get("status", {}).get("phase") == "Failed"
    return failed, str(pod["metadata"].get("creationTimestamp", ""))


def _failed_container(pod: Object) -> str:
    """The first container that ended with a non-zero exit code, else the first one."""
    for status in pod.get("status", {}).get("containerStatuses", []):
        terminated = status.get("state", {}).get("terminated") or {}
        if terminated.get("exitCode", 0) != 0:
            return str(status["name"])
    return str(pod["spec"]["containers"][0]["name"])


def _container_states(pod: Object) -> list[str]:
    lines = []
    for status in pod.get("status", {}).get("containerStatuses", []):
        terminated = status.get("state", {}).get("terminated")
        if terminated:
            ended = terminated.get("reason", "terminated")
            message = f": {terminated['message']}" if terminated.get("message") else ""
            code = terminated.get("exitCode")
            lines.append(f"container {status['name']}: {ended}, exit code {code}{message}")
    return lines
