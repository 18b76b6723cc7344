"""The release service: applies people's and the scheduler's events to releases.

Called by the Slack handlers (commands, buttons), the scheduler loop and the demo. Each action
reads the release, asks the pure state machine, saves the result (desired state first), then
carries out the effects in the machine's order: cluster, card, thread messages. Before any of
that, every person's action is authorized (bot.core.authorization): a denial changes nothing and
is audited.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import structlog

from bot.application import freeze_hold, telemetry, verification_gate
from bot.application.checks import CanaryChecks, ReadingOf
from bot.application.ranked_pool import RankedPool
from bot.core import freezes, schedule
from bot.core.apps import AppConfig, BotConfig, UnknownApp, UnknownPlan, plan_refusal
from bot.core.authorization import (
    APP_HOME,
    Allowed,
    Decision,
    FromAppHome,
    Place,
    Right,
    SeenChannel,
    decide,
    groups_to_resolve,
    home_channel_ids,
)
from bot.core.errors import PermanentError, ReleaseBotError, TemporaryError
from bot.core.freezes import ALL_APPS, Frozen, frozen_at
from bot.core.machine import (
    Accepted,
    Advance,
    Approve,
    BlueRetentionElapsed,
    CanaryReady,
    ChecksFailed,
    Effect,
    Event,
    Fail,
    Notify,
    Pause,
    PauseTimerElapsed,
    PodsObserved,
    Promote,
    PromotionDone,
    ReconcileCluster,
    Refused,
    Resume,
    RollbackDone,
    RolloutAborted,
    RolloutMovedOn,
    RolloutObserved,
    StageTimerElapsed,
    Switched,
    VerificationPassed,
    offers,
    start_release,
    transition,
    with_outbox,
)
from bot.core.plan import Plan
from bot.core.ports import (
    AnnouncerPort,
    AppBusy,
    AppLocked,
    ClusterPort,
    DeployLock,
    HistoryEntry,
    HomeBoard,
    HomeViewersPort,
    LeasesPort,
    MembershipPort,
    MembershipUnavailable,
    Observation,
    RevisionConflict,
    SlackRefs,
    StoredRelease,
    StorePort,
    SwitchTiming,
)
from bot.core.release import BlueGreenTimes, NoticeKind, Phase, Release, ReleaseKind

log = structlog.get_logger(__name__)

SAVE_ATTEMPTS = 8
CRASH_EXIT_CODE = 137


class CrashPoint(StrEnum):
    """Where `crash_at` makes the process die at once, as a SIGKILL would: the recovery tests
    (and chaos drills) use it to prove a restarted bot finishes every transition exactly once."""

    SAVED = "saved"  # the new state is in Redis, the cluster not yet patched
    RECONCILED = "reconciled"  # the cluster is patched, Slack not yet told


CANARY_READY_DEADLINE = timedelta(minutes=10)
LEASE_WAIT_S = 1.0  # a person's action waits this long for a scheduler pass to let go
LEASE_RETRY_S = 0.02
BOT_ACTOR = "release-bot"
WORKERS_DEFAULT = 8
CHECK_DUE_RANK = 0
"""Releases whose metric check a pass found due go first: their verdict may roll one back."""
WAITING_RANK = 1
METRICS_WORKERS = 4
"""Batches of metric queries read at once (one per Prometheus a pass reads)."""
RESYNC_S_DEFAULT = 60.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to the person who acted: whether it was applied, and what to tell them."""

    applied: bool
    message: str
    release: Release | None = None
    not_taken_up: bool = False
    """The request names nothing that can be acted on now (an unknown app or plan, an app that
    is locked or held by another release), as opposed to an action the release refused."""
    for_everyone: bool = False
    """The channel sees the answer, not only the person: a lock or a freeze changes what
    everyone there may do, so it is said where they read it."""


FINISHED_ON_HOME = 10
"""How many finished releases App Home lists."""


class StartField(StrEnum):
    """The start form's field a refused start is about."""

    APP = "app"
    PLAN = "plan"
    VERSION = "version"


@dataclass(frozen=True, slots=True)
class StartProblem:
    """Why a start would be refused before anything is created, and which field it is about."""

    field: StartField
    message: str
    not_taken_up: bool = False


_NOT_TAKEN_UP = (UnknownApp, UnknownPlan, AppBusy, AppLocked)
_EVENT_RIGHTS: dict[type[Event], Right] = {
    Approve: Right.APPROVE,
    Promote: Right.PROMOTE,
    Advance: Right.PROMOTE,  # ends the stage now: more traffic to the canary, as a promotion
}
"""What a person's event needs; any other (pause, resume, rollback) needs only the channel."""


