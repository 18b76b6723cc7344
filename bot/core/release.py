"""The release record: everything the bot knows about one release, stored as JSON in Redis.

Built and changed by the state machine (bot.core.machine; the release service adds only the
break-glass `overrides`); read by the store, the reconciler
(through `desired_traffic`), the Slack adapter and the scheduler. Pure data, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NonNegativeFloat, model_validator

from bot.core.plan import Plan, Stage
from bot.core.verification import DEADLINE_GRACE_S, Verification

NonBlank = Annotated[str, Field(min_length=1, pattern=r"^\S+$")]


class ReleaseKind(StrEnum):
    """How the new version reaches users; bot.core.machine keeps one transition table per kind."""

    CANARY = "canary"
    BLUE_GREEN = "bluegreen"
    HYBRID = "hybrid"  # green beside blue and previewed, then canary stages onto it
    ARGO_CANARY = "argo-canary"  # an Argo Rollout's canary steps, driven through its fields
    ARGO_BLUE_GREEN = "argo-bluegreen"  # an Argo Rollout's blueGreen strategy, the same way

    @property
    def drives_argo(self) -> bool:
        """The release moves an Argo Rollout through Argo's own fields (bot.kube.argo)."""
        return self in {ReleaseKind.ARGO_CANARY, ReleaseKind.ARGO_BLUE_GREEN}


class Phase(StrEnum):
    """Where a release is in its life; bot.core.machine defines which events move it on."""

    STARTING = "starting"  # canary being created, 0 % traffic
    VERIFYING = "verifying"  # a verification Job runs at the stage's gate, traffic held
    RUNNING = "running"  # in a stage, stage timer counting
    AWAITING_APPROVAL = "awaiting_approval"  # stage time is up and the stage needs approval
    PAUSED = "paused"  # held by a person or by inconclusive checks, timer stopped
    SWITCHING = "switching"  # blue-green: the production Service's selector moving to green
    KEEPING_BLUE = "keeping_blue"  # blue-green: green serves, blue kept as the rollback path
    PROMOTING = "promoting"  # canary: stable rolled to the new version; blue-green: blue retired
    ROLLING_BACK = "rolling_back"  # all traffic to stable, canary being removed
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in {Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED}


class NoticeKind(StrEnum):
    """What a thread message is about (bot.core.machine decides them, the Slack cards show them)."""

    STARTED = "started"
    PREFLIGHT = "preflight"
    STAGE_STARTED = "stage_started"
    ADVANCED = "advanced"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    PAUSED = "paused"
    RESUMED = "resumed"
    PROMOTING = "promoting"
    SUCCEEDED = "succeeded"
    ROLLBACK = "rollback"
    AUTO_ROLLBACK = "auto_rollback"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    SNAPSHOT = "snapshot"
    CHECK_FAILED = "check_failed"
    VERIFICATION = "verification"
    VERIFICATION_LOG = "verification_log"
    OVERRIDE = "override"
    SWITCHED = "switched"
    SWITCH_REFUSED = "switch_refused"
    BLUE_KEPT = "blue_kept"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Approval(_Record):
    """A person let the release leave stage `stage_index` (Approve, or Promote past a gate).

    An approval holds for the one visit of its stage: the machine never enters a stage twice
    (stage_index only grows, tests/test_machine.py checks every transition), so once the stage
    is left its approvals count for nothing any more.
    """

    by: NonBlank
    at: AwareDatetime
    stage_index: int = Field(ge=0)


class PauseInfo(_Record):
    """Why and since when a release is paused, and what Resume restores.

    `by` is None when the release paused itself (inconclusive checks). `remaining_s` is the
    stage time left when the pause began (0 when it was awaiting approval). `resume_due_at`
    is set when the pause was given a duration.
    """

    by: str | None
    reason: str
    paused_at: AwareDatetime
    paused_from: Phase
    remaining_s: NonNegativeFloat
    resume_due_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _resumable_phase(self) -> Self:
        if self.paused_from not in {Phase.RUNNING, Phase.AWAITING_APPROVAL}:
            allowed = "running or awaiting approval"
            raise ValueError(f"a release can only pause from {allowed}, not {self.paused_from}")
        return self


class Override(_Record):
    """A break-glass member let a start or a widening step through a freeze (or a lock)."""

    by: NonBlank
    reason: str
    at: AwareDatetime
    action: str
    """What was overridden: `start`, `Approve`, `Promote`."""


class BlueGreenTimes(_Record):
    """A blue-green release's durable timers after the switch (copied from the app at start)."""

    retention_s: int = Field(ge=0)
    """How long blue is kept, at full size, as the instant rollback path after the watch window."""
    scale_down_grace_s: int = Field(ge=0)
    """How long blue stays scaled to 0 before it is deleted."""


