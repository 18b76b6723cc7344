"""The ports: what the application layer needs from the outside world, as Protocols, and the
data that crosses them.

Implemented by the adapters (bot.redis, bot.kube, bot.slack, bot.metrics) and by the demo's
simulations; used by the release service (bot.application). Pure: no adapter is imported here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Protocol

from bot.core.analysis import BY_TRACK, MetricsUnavailable, Reading, Sides, Trend
from bot.core.apps import AppConfig
from bot.core.argo import RolloutAbort
from bot.core.chart import Chart, ChartImage
from bot.core.errors import ReleaseBotError, TemporaryError
from bot.core.freezes import OneOffFreeze
from bot.core.machine import Notify
from bot.core.plan import Plan
from bot.core.release import BlueGreenPods, Release, ReleaseKind, RolloutView
from bot.core.verification import VerificationStatus

# ---------------------------------------------------------------- the cluster


@dataclass(frozen=True, slots=True)
class SwitchTiming:
    """Blue-green: the production selector serves green. Seconds from the start of the reconcile
    that switched it: to the apiserver serving the new selector (None: an earlier reconcile had
    switched it), and to the EndpointSlices listing only green pods (None: not seen in time)."""

    selector_s: float | None
    endpoints_s: float | None


@dataclass(frozen=True, slots=True)
class Observation:
    """What the reconciler saw after bringing the cluster towards the release's desired state."""

    canary_ready: bool = False
    promotion_complete: bool = False
    rollback_complete: bool = False
    verification: VerificationStatus | None = None
    """The verification Job at the release's gate, while it is VERIFYING."""
    switched: SwitchTiming | None = None
    pods: BlueGreenPods | None = None
    """Blue-green: blue's and green's pods."""
    aborted: RolloutAbort | None = None
    """Argo Rollouts: the Rollout was aborted during the release, and not by the bot."""
    rollout: RolloutView | None = None
    """Argo Rollouts: the Rollout's status, for the card."""
    rollout_stage: int | None = None
    """Argo Rollouts: the stage of the release's plan the Rollout's step is in (past the
    release's own when someone promoted it outside the bot)."""


@dataclass(frozen=True, slots=True)
class PreflightResult:
    blocked: bool
    summary: str  # what a person reads in the thread
    plan: Plan | None = None
    """The plan the workload itself describes (an Argo Rollout's steps), which the release
    walks instead of the apps file's; None: the apps file's."""


class ClusterPort(Protocol):
    def stable_version(self, app: AppConfig, kind: ReleaseKind) -> str:
        """The version production runs now (the stable Deployment's, or blue's)."""
        ...

    def preflight(self, app: AppConfig, version: str, kind: ReleaseKind) -> PreflightResult: ...

    def reconcile(self, release: Release, app: AppConfig) -> Observation: ...


# ---------------------------------------------------------------- Slack


@dataclass(frozen=True, slots=True)
class SlackRefs:
    card_ts: str
    thread_ts: str


class AnnouncerPort(Protocol):
    def show_card(self, release: Release) -> SlackRefs:
        """Post the release's card, or update it in place when it has a card_ts."""
        ...

    def notify(self, release: Release, notice: Notify) -> None: ...

    def share_chart(self, release: Release, chart: ChartImage, *, in_channel: bool) -> None:
        """Upload `chart` after the message it belongs to: into the release's thread, or into
        its channel under an in-channel alert. Never raises: a chart that cannot be shared is
        logged, since its message (the text) already went out."""
        ...


class MembershipUnavailable(TemporaryError):
    """Slack could not say who is in a user group (down, rate limited, an unknown group)."""


class MembershipPort(Protocol):
    """Who is in a Slack user group (bot.slack.membership.SlackMembership)."""

    def members(self, group_id: str) -> frozenset[str]:
        """The user ids in the user group `group_id` (S...); raises MembershipUnavailable."""
        ...

    def forget(self, group_id: str) -> None:
        """The group's members changed (Slack said so): ask again next time."""
        ...

    def channel_members(self, channel_id: str) -> frozenset[str]:
        """The user ids in the channel `channel_id` (C.../G...); raises MembershipUnavailable."""
        ...