class ReleaseService:
    def __init__(
        self,
        *,
        config: BotConfig,
        store: StorePort,
        leases: LeasesPort,
        cluster: ClusterPort,
        announcer: AnnouncerPort,
        membership: MembershipPort | None = None,
        checks: CanaryChecks | None = None,
        home_viewers: HomeViewersPort | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        canary_ready_deadline: timedelta = CANARY_READY_DEADLINE,
        crash_at: CrashPoint | None = None,
        workers: int = WORKERS_DEFAULT,
        resync_s: float = RESYNC_S_DEFAULT,
    ) -> None:
        """`checks` None: no metrics source, so stages advance on their timers alone;
        `membership` None: no user group can be resolved, so rules naming one deny, and a group
        in `break_glass` lets nobody override (user ids do); `home_viewers` None: no App Home to
        refresh after a transition. `workers`: how many releases one pass works at once
        (RELEASE_BOT_WORKERS); `resync_s`: the longest a release goes without a pass, so drift
        in the cluster is repaired within it."""
        if workers < 1:
            raise ValueError(f"a pass needs at least one worker, got {workers}")
        self._pool = RankedPool(workers=workers, name="release-worker")
        self._metrics_pool = ThreadPoolExecutor(
            max_workers=METRICS_WORKERS, thread_name_prefix="metrics-batch"
        )
        self._in_flight: dict[str, Future[Release | None]] = {}
        self._in_flight_lock = threading.Lock()
        self._indexed_at: float | None = None
        self._resync_s = resync_s
        self._config = config
        self._home_viewers = home_viewers
        self._membership = membership
        self._checks = checks
        self._leases = leases
        self._crash_at = crash_at
        self._store = store
        self._cluster = cluster
        self._announcer = announcer
        self._clock = clock
        self._canary_ready_deadline = canary_ready_deadline

    def start(
        self,
        *,
        app_name: str,
        version: str,
        plan_name: str | None,
        user: str,
        channel: str,
        channel_name: str = "",
        override: str | None = None,
        reason: str = "",
        kind: ReleaseKind = ReleaseKind.CANARY,
    ) -> Outcome:
        """Start a release of `kind`; its card goes to the app's channel when the apps file
        gives its ID, else to `channel`, where the command was typed (`channel_name`: its name,
        when the request carries one, for rules that name channels by name). `override`: a
        break-glass reason, which lets the start through a freeze and a deploy lock; `reason`:
        why (the start form asks), kept in the audit trail. A blue-green release walks the
        app's blue-green plan (`plan_name` is not used); a hybrid one the preview, then the
        widening stages of `plan_name`'s plan (or the app's)."""
        # the release's id joins once it exists
        context = {"app": app_name, "version": version, "strategy": kind.value}
        with structlog.contextvars.bound_contextvars(**context):
            if override is not None and not self.may_break_glass(user):
                if app_name not in self._config.apps:
                    return self._unknown_app(app_name)
                refused = f"refused: {freezes.override_refused(user)}"
                self._audit(
                    app_name, "-", user, "start", refused, channel=channel, override=override
                )
                telemetry.count_transition(telemetry.START_EVENT, applied=False)
                return Outcome(False, freezes.override_refused(user))
            try:
                outcome = self._start(
                    app_name=app_name,
                    version=version,
                    plan_name=plan_name,
                    user=user,
                    channel=channel,
                    channel_name=channel_name,
                    override=override,
                    reason=reason,
                    kind=kind,
                )
            except _NOT_TAKEN_UP as refusal:
                self._refused_start(refusal, app_name, user, channel=channel, override=override)
                return Outcome(False, str(refusal), not_taken_up=True)
        telemetry.count_transition(telemetry.START_EVENT, applied=outcome.applied)
        return outcome

    def check_start(
        self,
        *,
        app_name: str,
        plan_name: str | None,
        user: str,
        channel: str,
        channel_name: str = "",
    ) -> StartProblem | None:
        """What `start` would refuse at once (authorization, plan, freeze, lock, busy), with the
        field it is about; audited as `start` audits it. None: `start` may go ahead (it checks
        all of this again, then the cluster)."""
        try:
            app = self._config.app(app_name)
            return self._start_problem(
                app, plan_name, user=user, channel=channel, channel_name=channel_name, override=None
            )
        except UnknownPlan as refusal:
            return StartProblem(StartField.PLAN, str(refusal), not_taken_up=True)
        except _NOT_TAKEN_UP as refusal:
            self._refused_start(refusal, app_name, user, channel=channel, override=None)
            return StartProblem(StartField.APP, str(refusal), not_taken_up=True)

    def _refused_start(
        self,
        refusal: ReleaseBotError,
        app_name: str,
        user: str,
        *,
        channel: str,
        override: str | None,
    ) -> None:
        """Busy and locked apps are refusals of the start, audited; unknown names are not."""
        if isinstance(refusal, AppBusy | AppLocked):
            refused = f"refused: {refusal}"
            self._audit(app_name, "-", user, "start", refused, channel=channel, override=override)
            telemetry.count_transition(telemetry.START_EVENT, applied=False)

    def _start_problem(
        self,
        app: AppConfig,
        plan_name: str | None,
        *,
        user: str,
        channel: str,
        channel_name: str,
        override: str | None,
        kind: ReleaseKind = ReleaseKind.CANARY,
    ) -> StartProblem | None:
        """The refusals decided before the cluster is asked; raises AppBusy, AppLocked,
        UnknownPlan."""
        seen = self._place(app, user, channel, channel_name)
        if denied := self._denied(app, Right.START, "start", user=user, channel=seen):
            return StartProblem(StartField.APP, denied.message)
        if isinstance(seen, FromAppHome) and not app.slack_channel.is_id:
            return StartProblem(
                StartField.APP,
                f"{app.name}'s slack_channel is given by name ({app.slack_channel}), so its card "
                "has no channel to go to from App Home; start it from that channel",
            )
        plan, _ = _SHAPES[kind](self._config, app, plan_name)
        if refusal := plan_refusal(app, plan):
            return StartProblem(StartField.PLAN, refusal)
        if override is None and (frozen := self.frozen(app.name)) is not None:
            message = freezes.refused_while_frozen(app.name, frozen, "a new release")
            self._audit(app.name, "-", user, "start", f"refused: {message}", channel=channel)
            telemetry.count_transition(telemetry.START_EVENT, applied=False)
            return StartProblem(StartField.APP, message, not_taken_up=True)
        self._refuse_if_taken(app.name, through_lock=override is not None)
        return None

    def _start(
        self,
        *,
        app_name: str,
        version: str,
        plan_name: str | None,
        user: str,
        channel: str,
        channel_name: str,
        override: str | None,
        reason: str,
        kind: ReleaseKind,
    ) -> Outcome:
        app = self._config.app(app_name)
        try:
            kind = app.release_kind(kind)
        except ValueError as refusal:
            return Outcome(False, f"{app.name}: {refusal}")
        if kind.drives_argo and plan_name:
            return Outcome(False, f"{app.name}: {_OWN_STEPS}; --plan does not apply")
        problem = self._start_problem(
            app,
            plan_name,
            user=user,
            channel=channel,
            channel_name=channel_name,
            override=override,
            kind=kind,
        )
        if problem is not None:
            return Outcome(False, problem.message, not_taken_up=problem.not_taken_up)
        plan, blue_green = _SHAPES[kind](self._config, app, plan_name)
        previous = self._cluster.stable_version(app, kind)
        if previous == version:
            return Outcome(False, f"{app.name} already runs {version}; nothing to release")
        preflight = self._cluster.preflight(app, version, kind)
        if preflight.blocked:
            refused = f"refused by preflight: {preflight.summary}"
            self._audit(app.name, "-", user, "start", refused, channel=channel)
            return Outcome(
                False,
                f"Preflight refused the release of {app.name} {version}:\n{preflight.summary}",
            )
        plan = preflight.plan or plan
        now = self._clock()
        started = start_release(
            release_id=uuid.uuid4().hex[:12],
            app=app.name,
            version=version,
            previous_version=previous,
            plan=plan,
            requested_by=user,
            channel=app.slack_channel.value if app.slack_channel.is_id else channel,
            four_eyes=app.authorization.four_eyes,
            approvers=app.authorization.approve,
            now=now,
            analysis_enabled=self._checks is not None and self._checks.covers(app),
            kind=kind,
            blue_green=blue_green,
        )
        preflight_notice = Notify(kind=NoticeKind.PREFLIGHT, text=preflight.summary)
        effects: tuple[Effect, ...] = (*started.effects, preflight_notice)
        release = started.release
        if override is not None:
            release, effects = freeze_hold.overridden(
                release, effects, by=user, reason=override, at=now, action="start"
            )
            effects = effects[-1:] + effects[:-1]  # the notice first: the start is an override
        release = with_outbox(release, effects)
        with _working_on(release):
            detail = f"{version} (plan {plan.name})" + (f": {reason}" if reason else "")
            entry = self._entry(
                release, user, "start", "applied", detail, channel=channel, override=override
            )
            stored = self._store.create(
                release,
                entry=entry,
                through_lock=override is not None,
                due_at=self._due_at(release),
            )
            _log_applied(entry, app=app.name)
            self._refresh_home()
            with self._leases.hold_release(release.id) as leased:  # else another replica's pass
                if leased is not None:
                    self._reached(CrashPoint.SAVED)
                    self._reconcile(leased)
                    self._reached(CrashPoint.RECONCILED)
                    stored = self._deliver(leased)
        return Outcome(
            True, f"Started {_KIND_NAMES[kind]} of {app.name} {version}.", stored.release
        )

    def retry(self, *, app_name: str, user: str, channel: str, channel_name: str = "") -> Outcome:
        """`/release retry`: the app's last release, rolled back on an Argo Rollout, started
        again at its version; its start clears the Rollout's abort, as Argo's own retry does, and
        walks its steps from the first. Checked like any start (rights, freeze, lock)."""
        if app_name not in self._config.apps:
            return self._unknown_app(app_name)
        last = next(self._started_releases(app_name), None)
        refusal = _retry_refusal(app_name, last)
        if refusal is not None or last is None:
            return Outcome(False, refusal or "")
        return self.start(
            app_name=app_name,
            version=last.version,
            plan_name=None,
            user=user,
            channel=channel,
            channel_name=channel_name,
            reason=f"retry of release {last.id}",
            kind=last.kind,
        )

    def act(
        self,
        *,
        app_name: str,
        event: Event,
        actor: str,
        channel: str | None = None,
        channel_name: str = "",
        override: str | None = None,
    ) -> Outcome:
        """Apply a person's event to the app's active release; `channel`: the Slack channel the
        request came from (checked against the app's rules, and kept in the audit trail), None
        for a caller outside Slack; `override`: a break-glass reason, which lets a widening step
        through a freeze."""
        if app_name not in self._config.apps:
            return self._unknown_app(app_name)
        stored = self._store.active(app_name)
        app = self._config.app(app_name)
        release = stored.release if stored else None
        if denied := self._denied_event(app, event, actor, channel, channel_name, release):
            return denied
        if stored is None:
            return Outcome(False, f"{app_name} has no active release.")
        return self._apply(stored, event, actor=actor, channel=channel, override=override)

    def act_on_release(
        self,
        *,
        release_id: str,
        event: Event,
        actor: str,
        channel: str | None = None,
        channel_name: str = "",
    ) -> Outcome:
        """Apply a button's event to the release it was shown for (finished or not)."""
        stored = self._store.get(release_id)
        if stored is None:
            return Outcome(False, f"release {release_id} is unknown; nothing was changed.")
        app = self._config.app(stored.release.app)
        if denied := self._denied_event(app, event, actor, channel, channel_name, stored.release):
            return denied
        return self._apply(stored, event, actor=actor, channel=channel)

    def may_break_glass(self, user: str) -> bool:
        """`user` is in the apps file's break_glass: by user id, or (only with a membership
        resolver) as a member of a user group listed there."""
        for principal in self._config.break_glass:
            if principal == user:
                return True
            if principal.startswith("S") and self._membership is not None:
                try:
                    if user in self._membership.members(principal):
                        return True
                except MembershipUnavailable:
                    log.warning("break_glass_group_unresolved", group=principal)
        return False

    def frozen(self, app_name: str) -> Frozen | None:
        """Whether the app is frozen now: its windows, everyone's, and the one-off freezes."""
        return frozen_at(
            self._clock(),
            windows=self._config.freeze_windows(app_name),
            one_offs=self._store.freezes_of(app_name),
        )

    def freeze(
        self, *, scope: str, duration_s: int, user: str, reason: str, channel: str | None = None
    ) -> Outcome:
        """A one-off freeze of one app (or, scope `all`, of every app) for `duration_s`."""
        if scope != ALL_APPS and scope not in self._config.apps:
            return self._unknown_app(scope)
        now = self._clock()
        until = now + timedelta(seconds=duration_s)
        self._store.freeze(scope, by=user, reason=reason, at=now, until=until)
        applied = f"applied until {until.isoformat()}: {reason or 'no reason given'}"
        self._audit(scope, "-", user, "freeze", applied, channel=channel)
        which = "every app" if scope == ALL_APPS else scope
        return Outcome(
            True,
            f"<@{user}> froze {which} until {until:%Y-%m-%d %H:%M} UTC"
            f" ({reason or 'no reason given'}): new releases and widening steps are refused, and "
            "running releases hold at their next gate.",
            for_everyone=True,
        )

    def unfreeze(self, *, scope: str, user: str, channel: str | None = None) -> Outcome:
        """Lift a one-off freeze: allowed to whoever set it, to the break-glass group, and, for
        one app's freeze, to those who may start that app (a freeze of `all`: only the first
        two)."""
        if scope != ALL_APPS and scope not in self._config.apps:
            return self._unknown_app(scope)
        if denied := self._unfreeze_denied(scope, user=user, channel=channel):
            return denied
        previous = self._store.unfreeze(scope)
        if previous is None:
            return Outcome(False, f"{scope} has no freeze set with `/release freeze`.")
        self._audit(
            scope, "-", user, "unfreeze", f"applied (frozen by {previous.by})", channel=channel
        )
        self._due_now_if_held(scope)
        return Outcome(
            True,
            f"<@{user}> lifted the freeze of {scope} set by <@{previous.by}> "
            "(recurring windows still apply).",
            for_everyone=True,
        )

    def _unfreeze_denied(self, scope: str, *, user: str, channel: str | None) -> Outcome | None:
        """None when `user` may lift the freeze of `scope` (or there is none to lift)."""
        current = next((f for f in self._store.freezes_of(scope) if f.scope == scope), None)
        if current is None or current.by == user or self.may_break_glass(user):
            return None
        needed = f"lifting the freeze of {scope} needs <@{current.by}>, who set it, or break glass"
        if scope == ALL_APPS:
            self._audit(ALL_APPS, "-", user, "unfreeze", f"denied: {needed}", channel=channel)
            return Outcome(False, needed)
        seen = None if channel is None else SeenChannel(channel, "")
        app = self._config.app(scope)
        denied = self._denied(app, Right.START, "unfreeze", user=user, channel=seen)
        return None if denied is None else Outcome(False, f"{needed}, or {denied.message}")

    def _due_now_if_held(self, scope: str) -> None:
        """The releases a lifted freeze held go on at the next pass, not at the freeze's end."""
        if scope == ALL_APPS:
            releases = self._store.active_releases()
        else:
            releases = [stored] if (stored := self._store.active(scope)) else []
        for stored in releases:
            if freeze_hold.held_by_freeze(stored.release):
                self._store.make_due(stored.release.id)

    def lock(
        self,
        *,
        app_name: str,
        user: str,
        reason: str,
        channel: str | None = None,
        channel_name: str = "",
    ) -> Outcome:
        """A deploy lock: new releases of the app are refused until unlocked."""
        if app_name not in self._config.apps:
            return self._unknown_app(app_name)
        app = self._config.app(app_name)
        seen = self._place(app, user, channel, channel_name)
        if denied := self._denied(app, Right.CHANNEL, "lock", user=user, channel=seen):
            return denied
        self._store.lock(app.name, by=user, reason=reason, at=self._clock())
        applied = f"applied: {reason or 'no reason given'}"
        self._audit(app.name, "-", user, "lock", applied, channel=channel)
        return Outcome(
            True,
            f"<@{user}> locked {app.name} ({reason or 'no reason given'}): new releases are "
            "refused until unlocked.",
            for_everyone=True,
        )

    def unlock(
        self, *, app_name: str, user: str, channel: str | None = None, channel_name: str = ""
    ) -> Outcome:
        if app_name not in self._config.apps:
            return self._unknown_app(app_name)
        app = self._config.app(app_name)
        seen = self._place(app, user, channel, channel_name)
        if denied := self._denied(app, Right.CHANNEL, "unlock", user=user, channel=seen):
            return denied
        previous = self._store.unlock(app.name)
        if previous is None:
            return Outcome(False, f"{app.name} was not locked.")
        applied = f"applied (locked by {previous.by})"
        self._audit(app.name, "-", user, "unlock", applied, channel=channel)
        return Outcome(
            True,
            f"<@{user}> unlocked {app.name} (it was locked by <@{previous.by}>).",
            for_everyone=True,
        )

    def _denied_event(  # noqa: PLR0917 (private; every caller passes all six)
        self,
        app: AppConfig,
        event: Event,
        actor: str,
        channel: str | None,
        channel_name: str,
        release: Release | None,
    ) -> Outcome | None:
        right = _EVENT_RIGHTS.get(type(event), Right.CHANNEL)
        seen = self._place(app, actor, channel, channel_name)
        action = type(event).__name__
        return self._denied(app, right, action, user=actor, channel=seen, release=release)

    def _denied(
        self,
        app: AppConfig,
        right: Right,
        action: str,
        *,
        user: str,
        channel: Place | None,
        release: Release | None = None,
    ) -> Outcome | None:
        """None when `user` may; else the denial, audited, with nothing else changed."""
        decision = self._decision(app, right, user=user, channel=channel)
        if isinstance(decision, Allowed):
            return None
        release_id = release.id if release else "-"
        where = channel.id if isinstance(channel, SeenChannel) else APP_HOME if channel else None
        self._audit(app.name, release_id, user, action, f"denied: {decision.reason}", channel=where)
        log.info("action_denied", app=app.name, action=action, actor=user, reason=decision.reason)
        return Outcome(False, decision.reason, release)

    def _decision(
        self, app: AppConfig, right: Right, *, user: str, channel: Place | None
    ) -> Decision:
        memberships = {group: self._members(group) for group in groups_to_resolve(app, right, user)}
        return decide(app, right, user=user, channel=channel, memberships=memberships)

    def _place(
        self, app: AppConfig, user: str, channel: str | None, channel_name: str
    ) -> Place | None:
        """Where a request came from: None outside Slack, the App Home (APP_HOME: it counts for
        members of the app's allowed channels), or a channel."""
        if channel is None:
            return None
        if channel == APP_HOME:
            return FromAppHome(member_of=self._channels_with(app, user))
        return SeenChannel(channel, channel_name)

    def _channels_with(self, app: AppConfig, user: str) -> frozenset[str]:
        """The app's allowed channels `user` is a member of; one Slack cannot answer for counts
        as not (fail closed)."""
        member_of = set()
        for channel_id in home_channel_ids(app):
            if self._membership is None:
                break
            try:
                if user in self._membership.channel_members(channel_id):
                    member_of.add(channel_id)
            except MembershipUnavailable as error:
                log.warning("channel_members_unavailable", channel=channel_id, error=str(error))
        return frozenset(member_of)

    def startable_apps(self, *, user: str, channel: str, channel_name: str = "") -> list[str]:
        """The apps `user` may start from `channel` (APP_HOME: the App Home), by their rules;
        asking is not audited, as nothing is attempted."""
        return [
            name
            for name, app in sorted(self._config.apps.items())
            if isinstance(
                self._decision(
                    app,
                    Right.START,
                    user=user,
                    channel=self._place(app, user, channel, channel_name),
                ),
                Allowed,
            )
        ]

    def home_board(self, viewer: str) -> HomeBoard:
        """What `viewer`'s App Home shows now."""
        active = tuple(stored.release for stored in self._store.active_releases())
        finished = self._store.finished_releases(limit=FINISHED_ON_HOME)
        return HomeBoard(
            viewer=viewer,
            active=active,
            waiting_for_viewer=frozenset(
                release.id for release in active if self._waits_for(release, viewer)
            ),
            finished=tuple(stored.release for stored in finished),
            may_start=bool(self.startable_apps(user=viewer, channel=APP_HOME)),
        )

    def _waits_for(self, release: Release, user: str) -> bool:
        """The release asks for an approval `user` may give: from App Home, by the app's rules,
        not the requester under four-eyes, not one who approved this stage already."""
        if not (offers(release, Approve) and release.approvals_missing() > 0):
            return False
        if user in release.approvers_of(release.stage_index):
            return False
        if release.four_eyes and user == release.requested_by:
            return False
        app = self._config.app(release.app)
        place = self._place(app, user, APP_HOME, "")
        return isinstance(self._decision(app, Right.APPROVE, user=user, channel=place), Allowed)

    def plans_for(self, app_name: str) -> list[Plan]:
        """The plans the app may be released with: its own first, then the others that fit its
        router."""
        app = self._config.app(app_name)
        others = [
            plan for name, plan in sorted(self._config.plans.items()) if name != app.plan.name
        ]
        return [app.plan, *(plan for plan in others if plan_refusal(app, plan) is None)]

    def recent_versions(self, app_name: str, *, limit: int = 5) -> list[str]:
        """The versions the app's last releases started with, newest first, each once."""
        versions: list[str] = []
        for release in self._started_releases(self._config.app(app_name).name):
            if release.version not in versions:
                versions.append(release.version)
            if len(versions) == limit:
                break
        return versions

    def _started_releases(self, app_name: str) -> Iterator[Release]:
        """The app's releases, newest start first, as far back as its audit trail reaches."""
        for entry in reversed(self._store.history(app_name, limit=200)):
            if entry.action == "start" and entry.outcome == "applied":
                stored = self._store.get(entry.release_id)
                if stored is not None:
                    yield stored.release

    def _refresh_home(self) -> None:
        """A release changed: everyone who looked at App Home lately gets a refresh scheduled;
        a failure costs the refresh only, never the transition."""
        if self._home_viewers is None:
            return
        try:
            self._home_viewers.schedule_refresh(at=self._clock())
        except ReleaseBotError as error:
            log.warning("home_refresh_not_scheduled", error=str(error))

    def _members(self, group: str) -> frozenset[str] | None:
        """The group's members; None when they cannot be known (the decision then fails closed)."""
        if self._membership is None:
            return None
        try:
            return self._membership.members(group)
        except ReleaseBotError as error:
            log.warning("membership_unavailable", usergroup=group, error=str(error))
            return None

    def membership_changed(self, group_id: str) -> None:
        """Slack says user group `group_id` changed: the next decision asks for its members."""
        if self._membership is not None:
            self._membership.forget(group_id)

    def _unknown_app(self, app_name: str) -> Outcome:
        known = sorted(self._config.apps)
        return Outcome(False, str(UnknownApp(app_name, known)), not_taken_up=True)

    def active_release(self, app_name: str) -> StoredRelease | None:
        return self._store.active(self._config.app(app_name).name)

    def active_releases(self) -> list[StoredRelease]:
        return self._store.active_releases()

    def history(self, app_name: str, *, limit: int = 20) -> list[HistoryEntry]:
        return self._store.history(self._config.app(app_name).name, limit=limit)

    def lock_of(self, app_name: str) -> DeployLock | None:
        return self._store.lock_of(self._config.app(app_name).name)

    def claim_delivery(self, key: str) -> bool:
        return self._store.claim_delivery(key)

    def _refuse_if_taken(self, app: str, *, through_lock: bool = False) -> None:
        """Answer busy or locked before preflight's slow reads; create() enforces it atomically."""
        if not through_lock and (lock := self._store.lock_of(app)) is not None:
            raise AppLocked(app, lock)
        if (holder := self._store.active(app)) is not None:
            raise AppBusy(holder)

    def tick(self, wait_s: float | None = None) -> None:
        """One scheduler pass: every release that is due (bot.core.schedule.next_due) and that no
        other replica, nor an earlier pass still at work, is working on is reconciled, gets what
        has come due, and has its undelivered Slack messages posted (also those a replica that
        died before telling Slack left behind).

        The releases are worked by a pool of `workers` threads, so a release whose calls hang
        holds only its own worker; those whose metric check is due go first. The pass waits for
        them `wait_s` at most (None: until all are done); one still at work then carries on, and
        later passes leave it alone until it is done. An unexpected error of a release the pass
        waited for is raised once all are done."""
        if self._indexed_at is None or time.monotonic() - self._indexed_at >= self._resync_s:
            self.index_unindexed()
        due, counts = self._due_ids()
        readings = self._prefetch(due)
        started = [self._submit(release_id, readings.get(release_id)) for release_id in due]
        futures = [future for future in started if future is not None]
        done, _ = wait(futures, timeout=wait_s)
        read = [release for future in done if (release := future.result()) is not None]
        telemetry.observe_pass(read, counts)  # a failed pass (Redis down) leaves the last reading

    def index_unindexed(self) -> None:
        """Releases saved without a due time (by a bot from before the due index, during a
        rolling upgrade) join the index, due at once: run by a pass once every resync period."""
        self._store.index_unindexed()
        self._indexed_at = time.monotonic()

    def _due_ids(self) -> tuple[list[str], dict[tuple[str, str], int]]:
        """The due releases no worker of this replica is working on yet (those still queued
        too: one whose check has come due since moves up), and the releases' tally."""
        with self._in_flight_lock:
            busy = {
                release_id
                for release_id, work in self._in_flight.items()
                if work.running() or work.done()
            }
        due, counts = self._store.release_ids_due(self._clock())
        return [release_id for release_id in due if release_id not in busy], counts

    def _prefetch(self, due: list[str]) -> dict[str, ReadingOf]:
        """The readings of the due releases' due checks, one batch per Prometheus, each on a
        thread of the metrics pool (the records are read without their leases: the check itself
        is decided again under the lease)."""
        if self._checks is None or not due:
            return {}
        now = self._clock()
        releases = [
            (stored.release, self._config.apps[stored.release.app])
            for stored in self._store.get_many(due)
            if stored.release.app in self._config.apps and not stored.release.phase.is_terminal
        ]
        return self._checks.prefetch(releases, now=now, submit=self._metrics_pool.submit)

    def _submit(
        self, release_id: str, reading_of: ReadingOf | None
    ) -> Future[Release | None] | None:
        """The release's work queued for a worker (None: it was queued or started already; a
        queued one whose check has come due since moves up to CHECK_DUE_RANK)."""
        with self._in_flight_lock:
            if (queued := self._in_flight.get(release_id)) is not None:
                if reading_of is not None:
                    self._pool.rerank(queued, CHECK_DUE_RANK, self._work, release_id, reading_of)
                return None
            rank = CHECK_DUE_RANK if reading_of is not None else WAITING_RANK
            future = self._pool.submit(rank, self._work, release_id, reading_of)
            self._in_flight[release_id] = future
        future.add_done_callback(lambda _: self._finished(release_id))
        return future

    def _finished(self, release_id: str) -> None:
        with self._in_flight_lock:
            self._in_flight.pop(release_id, None)

    def _work(self, release_id: str, reading_of: ReadingOf | None) -> Release | None:
        """One release's part of a pass, on a pool thread; the release as read, or None when
        another replica holds it."""
        with self._leases.hold_release(release_id) as stored:  # read as the lease is taken
            if stored is None:
                return None
            with _working_on(stored.release):
                try:
                    self._tick_one(stored, reading_of)
                except Exception:
                    log.exception("tick_crashed", release=release_id)
                    raise
            return stored.release

    def _tick_one(self, stored: StoredRelease, reading_of: ReadingOf | None = None) -> None:
        try:
            applied, reconciled = self._tick_release(stored, reading_of)
            if not applied:
                # What earlier passes left unposted; what a person's action saves while we hold
                # the lease is posted by the next pass.
                delivered = self._deliver(stored)
                if delivered is stored and reconciled:
                    self._reschedule(stored)
            if not reconciled:
                self._store.make_due(stored.release.id)  # the next pass reconciles again
        except TemporaryError as error:
            log.warning("tick_retry_later", release=stored.release.id, error=str(error))

    def _reschedule(self, stored: StoredRelease) -> None:
        """A pass that saved nothing moves the release's due time on (nothing if already due)."""
        now = self._clock()
        due_at = self._due_at(stored.release, now=now)
        if due_at is not None and due_at > now:
            self._store.reschedule(stored, due_at)

    def _due_at(self, release: Release, *, now: datetime | None = None) -> datetime | None:
        """When the release next needs a pass, as the due index keeps it."""
        now = self._clock() if now is None else now
        app = self._config.apps.get(release.app)
        hold_ends_at = None
        if freeze_hold.held_by_freeze(release):
            frozen = self.frozen(release.app)
            hold_ends_at = now if frozen is None else frozen.until
        return schedule.next_due(
            release,
            now=now,
            check_interval_s=app.metrics.interval_s if app else self._resync_s,
            resync_s=self._resync_s,
            hold_ends_at=hold_ends_at,
        )

    def _tick_release(
        self, stored: StoredRelease, reading_of: ReadingOf | None = None
    ) -> tuple[bool, bool]:
        """(applied, reconciled): whether it applied an event (its _apply has delivered what was
        waiting), and whether the cluster could be reconciled. A due metric check comes first
        when it fails: nothing, not even this pass's reconcile of the running canary, stands
        between its verdict and the rollback (the next pass reconciles). A reconcile that fails
        for now never keeps a due metric check from running: a failing check still rolls back."""
        if stored.release.phase.is_terminal:
            return False, True  # only its last Slack messages were left to post
        app = self._config.app(stored.release.app)
        checked = self._check_if_due(stored.release, app, reading_of)
        if isinstance(checked, ChecksFailed):
            return self._apply(stored, checked, actor=BOT_ACTOR).applied, False
        reconciled_at = self._clock()
        observation: Observation | None = None
        try:
            observation = self._cluster.reconcile(stored.release, app)
        except PermanentError as error:
            return self._apply(stored, Fail(reason=str(error)), actor=BOT_ACTOR).applied, True
        except TemporaryError as error:
            log.warning("reconcile_deferred", release=stored.release.id, error=str(error))
        reconciled = observation is not None
        if (aborted := _aborted_outside(stored.release, observation)) is not None:
            return self._apply(stored, aborted, actor=BOT_ACTOR).applied, True
        if checked is not None:  # what comes due after the check is the next pass's business
            return self._apply(stored, checked, actor=BOT_ACTOR).applied, reconciled
        if observation is None:
            return False, False
        now = self._clock()
        event = self._due_event(stored.release, observation, now=now, reconciled_at=reconciled_at)
        applied = event is not None and self._apply(stored, event, actor=BOT_ACTOR).applied
        return applied, True

    def _check_if_due(
        self, release: Release, app: AppConfig, reading_of: ReadingOf | None
    ) -> Event | None:
        """The metric check's event when one is due (its reading prefetched or read now)."""
        now = self._clock()
        if self._checks is None or not self._checks.due(release, app, now=now):
            return None
        return self._checks.run(release, app, now=now, reading_of=reading_of)

    def _due_event(
        self, release: Release, observation: Observation, *, now: datetime, reconciled_at: datetime
    ) -> Event | None:
        match release.phase:
            case Phase.SWITCHING if observation.switched is not None:
                return _switched(release, observation.switched, reconciled_at)
            case Phase.KEEPING_BLUE if release.blue_due_at and now >= release.blue_due_at:
                return BlueRetentionElapsed()
            case Phase.STARTING if observation.canary_ready and self._held_before_traffic(release):
                return None  # ready and taking no traffic, the canary waits out the freeze
            case Phase.STARTING if observation.canary_ready:
                return CanaryReady()
            case Phase.STARTING if now - release.started_at > self._canary_ready_deadline:
                limit = int(self._canary_ready_deadline.total_seconds())
                return Fail(reason=f"the canary was not ready within {limit} s")
            case Phase.VERIFYING if (
                verdict := self._verification_event(release, observation, now=now)
            ) is not None:
                return verdict  # while the Job runs, blue-green's pods still reach the card
            case Phase.RUNNING | Phase.AWAITING_APPROVAL if _ahead(release, observation):
                assert observation.rollout_stage is not None  # _ahead says so
                return RolloutMovedOn(stage_index=observation.rollout_stage)
            case Phase.RUNNING if release.stage_due_at is not None and now >= release.stage_due_at:
                return StageTimerElapsed()
            case Phase.PAUSED if _resume_due(release, now):
                return PauseTimerElapsed()
            case Phase.PAUSED if (
                freeze_hold.held_by_freeze(release) and self.frozen(release.app) is None
            ):
                return Resume(by=BOT_ACTOR)
            case Phase.PROMOTING if observation.promotion_complete:
                return PromotionDone()
            case Phase.ROLLING_BACK if observation.rollback_complete:
                return RollbackDone()
        return _seen_change(release, observation)

    def _verification_event(
        self, release: Release, observation: Observation, *, now: datetime
    ) -> Event | None:
        """The gate's verdict; a passed Job waits out a freeze before its stage widens traffic."""
        event = verification_gate.due_event(release, observation.verification, now=now)
        if isinstance(event, VerificationPassed) and self.frozen(release.app) is not None:
            return None
        return event

    def _held_before_traffic(self, release: Release) -> bool:
        """A freeze keeps a ready canary out of a first stage that gives it public traffic."""
        first_stage = release.plan.stages[0]
        return first_stage.weight > 0 and self.frozen(release.app) is not None

    def _apply(
        self,
        stored: StoredRelease,
        event: Event,
        *,
        actor: str,
        channel: str | None = None,
        override: str | None = None,
    ) -> Outcome:
        """`channel` None: an automatic action (the scheduler's), or one from no Slack channel."""
        with _working_on(stored.release):
            action = type(event).__name__
            if override is not None and not self.may_break_glass(actor):
                telemetry.count_transition(action, applied=False)
                refusal = freezes.override_refused(actor)
                release = stored.release
                self._audit(
                    release.app,
                    release.id,
                    actor,
                    action,
                    f"refused: {refusal}",
                    channel=channel,
                    override=override,
                )
                return Outcome(False, refusal, release)
            return self._apply_in_context(
                stored, event, actor=actor, channel=channel, override=override
            )

    def _decide(
        self, release: Release, event: Event, *, now: datetime, override: str | None, actor: str
    ) -> tuple[Event, Accepted | Refused]:
        """The machine's decision, with the freeze's say: a widening step during a freeze is
        refused (a person's) or becomes a hold at the gate (the stage timer's), unless a
        break-glass override lets it through; the event actually applied comes back too."""
        decided = transition(release, event, now=now)
        if not isinstance(decided, Accepted):
            return event, decided
        if override is not None:
            overridden, effects = freeze_hold.overridden(
                decided.release,
                decided.effects,
                by=actor,
                reason=override,
                at=now,
                action=type(event).__name__,
            )
            return event, Accepted(release=overridden, effects=effects)
        if isinstance(event, CanaryReady) or not freeze_hold.widens(release, decided.release):
            return event, freeze_hold.resume_notice(
                release, decided, resumed_by_bot=_resumed_by_bot(event)
            )
        frozen = self.frozen(release.app)
        if frozen is None:
            return event, decided
        if not isinstance(event, StageTimerElapsed):
            what = f"{type(event).__name__} (it would widen the canary's traffic)"
            return event, Refused(reason=freezes.refused_while_frozen(release.app, frozen, what))
        hold = Pause(by=BOT_ACTOR, reason=frozen.describe())
        return hold, freeze_hold.held(release, transition(release, hold, now=now), frozen)

    def _apply_in_context(
        self,
        stored: StoredRelease,
        event: Event,
        *,
        actor: str,
        channel: str | None,
        override: str | None,
    ) -> Outcome:
        asked = event
        for _ in range(SAVE_ATTEMPTS):
            event, decided = self._decide(
                stored.release, asked, now=self._clock(), override=override, actor=actor
            )
            action = type(event).__name__
            if not isinstance(decided, Accepted):
                telemetry.count_transition(action, applied=False)
                self._audit(
                    stored.release.app,
                    stored.release.id,
                    actor,
                    action,
                    f"refused: {decided.reason}",
                    channel=channel,
                    override=override,
                )
                return Outcome(False, decided.reason, stored.release)
            release = with_outbox(decided.release, decided.effects)
            detail = _event_detail(event)
            entry = self._entry(
                release, actor, action, "applied", detail, channel=channel, override=override
            )
            try:
                saved = self._store.save(
                    stored,
                    release,
                    entry=entry,
                    finished=release.phase.is_terminal,
                    due_at=self._due_at(release),
                )
            except RevisionConflict:
                reread = self._store.get(stored.release.id)
                if reread is None:
                    raise
                stored = reread
                continue
            self._reached(CrashPoint.SAVED)
            # under the lease, so no scheduler pass reconciles it meanwhile and takes the
            # reconcile's findings (the switch and its times) for its own
            with self._lease_soon(saved) as leased:
                reconciled_at = self._clock()
                reconciled = None
                try:  # the cluster first: no log line, counter, App Home or Slack call before it
                    if ReconcileCluster() in decided.effects:
                        reconciled = self._reconcile(saved if leased is None else leased)
                    self._reached(CrashPoint.RECONCILED)
                finally:
                    self._report_applied(entry, before=stored.release, after=release, event=event)
                saved = self._deliver(saved)
                if leased is not None:
                    return self._after_reconcile(saved, action, reconciled, reconciled_at)
            return Outcome(True, f"{action} applied to {saved.release.app}.", saved.release)
        raise RevisionConflict(f"{stored.release.app} kept changing; nothing applied, try again")

    def _report_applied(
        self, entry: HistoryEntry, *, before: Release, after: Release, event: Event
    ) -> None:
        """A saved transition in the log, the counters and App Home (once the cluster is told)."""
        _log_applied(entry, app=after.app)
        self._refresh_home()
        telemetry.count_transition(entry.action, applied=True)
        telemetry.count_rollback(before, after, event)

    @contextmanager
    def _lease_soon(self, saved: StoredRelease) -> Iterator[StoredRelease | None]:
        """The release under its lease: `saved` itself when this thread holds the lease already
        (a scheduler pass's own transition: nothing to read again before the reconcile), else as
        read when the lease is taken, waiting a moment for a scheduler pass that holds it; None
        when it is still held after LEASE_WAIT_S."""
        if self._leases.holds(saved.release.id):
            yield saved
            return
        release_id = saved.release.id
        deadline = time.monotonic() + LEASE_WAIT_S
        while True:
            with self._leases.hold_release(release_id) as held:
                if held is not None or time.monotonic() >= deadline:
                    yield held
                    return
            time.sleep(LEASE_RETRY_S)

    def _after_reconcile(
        self,
        saved: StoredRelease,
        action: str,
        reconciled: Observation | PermanentError | None,
        reconciled_at: datetime,
    ) -> Outcome:
        """What the reconcile right after a person's action found comes next: a permanent
        refusal (the release fails, or a refused switch goes back to waiting), a switch done."""
        app = saved.release.app
        if isinstance(reconciled, PermanentError):
            self._apply(saved, Fail(reason=str(reconciled)), actor=BOT_ACTOR)
            return Outcome(False, f"the cluster refused {action} for {app}: {reconciled}")
        if isinstance(reconciled, Observation) and reconciled.switched is not None:
            switched = _switched(saved.release, reconciled.switched, reconciled_at)
            self._apply(saved, switched, actor=BOT_ACTOR)
        return Outcome(True, f"{action} applied to {app}.", saved.release)

    def _reconcile(self, stored: StoredRelease) -> Observation | PermanentError | None:
        """Bring the cluster to the saved state now: what it saw, or the permanent error that
        stopped it (the caller fails the release at once); on a temporary one (None) the next
        pass does it again."""
        try:
            return self._cluster.reconcile(stored.release, self._config.app(stored.release.app))
        except PermanentError as error:
            log.warning("reconcile_refused", release=stored.release.id, error=str(error))
            return error
        except ReleaseBotError as error:
            log.warning("reconcile_deferred", release=stored.release.id, error=str(error))
            try:
                self._store.make_due(stored.release.id)
            except TemporaryError as unsaved:  # still due at its saved time, or retried then
                log.warning("due_now_unsaved", release=stored.release.id, error=str(unsaved))
            return None

    def _deliver(self, stored: StoredRelease) -> StoredRelease:
        """Post the card and the outbox's thread messages under the release's lease, so two
        replicas never post the same one; what Slack refuses, or the store cannot take (Redis
        down), waits for the next pass: the transition is saved, so whoever caused it must not
        hear that nothing changed."""
        if not (stored.release.outbox or stored.release.card_stale):
            return stored
        with _working_on(stored.release):
            try:
                return self._deliver_under_lease(stored)
            except TemporaryError as error:
                log.warning("delivery_deferred", release=stored.release.id, error=str(error))
                return stored

    def _deliver_under_lease(self, stored: StoredRelease) -> StoredRelease:
        with self._leases.hold_release(stored.release.id) as fresh:
            if fresh is None:
                return stored
            release, refs, posted = fresh.release, None, set()
            try:
                refs = self._announcer.show_card(release)
                shown = release.evolve(card_ts=refs.card_ts, thread_ts=refs.thread_ts)
                for notice in release.outbox:
                    notify = Notify(
                        kind=notice.kind, text=notice.text, in_channel=notice.in_channel
                    )
                    self._announcer.notify(shown, notify)
                    posted.add(notice.id)
                    self._share_chart(shown, notify)
            except ReleaseBotError as error:
                log.warning("slack_deferred", release=release.id, error=str(error))
            if refs is None:
                return fresh
            return self._record_delivery(fresh, refs, posted)

    def _share_chart(self, release: Release, notice: Notify) -> None:
        """After its message is out, the chart that goes with it (snapshots, auto-rollbacks)."""
        if self._checks is None:
            return
        chart = self._checks.chart(release, self._config.app(release.app), notice)
        if chart is not None:
            self._announcer.share_chart(release, chart, in_channel=notice.in_channel)

    def _record_delivery(
        self, stored: StoredRelease, refs: SlackRefs, posted: set[int]
    ) -> StoredRelease:
        card_current = True  # the card shows `stored`; a newer save makes it stale again
        for _ in range(SAVE_ATTEMPTS):
            release = stored.release
            delivered = release.evolve(
                card_ts=refs.card_ts,
                thread_ts=refs.thread_ts,
                card_stale=release.card_stale and not card_current,
                outbox=tuple(notice for notice in release.outbox if notice.id not in posted),
            )
            try:
                return self._store.save(
                    stored,
                    delivered,
                    entry=None,
                    finished=delivered.phase.is_terminal,
                    due_at=self._due_at(delivered),
                    only_sooner=True,  # a reconcile that failed since wants the next pass
                )
            except RevisionConflict:
                reread = self._store.get(release.id)
                if reread is None:
                    raise
                stored, card_current = reread, False
        raise RevisionConflict(f"could not record what Slack was sent for {stored.release.app}")

    def _reached(self, point: CrashPoint) -> None:
        if point is self._crash_at:
            log.warning("crashing_on_purpose", point=point.value)
            os._exit(CRASH_EXIT_CODE)

    def _entry(
        self,
        release: Release,
        actor: str,
        action: str,
        outcome: str,
        detail: str = "",
        *,
        channel: str | None,
        override: str | None = None,
    ) -> HistoryEntry:
        """The audit entry of an applied transition, saved with the release in one write."""
        return HistoryEntry(
            at=self._clock().isoformat(),
            release_id=release.id,
            actor=actor,
            action=action,
            outcome=outcome,
            detail=detail,
            stage=release.stage_index,
            phase=release.phase.value,
            app=release.app,
            channel=channel,
            override=override,
        )

    def _audit(
        self,
        app: str,
        release_id: str,
        actor: str,
        action: str,
        outcome: str,
        *,
        channel: str | None,
        override: str | None = None,
    ) -> None:
        """An audit entry for what changed no release: refusals, locks, unlocks and freezes."""
        entry = HistoryEntry(
            at=self._clock().isoformat(),
            release_id=release_id,
            actor=actor,
            action=action,
            outcome=outcome,
            app=app,
            channel=channel,
            override=override,
        )
        self._store.append_history(app, entry)


