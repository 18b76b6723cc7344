"""Verification Jobs: a test a release runs at a gate, before the traffic behind it widens.

Used by plans (a stage's `verification`, bot.core.plan), the release record (the run in
progress), the state machine (which holds traffic while a Job runs), the release service's gate
(bot.application.verification_gate, which turns a Job's status into an event) and the cluster
side (bot.kube.verification, which runs the Job). Any strategy's gate may use it: the machine
needs only a Verification to start, a VerificationRun to hold, and a VerificationStatus to judge.
Pure data and rules, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

DEFAULT_TIMEOUT_S = 600
DEADLINE_GRACE_S = 15
"""The Job's own activeDeadlineSeconds ends it at the timeout, and its failure then brings its
log lines; the bot's deadline, this much later, covers a Job that never got that far (no pod
scheduled, no Job controller)."""
DEFAULT_LOG_LINES = 20
MAX_LOG_LINES = 100
_JOB_NAME_MAX = 63  # the Job controller puts the name in a label (job-name) on its pods


@dataclass(frozen=True, slots=True)
class Verification:
    """What a gate runs: the app's Job template named `job` (apps.NAME.verification.jobs), or
    an inline `template` (a Job's spec), for at most `timeout_s`; on failure the last
    `log_lines` lines of its pod's log go to the release's thread."""

    job: str | None = None
    template: Mapping[str, Any] | None = field(default=None, hash=False)
    timeout_s: int = DEFAULT_TIMEOUT_S
    log_lines: int = DEFAULT_LOG_LINES

    def __post_init__(self) -> None:
        if (self.job is None) == (self.template is None):
            raise ValueError("a verification names exactly one of 'job' and 'template'")
        if self.timeout_s <= 0:
            raise ValueError(f"a verification timeout must be above 0 s, got {self.timeout_s}")
        if not 1 <= self.log_lines <= MAX_LOG_LINES:
            raise ValueError(f"log_lines must be 1..{MAX_LOG_LINES}, got {self.log_lines}")

    @property
    def label(self) -> str:
        """How people read which test runs: `Job template smoke` or `an inline Job`."""
        return f"Job template {self.job}" if self.job else "an inline Job"


class VerificationState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class VerificationStatus:
    """What the cluster says of one verification Job: still running, or how it ended, with
    the last lines of its pod's log (read once it failed)."""

    job_name: str
    state: VerificationState
    reason: str = ""
    log_tail: tuple[str, ...] = ()


def job_name(app: str, release_id: str, stage_index: int) -> str:
    """The one name of the Job that verifies stage `stage_index` of release `release_id`: a
    second replica, or the same one after a restart, finds the Job instead of starting another."""
    suffix = f"-verify-{release_id}-{stage_index}"
    prefix = app[: _JOB_NAME_MAX - len(suffix)].rstrip("-")
    if len(prefix) + len(suffix) <= _JOB_NAME_MAX and prefix:
        return prefix + suffix
    digest = hashlib.sha256(f"{app}/{release_id}/{stage_index}".encode()).hexdigest()[:20]
    return f"verify-{digest}"


_SERVICE_ACCOUNT_FIELDS = ("serviceAccountName", "serviceAccount")
_BOT_SET_JOB_FIELDS = ("activeDeadlineSeconds", "ttlSecondsAfterFinished")


def template_problems(template: object) -> list[str]:
    """What keeps `template` (a Job's spec, as in a Job manifest) from running as a
    verification Job; empty when it can. The bot sets the ServiceAccount, the deadline and the
    clean-up itself, so the template must leave those out."""
    if not isinstance(template, Mapping):
        return ["a Job template is a Job's spec: a mapping with 'template.spec.containers'"]
    pod = template.get("template")
    spec = pod.get("spec") if isinstance(pod, Mapping) else None
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list) or not containers:
        return ["needs 'template.spec.containers': a list of containers, each with name and image"]
    problems = [
        f"template.spec.containers[{index}] needs a 'name' and an 'image'"
        for index, container in enumerate(containers)
        if not (isinstance(container, Mapping) and container.get("name") and container.get("image"))
    ]
    assert isinstance(spec, Mapping)
    problems += [
        f"template.spec.{name} is set by the bot: the Job runs with the app's ServiceAccount "
        "(apps.NAME.verification.service_account, else the stable Deployment's); remove it"
        for name in _SERVICE_ACCOUNT_FIELDS
        if name in spec
    ]
    problems += [
        f"{name} is set by the bot (from the stage's timeout and the release's clean-up); remove it"
        for name in _BOT_SET_JOB_FIELDS
        if name in template
    ]
    return problems