@dataclass(frozen=True, slots=True)
class HomeBoard:
    """What one person's App Home shows: every active release (`waiting_for_viewer`: the ids of
    those waiting for an approval the viewer may give), the last finished ones, newest first, and
    whether the viewer may start a release of some app (the start button); `notice`: what to
    tell the viewer on top (why their click on it was refused)."""

    viewer: str
    active: tuple[Release, ...]
    waiting_for_viewer: frozenset[str]
    finished: tuple[Release, ...]
    may_start: bool
    notice: str = ""


class HomePublisherPort(Protocol):
    """Shows a person their App Home (bot.slack.home.SlackHome, through views.publish)."""

    def publish(self, board: HomeBoard) -> None: ...


class HomeViewersPort(Protocol):
    """Who looked at App Home lately and when each is due a refresh (bot.redis.home.HomeViewers).

    Refreshes are coalesced per person: one every `min_gap_s` at most, trailing edge (the last
    change of a burst is shown), and at most `budget_per_minute` in all, across replicas."""

    def opened(self, user: str, *, at: datetime) -> None:
        """`user` opened App Home at `at` and is shown it now: remembered for a while, and
        counted as a refresh."""
        ...

    def schedule_refresh(self, *, at: datetime) -> int:
        """A release changed at `at`: every recent viewer gets a refresh due; how many viewers."""
        ...

    def take_due(self, *, at: datetime) -> list[str]:
        """The viewers whose refresh is due at `at`, each taken by one caller only."""
        ...


# ---------------------------------------------------------------- charts


class ChartRendererPort(Protocol):
    """Draws a chart (bot.charts.render.MatplotlibCharts); raises a ReleaseBotError on failure."""

    def render(self, chart: Chart) -> bytes:
        """The chart as PNG bytes."""
        ...


# ---------------------------------------------------------------- metrics


class MetricsPort(Protocol):
    def covers(self, app: AppConfig) -> bool:
        """True when the app has a metrics source (its own or the bot's default)."""
        ...

    def read(self, app: AppConfig, *, at: datetime, sides: Sides = BY_TRACK) -> Reading:
        """Canary and stable (as `sides` tells them apart) side by side over the app's window
        ending at `at`; raises MetricsUnavailable."""
        ...

    def trend(self, app: AppConfig, *, at: datetime, points: int, sides: Sides = BY_TRACK) -> Trend:
        """`points` values per metric over the app's window ending at `at`;
        raises MetricsUnavailable."""
        ...

    def batch_of(self, app: AppConfig, sides: Sides = BY_TRACK) -> str:
        """Apps with the same batch can be read together by one read_many."""
        ...

    def read_many(
        self, apps: Sequence[tuple[AppConfig, Sides]], *, at: datetime
    ) -> dict[str, Reading | MetricsUnavailable]:
        """`read` of each app of one batch (with its sides), by app name, in as few queries as
        one read."""
        ...


# ---------------------------------------------------------------- release state


class AppBusy(ReleaseBotError):
    def __init__(self, holder: StoredRelease) -> None:
        release = holder.release
        super().__init__(
            f"{release.app} already has an active release: {release.version} "
            f"started by <@{release.requested_by}>"
        )
        self.holder = holder


class AppLocked(ReleaseBotError):
    def __init__(self, app: str, lock: DeployLock) -> None:
        super().__init__(f"{app} is locked by <@{lock.by}>: {lock.reason or 'no reason given'}")
        self.lock = lock


class RevisionConflict(TemporaryError):
    """Someone saved the release after we read it; re-read and try again."""


@dataclass(frozen=True, slots=True)
class StoredRelease:
    release: Release
    revision: int