@contextmanager
def _working_on(release: Release) -> Iterator[None]:
    """Every log line while the service works `release` (the adapters' too) names it."""
    with structlog.contextvars.bound_contextvars(
        release_id=release.id, app=release.app, version=release.version, strategy=release.kind.value
    ):
        yield


def _log_applied(entry: HistoryEntry, *, app: str) -> None:
    """The audit entry of a saved transition, in the log of the replica that applied it."""
    log.info(
        "transition_applied",
        app=app,
        release=entry.release_id,
        action=entry.action,
        actor=entry.actor,
        stage=entry.stage,
        phase=entry.phase,
    )


def _canary_shape(
    config: BotConfig, app: AppConfig, plan_name: str | None
) -> tuple[Plan, BlueGreenTimes | None]:
    return (config.plan(plan_name) if plan_name else app.plan), None


def _blue_green_shape(
    config: BotConfig, app: AppConfig, plan_name: str | None
) -> tuple[Plan, BlueGreenTimes | None]:
    return app.bluegreen.plan(), app.bluegreen.times()


def _hybrid_shape(
    config: BotConfig, app: AppConfig, plan_name: str | None
) -> tuple[Plan, BlueGreenTimes | None]:
    canary, _ = _canary_shape(config, app, plan_name)
    return app.bluegreen.hybrid_plan(canary), None


