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
    start_release,
    transition,
)
from bot.core.plan import DEFAULT_PLAN, Plan
from bot.core.release import Phase, Release
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


def start(
    *, four_eyes: bool = False, plan: Plan = DEFAULT_PLAN, approvers: tuple[str, ...] = ()
) -> Run:
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


def run_in(phase: Phase, *, four_eyes: bool = False) -> Run:
    plan = VERIFIED_PLAN if phase is Phase.VERIFYING else DEFAULT_PLAN
    run = start(four_eyes=four_eyes, plan=plan)
    for event, after in PATHS[phase]:
        run.accept(event, after=after)
    assert run.release.phase is phase
    return run