class BlueGreenPods(_Record):
    """Ready and wanted pods of blue and green, as the reconciler last saw them (for the card)."""

    blue_ready: int = Field(ge=0)
    blue_desired: int = Field(ge=0)
    green_ready: int = Field(ge=0)
    green_desired: int = Field(ge=0)


class RolloutView(_Record):
    """An Argo Rollout as its controller last reported it (bot.kube.argo), for the card."""

    phase: str
    """status.phase: Progressing, Paused, Healthy, Degraded."""
    message: str = ""
    step: int | None = None
    """status.currentStepIndex (a canary's; None for blue-green)."""
    steps: int = 0
    new_revision: str | None = None
    """The pod-template hash of the release's ReplicaSet (status.currentPodHash)."""
    stable_revision: str | None = None
    """status.stableRS."""
    updated_pods: int = Field(default=0, ge=0)
    pods: int = Field(default=0, ge=0)


class OutboxNotice(_Record):
    """A thread message decided by a transition and saved with it, until Slack has it."""

    id: int = Field(ge=1)
    kind: NoticeKind
    text: str
    in_channel: bool = False


class DesiredTraffic(_Record):
    """What the router must apply: the canary's share of public traffic, header routing on/off."""

    canary_weight: int = Field(ge=0, le=100)
    header_routing: bool


class VerificationRun(_Record):
    """A verification Job (bot.core.verification) running at a gate: what it runs, its name (one
    per release and gate), when the gate opened, and the traffic held meanwhile. Self-contained,
    so the gate's judge and the cluster's runner need nothing else of the release's strategy."""

    verification: Verification
    job_name: NonBlank
    started_at: AwareDatetime
    held: DesiredTraffic

    @property
    def deadline(self) -> datetime:
        """When the gate fails the Job whatever the cluster says: its timeout, plus a grace."""
        return self.started_at + timedelta(seconds=self.verification.timeout_s + DEADLINE_GRACE_S)