_SHAPES = {
    ReleaseKind.CANARY: _canary_shape,
    ReleaseKind.BLUE_GREEN: _blue_green_shape,
    ReleaseKind.HYBRID: _hybrid_shape,
    # the Rollout's own steps replace the app's plan once preflight has read them
    ReleaseKind.ARGO_CANARY: _canary_shape,
    ReleaseKind.ARGO_BLUE_GREEN: _canary_shape,
}
"""A release kind's plan and blue-green timers for an app (and the `--plan` asked for)."""
_KIND_NAMES = {
    ReleaseKind.CANARY: "a canary",
    ReleaseKind.BLUE_GREEN: "a blue-green release",
    ReleaseKind.HYBRID: "a hybrid release",
    ReleaseKind.ARGO_CANARY: "an Argo Rollouts canary",
    ReleaseKind.ARGO_BLUE_GREEN: "an Argo Rollouts blue-green release",
}
_OWN_STEPS = "an Argo Rollout walks its own steps (its spec.strategy)"


def _switched(release: Release, timing: SwitchTiming, reconciled_at: datetime) -> Switched:
    """The switch's times counted from its request (the approval's arrival), not from the
    reconcile that made it."""
    requested = release.switch_requested_at or reconciled_at
    before = max((reconciled_at - requested).total_seconds(), 0.0)
    return Switched(
        selector_s=None if timing.selector_s is None else before + timing.selector_s,
        endpoints_s=None if timing.endpoints_s is None else before + timing.endpoints_s,
    )


