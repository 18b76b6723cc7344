"""The release service's and scheduler's own Prometheus metrics; recorded by bot.application.

bot.application.service counts transitions and rollbacks and, on each scheduler pass, refreshes
the gauges at each pass; bot.application.scheduler times each pass. They
live in prometheus_client's default registry, which bot.entrypoints.server serves on /metrics.

- release_bot_releases{phase,strategy}: releases active (or with Slack messages still to post)
  at the latest scheduler pass, by phase and strategy (the release's `kind`: canary, bluegreen
  or hybrid), as the store tallies them with each save. Every phase/strategy pair is present (0 when
  none), so a release leaving a phase drops its series to 0 rather than leaving it stale.
- release_bot_transitions_total{event,outcome}: state-machine events offered to a release by
  event class (CanaryReady, Rollback, ...; "start" for a new release), outcome "applied" (saved)
  or "refused" (the machine, preflight, a lock or a busy app said no).
- release_bot_rollbacks_total{reason}: releases that began to send all traffic back to stable:
  "manual" (a person's Rollback), "metric" (ChecksFailed beyond the stage's failure limit),
  "failure" (Fail: the bot cannot carry the release on), and, reserved for the blue-green
  strategy still to come, "verification" (the green side failed its verification before the
  switch) and "switch_back" (traffic switched back to blue after the switch). A repeated
  Rollback, or a Fail, of a release already rolling back is not counted again.
- release_bot_scheduler_pass_seconds: how long each scheduler pass (ReleaseService.tick) took,
  failed passes included.
- release_bot_outbox_depth: Slack thread messages decided but not yet posted, summed over the
  releases the latest pass read, as read (before the pass delivered anything): what earlier
  passes and actions left behind, e.g. while Slack refuses the bot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram

from bot.core.machine import ChecksFailed, Event, Fail, Rollback, VerificationFailed
from bot.core.release import Phase, Release, ReleaseKind, desired_traffic


class RollbackReason(StrEnum):
    MANUAL = "manual"
    METRIC = "metric"
    VERIFICATION = "verification"  # a verification Job failed at a gate (canary or blue-green)
    SWITCH_BACK = "switch_back"  # blue-green: traffic switched back after the switch
    FAILURE = "failure"


APPLIED = "applied"
REFUSED = "refused"
START_EVENT = "start"

RELEASES = Gauge(
    "release_bot_releases",
    "Releases read by the latest scheduler pass, by phase and strategy",
    ["phase", "strategy"],
)
TRANSITIONS = Counter(
    "release_bot_transitions",
    "Events offered to releases, by event and outcome (applied or refused)",
    ["event", "outcome"],
)
ROLLBACKS = Counter(
    "release_bot_rollbacks",
    "Releases that began rolling back, by reason",
    ["reason"],
)
SCHEDULER_PASS_SECONDS = Histogram(
    "release_bot_scheduler_pass_seconds",
    "Duration of each scheduler pass (failed ones included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
OUTBOX_DEPTH = Gauge(
    "release_bot_outbox_depth",
    "Undelivered Slack notices summed over the releases read by the latest scheduler pass",
)

for _reason in RollbackReason:
    ROLLBACKS.labels(reason=_reason.value)  # exposed at 0 before the first rollback


def count_transition(event: str, *, applied: bool) -> None:
    TRANSITIONS.labels(event=event, outcome=APPLIED if applied else REFUSED).inc()


def count_rollback(before: Release, after: Release, event: Event) -> None:
    """Count a saved transition that began a rollback (or failed the release)."""
    reason = rollback_reason(before, after, event)
    if reason is not None:
        ROLLBACKS.labels(reason=reason.value).inc()


def rollback_reason(before: Release, after: Release, event: Event) -> RollbackReason | None:
    """Why the saved transition `before` -> `after` sent traffic back to stable; None if not."""
    if before.phase is Phase.ROLLING_BACK:
        return None  # already counted when it began
    if isinstance(event, Fail):
        return RollbackReason.FAILURE if after.phase is Phase.FAILED else None
    if after.phase is not Phase.ROLLING_BACK:
        return None
    if desired_traffic(before).canary_weight == 100 and before.kind is ReleaseKind.BLUE_GREEN:
        return RollbackReason.SWITCH_BACK
    if isinstance(event, Rollback):
        return RollbackReason.MANUAL
    if isinstance(event, ChecksFailed):
        return RollbackReason.METRIC
    if isinstance(event, VerificationFailed):
        return RollbackReason.VERIFICATION
    return None


def observe_pass(releases: Iterable[Release], counts: Mapping[tuple[str, str], int]) -> None:
    """Refresh the gauges: the releases by (phase, kind) as the store counts them, and the
    outbox of the releases one scheduler pass read (every release with messages to post is
    due, so it is read by the pass)."""
    for phase in Phase:
        for kind in ReleaseKind:
            RELEASES.labels(phase=phase.value, strategy=kind.value).set(
                counts.get((phase.value, kind.value), 0)
            )
    OUTBOX_DEPTH.set(sum(len(release.outbox) for release in releases))
