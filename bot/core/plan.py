"""Release plans: the ordered stages a canary walks through.

Used by the apps-file loader (bot.application.apps_file, which builds plans from YAML) and by
the state machine (bot.core.machine, which walks them). Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.verification import Verification


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a canary: send `weight` % of public traffic to the canary for `duration_s`.

    weight 0 with `header_routed` is the internal-validation stage: no public traffic,
    the canary is reachable by a request header where the router supports it.
    `needs_approval` means people must approve before the release leaves this stage:
    `approvals_needed` distinct people (1 by default), none of them the requester under four-eyes.
    """

    weight: int
    duration_s: int
    needs_approval: bool = False
    header_routed: bool = False
    approvals_needed: int = 1
    """How many distinct people must approve, when the stage `needs_approval`."""
    verification: Verification | None = None
    """A Job that must pass before the release enters this stage; traffic stays as it was
    until then, and its failure rolls the release back."""
    checked: bool = True
    """Metric checks run in this stage (when the release has a metrics source) and gate its end;
    a blue-green preview whose app does not gate on preview metrics is not checked."""
    check_interval_s: int | None = None
    """How often the stage is checked; None: the app's metrics interval."""

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 100:
            raise ValueError(f"stage weight must be 0..100, got {self.weight}")
        if self.duration_s < 0:
            raise ValueError(f"stage duration must be >= 0 s, got {self.duration_s}")
        if self.approvals_needed < 1:
            raise ValueError(f"a stage needs at least 1 approval, got {self.approvals_needed}")

    @property
    def approvals_required(self) -> int:
        """Distinct approvals the release needs before it leaves this stage; 0 when ungated."""
        return self.approvals_needed if self.needs_approval else 0


@dataclass(frozen=True, slots=True)
class Plan:
    """A named, ordered list of stages; after the last stage the canary is promoted to 100 %."""

    name: str
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError(f"plan {self.name!r} has no stages")
        weights = [stage.weight for stage in self.stages]
        if weights != sorted(weights):
            raise ValueError(f"plan {self.name!r}: stage weights must not decrease, got {weights}")


HOUR = 3600

DEFAULT_PLAN = Plan(
    name="default",
    stages=(
        Stage(weight=0, duration_s=1 * HOUR, header_routed=True),
        Stage(weight=5, duration_s=2 * HOUR),
        Stage(weight=50, duration_s=4 * HOUR, needs_approval=True),
        Stage(weight=100, duration_s=0),
    ),
)

BLUE_GREEN_PLAN_NAME = "blue-green"
HYBRID_PLAN_SUFFIX = "+preview"


def _preview_stage(
    *,
    approvals: int,
    preview_checked: bool,
    check_interval_s: int | None,
    verification: Verification | None,
) -> Stage:
    """Green beside blue, reachable only through its preview Service, until the gates open;
    `verification`: a Job run against the preview Service once green is ready, before the
    preview's gates (the approval last)."""
    return Stage(
        weight=0,
        duration_s=0,
        needs_approval=True,
        approvals_needed=approvals,
        checked=preview_checked,
        check_interval_s=check_interval_s,
        verification=verification,
    )


def blue_green_plan(
    *,
    approvals: int,
    preview_checked: bool,
    watch_s: int,
    check_interval_s: int | None,
    verification: Verification | None = None,
) -> Plan:
    """A blue-green release's two stages: the preview (blue serves, green on its preview
    Service; left through the gates, the approval last) and the watch window (green serves
    production, checked on production traffic, switched back to blue on a failing check)."""
    preview = _preview_stage(
        approvals=approvals,
        preview_checked=preview_checked,
        check_interval_s=check_interval_s,
        verification=verification,
    )
    watch = Stage(weight=100, duration_s=watch_s, check_interval_s=check_interval_s)
    return Plan(name=BLUE_GREEN_PLAN_NAME, stages=(preview, watch))


def hybrid_plan(
    canary: Plan,
    *,
    approvals: int,
    preview_checked: bool,
    check_interval_s: int | None,
    verification: Verification | None = None,
) -> Plan:
    """A hybrid release's stages: the blue-green preview, then the canary plan's stages that
    give green public traffic (its 0 % ones are what the preview replaces)."""
    preview = _preview_stage(
        approvals=approvals,
        preview_checked=preview_checked,
        check_interval_s=check_interval_s,
        verification=verification,
    )
    widening = tuple(stage for stage in canary.stages if stage.weight > 0)
    return Plan(name=f"{canary.name}{HYBRID_PLAN_SUFFIX}", stages=(preview, *widening))