@dataclass(frozen=True, slots=True)
class DeployLock:
    by: str
    reason: str
    at: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of the audit trail: who did what, when, where and what came of it.

    `at` is a UTC ISO 8601 time; `actor` a Slack user id, or "release-bot" for the scheduler's
    automatic actions; `channel` the Slack channel the request came from (None for automatic
    actions); `release_id` "-" for actions on no release (locks, refused starts); `outcome`
    "applied", "refused: why" (the release or the cluster said no) or "denied: why" (the app's
    authorization rules said no; nothing was changed). Entries written before `app` and
    `channel` existed load with their defaults ("" and None)."""

    at: str
    release_id: str
    actor: str
    action: str
    outcome: str
    detail: str = ""
    stage: int | None = None
    phase: str | None = None
    app: str = ""
    channel: str | None = None
    override: str | None = None
    """The reason of a break-glass `--override` used (or refused) in this action."""

    def to_json(self) -> str:
        """`override` only when one was used, so other entries read as before it existed."""
        fields = asdict(self)
        if fields["override"] is None:
            del fields["override"]
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> HistoryEntry:
        """An entry as stored; fields it lacks take their defaults, ones it has that this
        version does not know (written by a newer bot) are left out."""
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in json.loads(text).items() if key in known})


class StorePort(Protocol):
    """Release state, locks, deliveries and the audit trail (bot.redis.store.ReleaseStore)."""

    def create(
        self,
        release: Release,
        *,
        entry: HistoryEntry,
        through_lock: bool = False,
        due_at: datetime | None = None,
    ) -> StoredRelease:
        """Store a new active release, due for a pass at `due_at` (None: at once); raises
        AppLocked (not when `through_lock`, a break-glass override) or AppBusy."""
        ...

    def save(
        self,
        stored: StoredRelease,
        release: Release,
        *,
        entry: HistoryEntry | None,
        finished: bool,
        due_at: datetime | None = None,
        only_sooner: bool = False,
    ) -> StoredRelease:
        """Replace `stored` by `release`, due for a pass at `due_at` (None: at once; with
        `only_sooner`, unless due sooner already), in one atomic write; raises RevisionConflict
        if someone saved meanwhile."""
        ...

    def get(self, release_id: str) -> StoredRelease | None: ...

    def get_many(self, release_ids: Sequence[str]) -> list[StoredRelease]: ...

    def active(self, app: str) -> StoredRelease | None: ...

    def active_releases(self) -> list[StoredRelease]: ...

    def release_ids_due(self, now: datetime) -> tuple[list[str], dict[tuple[str, str], int]]:
        """The releases whose due time (bot.core.schedule.next_due) is `now` or earlier, and how
        many releases there are by (phase, kind), active or with messages still to post."""
        ...

    def reschedule(self, stored: StoredRelease, due_at: datetime) -> bool:
        """Move the due time of a release nobody saved since `stored` was read."""
        ...

    def make_due(self, release_id: str) -> None: ...

    def index_unindexed(self) -> int: ...

    def claim_delivery(self, key: str) -> bool: ...

    def append_history(self, app: str, entry: HistoryEntry) -> None: ...

    def history(self, app: str, *, limit: int = 50) -> list[HistoryEntry]: ...

    def finished_releases(self, *, limit: int) -> list[StoredRelease]:
        """The releases that finished last, newest first."""
        ...

    def lock(self, app: str, *, by: str, reason: str, at: datetime) -> DeployLock: ...

    def unlock(self, app: str) -> DeployLock | None: ...

    def lock_of(self, app: str) -> DeployLock | None: ...

    def freeze(
        self, scope: str, *, by: str, reason: str, at: datetime, until: datetime
    ) -> OneOffFreeze:
        """A one-off freeze of app `scope` (or of all, bot.core.freezes.ALL_APPS) until `until`;
        it replaces the scope's earlier one."""
        ...

    def unfreeze(self, scope: str) -> OneOffFreeze | None: ...

    def freezes_of(self, app: str) -> list[OneOffFreeze]:
        """The one-off freezes set for `app` and for all apps (ended ones too, until expired)."""
        ...


class LeasesPort(Protocol):
    """One replica (one thread of it) at a time works a release (bot.redis.leases.Leases)."""

    def hold_release(self, release_id: str) -> AbstractContextManager[StoredRelease | None]:
        """The release, read as its lease is taken, while this thread holds the lease; None if
        someone else holds it or the release is gone."""
        ...

    def holds(self, release_id: str) -> bool:
        """Whether this thread holds the release's lease (inside its hold_release block)."""
        ...
