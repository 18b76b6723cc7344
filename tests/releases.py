"""Releases driven through the real state machine, for the tests that need one in a given phase.

Imported by tests/test_machine.py, tests/test_cards.py and tests/test_announcer.py. Every
release here is `rel-1`: shop-api v2.4.1 replacing v2.4.0 on the default plan, requested by ANA
in channel C0DEPLOYS, started at T0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.core.machine import (
    Accepted,
    BlueRetentionElapsed,
    CanaryReady,
    Event,
    Fail,
    Pause,
    Promote,
    PromotionDone,
    Refused,
    Rollback,
    RollbackDone,
    StageTimerElapsed,
    Switched,
    start_release,
    transition,
)
from bot.core.plan import DEFAULT_PLAN, Plan, blue_green_plan
from bot.core.release import BlueGreenTimes, Phase, Release, ReleaseKind
from bot.core.verification import Verification

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ANA = "U0ANA"  # requests the releases
BOB = "U0BOB"


@dataclass
class Run:
    """A release driven through the machine, with the clock it is driven at."""

    release: Release
    now: datetime

    def accept(self, event: Event, *, after: timedelta = timedelta(0)) -> Accepted:
        self.now += after
        result = transition(self.release, event, now=self.now)
        assert isinstance(result, Accepted), f"{event} refused: {result}"
        self.release = result.release
        return result

    def refuse(self, event: Event, *, after: timedelta = timedelta(0)) -> str:
        self.now += after
        result = transition(self.release, event, now=self.now)
        assert isinstance(result, Refused), f"{event} accepted in {self.release.phase}"
        return result.reason


BLUE_GREEN_PLAN = blue_green_plan(
    approvals=1, preview_checked=False, watch_s=1800, check_interval_s=None
)
BLUE_GREEN_TIMES = BlueGreenTimes(retention_s=24 * 3600, scale_down_grace_s=3600)


def start(
    *,
    four_eyes: bool = False,
    plan: Plan = DEFAULT_PLAN,
    approvers: tuple[str, ...] = (),
    kind: ReleaseKind = ReleaseKind.CANARY,
) -> Run:
    blue_green = BLUE_GREEN_TIMES if kind is ReleaseKind.BLUE_GREEN else None
    started = start_release(
        release_id="rel-1",
        app="shop-api",
        version="v2.4.1",
        previous_version="v2.4.0",
        plan=plan,
        requested_by=ANA,
        channel="C0DEPLOYS",
        four_eyes=four_eyes,
        now=T0,
        approvers=approvers,
        kind=kind,
        blue_green=blue_green,
    )
    return Run(release=started.release, now=T0)


SMOKE = Verification(job="smoke", timeout_s=300, log_lines=5)
VERIFIED_PLAN = Plan(
    name="verified",
    stages=tuple(
        replace(stage, verification=SMOKE) if index == 2 else stage
        for index, stage in enumerate(DEFAULT_PLAN.stages)
    ),
)
"""The default plan whose 50 % stage (index 2) runs the Job template `smoke` first."""
VERIFIED_JOB = "shop-api-verify-rel-1-2"
BLUE_GREEN_VERIFIED_PLAN = blue_green_plan(
    approvals=1, preview_checked=False, watch_s=1800, check_interval_s=None, verification=SMOKE
)
"""Blue-green whose preview runs the Job template `smoke` against the preview Service first."""
PREVIEW_JOB = "shop-api-verify-rel-1-0"

TO_STAGE_3: list[tuple[Event, timedelta]] = [
    (CanaryReady(), MINUTE),
    (StageTimerElapsed(), timedelta(hours=1)),
    (StageTimerElapsed(), timedelta(hours=2)),
]  # stage index 2: 50 %, needs approval, 4 h
PATHS: dict[Phase, list[tuple[Event, timedelta]]] = {
    Phase.STARTING: [],
    Phase.VERIFYING: TO_STAGE_3,  # on VERIFIED_PLAN: at the gate of stage 3
    Phase.RUNNING: TO_STAGE_3,
    Phase.AWAITING_APPROVAL: [*TO_STAGE_3, (StageTimerElapsed(), timedelta(hours=4))],
    Phase.PAUSED: [
        *TO_STAGE_3,
        (Pause(by=BOB, reason="looking into it", duration_s=1800), timedelta(hours=1)),
    ],
    Phase.PROMOTING: [*TO_STAGE_3, (Promote(by=BOB, full=True), MINUTE)],
    Phase.ROLLING_BACK: [*TO_STAGE_3, (Rollback(by=ANA, reason="error spike"), MINUTE)],
    Phase.SUCCEEDED: [*TO_STAGE_3, (Promote(by=BOB, full=True), MINUTE), (PromotionDone(), MINUTE)],
    Phase.ROLLED_BACK: [
        *TO_STAGE_3,
        (Rollback(by=ANA, reason="error spike"), MINUTE),
        (RollbackDone(), MINUTE),
    ],
    Phase.FAILED: [*TO_STAGE_3, (Fail(reason="deployment deleted"), MINUTE)],
}


TO_PREVIEW: list[tuple[Event, timedelta]] = [(CanaryReady(), MINUTE)]
TO_WATCH: list[tuple[Event, timedelta]] = [
    *TO_PREVIEW,
    (Promote(by=BOB), MINUTE),
    (Switched(selector_s=0.2, endpoints_s=0.3), timedelta(seconds=1)),
]
TO_KEEPING_BLUE = [*TO_WATCH, (StageTimerElapsed(), timedelta(minutes=30))]
BLUE_GREEN_PATHS: dict[Phase, list[tuple[Event, timedelta]]] = {
    Phase.STARTING: [],
    Phase.RUNNING: TO_WATCH,  # the watch window, green serving
    Phase.AWAITING_APPROVAL: [*TO_PREVIEW, (StageTimerElapsed(), MINUTE)],
    Phase.PAUSED: [*TO_WATCH, (Pause(by=BOB, reason="looking into it"), MINUTE)],
    Phase.SWITCHING: [*TO_PREVIEW, (Promote(by=BOB), MINUTE)],
    Phase.KEEPING_BLUE: TO_KEEPING_BLUE,
    Phase.PROMOTING: [*TO_KEEPING_BLUE, (BlueRetentionElapsed(), timedelta(days=1))],
    Phase.ROLLING_BACK: [*TO_WATCH, (Rollback(by=ANA, reason="error spike"), MINUTE)],
    Phase.SUCCEEDED: [
        *TO_KEEPING_BLUE,
        (BlueRetentionElapsed(), timedelta(days=1)),
        (PromotionDone(), timedelta(hours=1)),
    ],
    Phase.ROLLED_BACK: [*TO_WATCH, (Rollback(by=ANA), MINUTE), (RollbackDone(), MINUTE)],
    Phase.FAILED: [*TO_WATCH, (Fail(reason="deployment deleted"), MINUTE)],
}
BLUE_GREEN_PATHS[Phase.VERIFYING] = TO_PREVIEW  # on BLUE_GREEN_VERIFIED_PLAN: before the preview
BLUE_GREEN_ONLY = (Phase.SWITCHING, Phase.KEEPING_BLUE)


def run_in(phase: Phase, *, four_eyes: bool = False, kind: ReleaseKind | None = None) -> Run:
    """A release in `phase`: a canary on the default plan (VERIFYING: on VERIFIED_PLAN), unless
    `kind` (or a phase only blue-green has) asks for a blue-green release (VERIFYING: on
    BLUE_GREEN_VERIFIED_PLAN)."""
    if kind is None:
        kind = ReleaseKind.BLUE_GREEN if phase in BLUE_GREEN_ONLY else ReleaseKind.CANARY
    blue_green = kind is ReleaseKind.BLUE_GREEN
    verifying = phase is Phase.VERIFYING
    if blue_green:
        plan = BLUE_GREEN_VERIFIED_PLAN if verifying else BLUE_GREEN_PLAN
    else:
        plan = VERIFIED_PLAN if verifying else DEFAULT_PLAN
    run = start(four_eyes=four_eyes, kind=kind, plan=plan)
    for event, after in (BLUE_GREEN_PATHS if blue_green else PATHS)[phase]:
        run.accept(event, after=after)
    assert run.release.phase is phase
    return run