class Release(_Record):
    """One release of one app; its plan is a copy, so a config change never alters it midway.

    `stage_due_at` is the absolute time the current stage's timer ends; it is None whenever no
    stage timer counts (not RUNNING). `outcome_by` / `outcome_reason` say who ended the release
    and why, from the moment it is decided (promotion or rollback); `finished_at` is set when it
    reaches a terminal phase. `card_ts` / `thread_ts` are the Slack message refs, set by the
    Slack adapter once the card is posted. The `checks_*`, `last_check_at`, `latest_metrics`
    and `last_snapshot_at` fields record the canary analysis (bot.core.analysis) as it goes.
    """

    id: NonBlank
    app: NonBlank
    kind: ReleaseKind = ReleaseKind.CANARY
    version: NonBlank
    previous_version: NonBlank | None
    plan: Plan
    stage_index: int = Field(default=0, ge=0)
    phase: Phase
    requested_by: NonBlank
    channel: NonBlank
    four_eyes: bool
    approvers: tuple[NonBlank, ...] = ()
    """Who may approve: the Slack user (U...) and user-group (S...) IDs of the app's
    authorization.approve, copied at start like four_eyes; empty means anyone."""
    started_at: AwareDatetime
    stage_started_at: AwareDatetime | None = None
    stage_starts: tuple[AwareDatetime, ...] = ()
    """When each stage entered so far was entered, stage 0 first (charts mark them)."""
    stage_due_at: AwareDatetime | None = None
    pause: PauseInfo | None = None
    approvals: tuple[Approval, ...] = ()
    outcome_by: str | None = None
    outcome_reason: str | None = None
    finished_at: AwareDatetime | None = None
    card_ts: str | None = None
    thread_ts: str | None = None
    analysis_enabled: bool = False
    """Metric checks gate this release: a stage ends on its timer only after a passing check."""
    checks_passed: int = Field(default=0, ge=0)
    checks_failed: int = Field(default=0, ge=0)
    """Checks of the current stage; entering a stage resets both."""
    last_check_at: AwareDatetime | None = None
    latest_metrics: str | None = None
    """The newest check's summary line, shown on the card and in /release status."""
    last_snapshot_at: AwareDatetime | None = None
    outbox: tuple[OutboxNotice, ...] = ()
    """Messages saved with the transition that decided them and not yet posted: a bot that dies
    before telling Slack leaves them here, and the next pass posts them."""
    card_stale: bool = False
    """The card shows an older state of the release than this one."""
    notices_decided: int = Field(default=0, ge=0)
    """How many notices this release has ever put in its outbox: the next one's id minus one."""
    verification: VerificationRun | None = None
    """Set exactly while VERIFYING: the Job that must pass before the current stage starts."""
    overrides: tuple[Override, ...] = ()
    """Every `--override` used on this release (set by the release service, not the machine);
    the card shows them for the release's life."""
    blue_green: BlueGreenTimes | None = None
    """Set exactly for a blue-green release."""
    switch_requested_at: AwareDatetime | None = None
    """Blue-green: when the last gate before the switch opened (an approval's arrival)."""
    pods: BlueGreenPods | None = None
    """Blue-green: blue's and green's pods as last observed."""
    blue_due_at: AwareDatetime | None = None
    """Blue-green: while KEEPING_BLUE, when blue's retention ends; while PROMOTING, when the
    scaled-down blue is deleted."""
    rollout: RolloutView | None = None
    """Argo Rollouts: the Rollout as last observed."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        stage_count = len(self.plan.stages)
        if self.stage_index >= stage_count:
            plan = f"plan {self.plan.name!r} ({stage_count} stages)"
            raise ValueError(f"stage_index {self.stage_index} is outside {plan}")
        if len(self.stage_starts) > stage_count:
            raise ValueError(f"stage_starts has more entries than plan {self.plan.name!r} stages")
        if any(approval.stage_index >= stage_count for approval in self.approvals):
            raise ValueError(f"an approval names a stage outside plan {self.plan.name!r}")
        if (self.pause is not None) != (self.phase is Phase.PAUSED):
            raise ValueError(f"pause info must be present exactly when paused (phase {self.phase})")
        if (self.stage_due_at is not None) != (self.phase is Phase.RUNNING):
            raise ValueError(f"stage_due_at must be set exactly when running (phase {self.phase})")
        if (self.verification is not None) != (self.phase is Phase.VERIFYING):
            raise ValueError(f"verification must be set exactly when verifying ({self.phase})")
        if (self.finished_at is not None) != self.phase.is_terminal:
            raise ValueError(f"finished_at must be set exactly when finished (phase {self.phase})")
        if (self.blue_green is not None) != (self.kind is ReleaseKind.BLUE_GREEN):
            raise ValueError(f"blue_green times must be set exactly for a {ReleaseKind.BLUE_GREEN}")
        if self.phase is Phase.KEEPING_BLUE and self.blue_due_at is None:
            raise ValueError("blue_due_at must be set while keeping blue")
        return self

    @property
    def stage(self) -> Stage:
        return self.plan.stages[self.stage_index]

    def previews(self, stage_index: int) -> bool:
        """Stage `stage_index` is a blue-green or hybrid preview (the first stage): green is
        reachable through its preview Service only."""
        return stage_index == 0 and self.kind in _PREVIEWED

    @property
    def is_last_stage(self) -> bool:
        return self.stage_index == len(self.plan.stages) - 1

    def approval_of(self, stage_index: int) -> Approval | None:
        return next((a for a in self.approvals if a.stage_index == stage_index), None)

    def approvers_of(self, stage_index: int) -> tuple[str, ...]:
        """The distinct people who approved stage `stage_index`, first approver first."""
        return tuple(dict.fromkeys(a.by for a in self.approvals if a.stage_index == stage_index))

    def approvals_missing(self, stage_index: int | None = None) -> int:
        """How many more distinct approvals stage `stage_index` (default: the current) needs."""
        index = self.stage_index if stage_index is None else stage_index
        needed = self.plan.stages[index].approvals_required
        return max(needed - len(self.approvers_of(index)), 0)

    def evolve(self, **changes: object) -> Release:
        """A copy with `changes` applied, validated like a record loaded from Redis."""
        return Release.model_validate(self.model_dump() | changes)


_PREVIEWED = (ReleaseKind.BLUE_GREEN, ReleaseKind.HYBRID, ReleaseKind.ARGO_BLUE_GREEN)
_STAGE_PHASES = {Phase.RUNNING, Phase.AWAITING_APPROVAL, Phase.PAUSED}
_NEW_VERSION_SERVES = {Phase.SWITCHING, Phase.KEEPING_BLUE, Phase.PROMOTING}


def desired_traffic(release: Release) -> DesiredTraffic:
    """The traffic split the reconciler must bring the router to for this release's phase.

    While a verification Job runs at a stage's gate, the traffic it held. Outside the stages the
    canary (green) takes everything while stable is rolled (PROMOTING), and green while it is
    switched to, then serves with blue kept (SWITCHING, KEEPING_BLUE); nothing otherwise: before
    it is ready, while rolling back, and once finished (after a success the stable Deployment
    runs the new version).
    """
    if release.phase in _STAGE_PHASES:
        return DesiredTraffic(
            canary_weight=release.stage.weight, header_routing=release.stage.header_routed
        )
    if release.verification is not None:
        return release.verification.held
    if release.phase in _NEW_VERSION_SERVES:
        return DesiredTraffic(canary_weight=100, header_routing=False)
    return DesiredTraffic(canary_weight=0, header_routing=False)