def _retry_refusal(app_name: str, last: Release | None) -> str | None:
    """Why `/release retry` has nothing to retry, or None."""
    if last is None:
        return f"{app_name} has no release to retry."
    if not last.kind.drives_argo:
        return (
            f"retry is for Argo Rollouts; start {app_name} {last.version} again with "
            f"`/release {last.kind.value} {app_name} {last.version}`."
        )
    if last.phase is not Phase.ROLLED_BACK:
        return f"{app_name}'s last release ({last.version}) is {last.phase.value}, not aborted."
    return None


def _ahead(release: Release, observation: Observation) -> bool:
    """An Argo Rollout promoted outside the bot, into a stage its release has not reached."""
    reached = observation.rollout_stage
    return reached is not None and reached > release.stage_index


def _seen_change(release: Release, observation: Observation) -> Event | None:
    """What the card shows of the cluster changed: blue's and green's pods, a Rollout's status."""
    if observation.pods is not None and observation.pods != release.pods:
        return PodsObserved(pods=observation.pods)
    if observation.rollout is not None and observation.rollout != release.rollout:
        return RolloutObserved(view=observation.rollout)
    return None


def _aborted_outside(release: Release, observation: Observation | None) -> RolloutAborted | None:
    """Argo aborted the Rollout, not at the bot's request (which is ROLLING_BACK)."""
    if observation is None or observation.aborted is None:
        return None
    if release.phase is Phase.ROLLING_BACK:
        return None
    return RolloutAborted(abort=observation.aborted)


def _resumed_by_bot(event: Event) -> bool:
    return isinstance(event, Resume) and event.by == BOT_ACTOR


def _resume_due(release: Release, now: datetime) -> bool:
    due = release.pause.resume_due_at if release.pause else None
    return due is not None and now >= due


def _event_detail(event: Event) -> str:
    reason = getattr(event, "reason", "")
    return str(reason)
