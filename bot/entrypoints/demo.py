"""`release-bot demo`: a complete canary release in a terminal, with nothing configured.

Called by bot.entrypoints.cli (the `demo` subcommand). The real release service, state machine and
Redis store (a temporary redis-server) run a release of the demo app shop-api, with its stages
compressed to seconds. What would need Kubernetes, Prometheus and Slack is simulated and says so:
SimulatedCluster stands in for the cluster, SimulatedMetrics for Prometheus (the bot's real analysis
checks its readings every second), a simulated person clicks Approve, and TerminalAnnouncer prints
the Slack messages the bot would post. `--scenario rollback` runs a bad canary whose error rate
climbs past the threshold: the analysis rolls it back. `--scenario bluegreen` runs two blue-green
releases: a bad green, switched back to blue by the watch window's checks, then a good one,
switched to, watched, blue kept and then retired. `--scenario hybrid` previews a full-size green
beside blue, then widens its production traffic in the canary stages."""

from __future__ import annotations

import itertools
import logging
import math
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import NamedTuple

import redis
import structlog

from bot.application.checks import CanaryChecks
from bot.application.service import ReleaseService
from bot.core.analysis import (
    BY_TRACK,
    Metric,
    MetricsUnavailable,
    Reading,
    Sides,
    TrackReading,
    Trend,
)
from bot.core.apps import (
    AppConfig,
    AuthorizationConfig,
    BlueGreenConfig,
    BotConfig,
    ChannelRef,
    IstioRouter,
    MetricsConfig,
)
from bot.core.chart import ChartImage
from bot.core.durations import format_duration
from bot.core.errors import ReleaseBotError
from bot.core.machine import Approve, Notify
from bot.core.plan import Plan, Stage
from bot.core.ports import Observation, PreflightResult, SlackRefs, SwitchTiming
from bot.core.release import BlueGreenPods, Phase, Release, ReleaseKind, desired_traffic
from bot.core.text import percent, plan_text
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore, connect
from bot.slack.cards import (
    CardMessage,
    is_alarm,
    release_card,
    render_text,
    rollback_alert,
    thread_notice,
)

EXIT_OK = 0
EXIT_DEMO_BROKE = 1
EXIT_MISSING_REDIS = 2
EXIT_INTERRUPTED = 130

APP = "shop-api"
STABLE_VERSION = "v1.0.0"
NEW_VERSION = "v1.1.0"
FIXED_VERSION = "v1.1.1"  # the blue-green scenario's second, good release
DEMO_CHANNEL = "C0DEMOCHAN"
REQUESTER = "U0DEMODEV"  # simulated person who starts the release
APPROVER = "U0DEMOLEAD"  # simulated person who clicks Approve (four-eyes: not the requester)
STABLE_PODS = 4

TICK_S = 0.5  # the scheduler's pass, compressed like the stages
APPROVER_DELAY_S = 1.0  # the simulated person takes a moment to click
DEADLINE_S = 30.0  # a healthy run takes about 12 s

DEMO_PLAN = Plan(
    name="demo",
    stages=(
        Stage(weight=0, duration_s=2, header_routed=True),
        Stage(weight=5, duration_s=5),  # time for four checks: a bad canary fails the fourth
        Stage(weight=50, duration_s=2, needs_approval=True),
        Stage(weight=100, duration_s=0),
    ),
)

DEMO_METRICS = MetricsConfig.model_validate(
    {
        "interval": "1s",
        "window": "5s",
        "min_requests": 20,
        "failure_limit": 0,  # the first failed check rolls back
        "error_rate": {"max": 0.05},
        "p99_latency_ms": {"max": 300.0},
        "qps": {"min": 1.0},
        "snapshot_interval": "2s",
    }
)

DEMO_APP = AppConfig(
    name=APP,
    namespace="shop",
    workload=APP,
    container=None,
    router=IstioRouter(
        provider="istio", virtual_service=APP, destination_rule=APP, host="shop-api.shop"
    ),
    slack_channel=ChannelRef(DEMO_CHANNEL),
    plan=DEMO_PLAN,
    metrics=DEMO_METRICS,
    alert_mention="<!here>",
    authorization=AuthorizationConfig(four_eyes=True),
    bluegreen=BlueGreenConfig.model_validate(
        {
            "preview_checks": True,
            "watch_window": "6s",  # time for four checks: a bad green fails the fourth
            "check_interval": "1s",
            "retention": "2s",
            "scale_down_grace": "1s",
        }
    ),
)


class DemoError(Exception):
    """The demo cannot run or did not end as its scenario intends; the message says why."""


# What a person sees: Slack messages, and asides from the simulated world.


class Transcript:
    """Prints the demo's lines at once (flushed), so a terminal or a pipe sees them as they come."""

    def message(self, label: str, message: CardMessage, *, indent: int = 0, bar: str = "│") -> None:
        self.quoted(label, render_text(message.blocks).splitlines(), indent=indent, bar=bar)

    def quoted(self, label: str, lines: list[str], *, indent: int = 0, bar: str = "│") -> None:
        pad = " " * indent
        print(f"\n{pad}{label}", flush=True)
        for line in lines:
            print(f"{pad}  {bar} {line}", flush=True)

    def aside(self, source: str, text: str) -> None:
        print(f"  · {source}: {text}", flush=True)

    def line(self, text: str = "") -> None:
        print(text, flush=True)


class TerminalAnnouncer:
    """AnnouncerPort for the demo: prints each Slack message as it would be posted, sends nothing.

    The card is printed whole when posted and when its phase or stage changes; the updates in
    between (every metric check refreshes it) print only the lines that changed. Thread replies
    are indented under it, channel alerts marked. Message timestamps are made up in Slack's form
    (1700000000.000100).
    """

    def __init__(self, *, config: BotConfig, transcript: Transcript) -> None:
        self._config = config
        self._transcript = transcript
        self._serials = itertools.count(1)
        self._shown: dict[str, tuple[tuple[Phase, int], list[str]]] = {}
        """Per release: the phase and stage its card was last printed in, and its lines."""

    def show_card(self, release: Release) -> SlackRefs:
        lines = render_text(release_card(release, now=datetime.now(UTC)).blocks).splitlines()
        status = (release.phase, release.stage_index)
        previous_status, previous_lines = self._shown.get(release.id, (None, []))
        self._shown[release.id] = (status, lines)
        if release.card_ts is None:
            ts = self._next_ts()
            self._transcript.quoted(f"[card posted] in {release.channel}, ts {ts}", lines)
        elif status != previous_status:
            ts = release.card_ts
            self._transcript.quoted(f"[card updated] ts {ts}", lines)
        else:
            ts = release.card_ts
            changed = [line for line in lines if line not in previous_lines]
            if changed:
                self._transcript.quoted(f"[card updated] ts {ts}, changed lines only:", changed)
        return SlackRefs(card_ts=ts, thread_ts=ts)

    def notify(self, release: Release, notice: Notify) -> None:
        reply = thread_notice(notice, release)
        label = f"↳ [thread] reply under the card, ts {self._next_ts()}"
        self._transcript.message(label, reply, indent=4)
        if notice.in_channel:
            mention = self._config.app(release.app).alert_mention or None
            alert = rollback_alert(release, notice, mention=mention)
            kind = "channel alert" if is_alarm(notice) else "channel post"
            label = f"[{kind}] in {release.channel}, ts {self._next_ts()}"
            self._transcript.message(label, alert, bar="!")

    def share_chart(self, release: Release, chart: ChartImage, *, in_channel: bool) -> None:
        where = f"in {release.channel}" if in_channel else "in the thread"
        self._transcript.quoted(f"[chart] {chart.filename} {where}", [chart.alt_text], indent=4)

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._serials) * 100:06d}"


@dataclass
class _SimulatedApp:
    """One app's objects in the simulated cluster."""

    stable_version: str
    canary_version: str | None = None
    canary_ready: bool = False
    canary_weight: int = 0
    header_routed: bool = False
    stable_rolling: bool = False  # promotion started: stable is being rolled to the new version
    draining: bool = False  # rollback started: all traffic is back on stable


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryTraffic:
    weight: int
    """Percent of public traffic."""
    header_routed: bool
    """Requests with the x-canary header reach it (at 0 %)."""


class SimulatedCluster:
    """ClusterPort for the demo: an in-memory stand-in for Kubernetes, no cluster is touched.

    Stable runs v1.0.0 on 4 pods. Each reconcile moves one step and says what it did: a new
    canary becomes ready on the next reconcile, weights follow the release's stage at once
    (the canary's pods scale with its share), promotion and rollback complete on the next one.
    """

    def __init__(self, *, transcript: Transcript) -> None:
        self._transcript = transcript
        self._apps: dict[str, _SimulatedApp] = {}

    def stable_version(self, app: AppConfig, kind: ReleaseKind) -> str:
        return self._app(app).stable_version

    def canary_traffic(self, app: AppConfig) -> CanaryTraffic:
        """What the canary receives now (for SimulatedMetrics)."""
        state = self._app(app)  # a canary not yet or no longer there has weight 0, no header
        return CanaryTraffic(weight=state.canary_weight, header_routed=state.header_routed)

    def preflight(self, app: AppConfig, version: str, kind: ReleaseKind) -> PreflightResult:
        summary = (
            f"Preflight on the simulated cluster passed for {app.namespace}/{app.workload} "
            f"{version}: readiness probes, version label, versioned ConfigMaps, quota room."
        )
        return PreflightResult(blocked=False, summary=summary)

    def reconcile(self, release: Release, app: AppConfig) -> Observation:
        state = self._app(app)
        if release.kind is ReleaseKind.BLUE_GREEN:
            return self._blue_green(state, release)
        match release.phase:
            case Phase.STARTING:
                return self._start_canary(state, release)
            case Phase.PROMOTING:
                return self._promote(state, release)
            case Phase.ROLLING_BACK | Phase.ROLLED_BACK | Phase.FAILED:
                return self._roll_back(state, release)
            case Phase.SUCCEEDED:
                return self._promote(state, release)
            case _:
                self._route(state, release)
                return Observation(canary_ready=state.canary_ready)

    def _app(self, app: AppConfig) -> _SimulatedApp:
        return self._apps.setdefault(app.name, _SimulatedApp(stable_version=STABLE_VERSION))

    def _start_canary(self, state: _SimulatedApp, release: Release) -> Observation:
        if state.canary_version != release.version and release.kind is ReleaseKind.HYBRID:
            state.canary_version, state.canary_ready = release.version, False
            self._say(
                f"created green Deployment {release.app}-canary ({release.version}, "
                f"{STABLE_PODS} pods, as big as blue) and Service {release.app}-green selecting "
                "only its pods; the VirtualService sends it nothing yet"
            )
        elif state.canary_version != release.version:
            state.canary_version, state.canary_ready = release.version, False
            self._say(f"created Deployment {release.app}-canary ({release.version}, 1 pod)")
        elif not state.canary_ready:
            state.canary_ready = True
            self._say(f"{release.app}-canary pod is ready")
        return Observation(canary_ready=state.canary_ready)

    def _route(self, state: _SimulatedApp, release: Release) -> None:
        traffic = desired_traffic(release)
        wanted = (traffic.canary_weight, traffic.header_routing)
        if (state.canary_weight, state.header_routed) == wanted:
            return
        state.canary_weight, state.header_routed = wanted
        header = ", header x-canary: always goes to the canary" if state.header_routed else ""
        pods = max(1, math.ceil(STABLE_PODS * state.canary_weight / 100))
        if release.kind is ReleaseKind.HYBRID:
            pods = STABLE_PODS  # green is as big as blue from the start
        self._say(
            f"VirtualService {release.app}: stable {state.stable_version} "
            f"{100 - state.canary_weight} % · canary {release.version} {state.canary_weight} %"
            f"{header} (canary {pods} of {STABLE_PODS} pods)"
        )

    def _promote(self, state: _SimulatedApp, release: Release) -> Observation:
        if state.stable_version == release.version:
            return Observation(promotion_complete=True)
        if not state.stable_rolling:
            self._route(state, release)
            state.stable_rolling = True
            self._say(f"rolling stable Deployment {release.app} to {release.version}")
            return Observation()
        state.stable_version, state.stable_rolling = release.version, False
        self._remove_canary(state, release)
        self._say(f"stable runs {release.version} on {STABLE_PODS} pods; canary removed")
        return Observation(promotion_complete=True)

    def _roll_back(self, state: _SimulatedApp, release: Release) -> Observation:
        if state.canary_version is None:
            return Observation(rollback_complete=True)
        if not state.draining:
            state.canary_weight, state.header_routed, state.draining = 0, False, True
            self._say(f"VirtualService {release.app}: stable {state.stable_version} 100 %")
            return Observation()
        self._remove_canary(state, release)
        self._say(f"deleted Deployment {release.app}-canary; stable {state.stable_version} only")
        return Observation(rollback_complete=True)

    def _blue_green(self, state: _SimulatedApp, release: Release) -> Observation:
        """Blue runs the stable version; green, beside it, takes production after the switch."""
        seen = self._blue_green_step(state, release)
        return replace(seen, pods=_pods(state))

    def _blue_green_step(self, state: _SimulatedApp, release: Release) -> Observation:
        match release.phase:
            case Phase.STARTING:
                return self._start_green(state, release)
            case Phase.SWITCHING:
                return self._switch(state, release, to=release.version)
            case Phase.PROMOTING:
                return self._retire_blue(state, release)
            case Phase.ROLLING_BACK:
                if state.canary_weight:
                    self._switch(state, release, to=state.stable_version)
                if state.canary_version is not None:
                    self._remove_canary(state, release)
                    self._say(f"deleted Deployment {release.app}-green and its preview Service")
                return Observation(rollback_complete=True)
        return Observation(canary_ready=state.canary_ready)

    def _start_green(self, state: _SimulatedApp, release: Release) -> Observation:
        if state.canary_version != release.version:
            state.canary_version, state.canary_ready = release.version, False
            self._say(
                f"created Deployment {release.app}-green ({release.version}, {STABLE_PODS} pods) "
                f"beside blue, and Service {release.app}-green selecting only its pods"
            )
        elif not state.canary_ready:
            state.canary_ready, state.header_routed = True, True
            self._say(
                f"{release.app}-green's {STABLE_PODS} pods are ready; testers use the preview"
            )
        return Observation(canary_ready=state.canary_ready)

    def _switch(self, state: _SimulatedApp, release: Release, *, to: str) -> Observation:
        serving = release.version if to == release.version else state.stable_version
        state.canary_weight = 100 if to == release.version else 0
        state.header_routed = False
        self._say(f"Service {release.app} selector now version: {serving} (one update)")
        return Observation(switched=SwitchTiming(selector_s=0.004, endpoints_s=0.021))

    def _retire_blue(self, state: _SimulatedApp, release: Release) -> Observation:
        if not state.stable_rolling:
            state.stable_rolling = True
            self._say(f"scaled blue Deployment {release.app} ({state.stable_version}) to 0")
            return Observation()
        self._say(f"deleted blue Deployment {release.app} and Service {release.app}-green")
        state.stable_version, state.stable_rolling = release.version, False
        self._remove_canary(state, release)
        return Observation(promotion_complete=True)

    def _remove_canary(self, state: _SimulatedApp, release: Release) -> None:
        state.canary_version, state.canary_ready, state.draining = None, False, False
        state.canary_weight, state.header_routed = 0, False

    def _say(self, text: str) -> None:
        self._transcript.aside("simulated cluster", text)


def _pods(state: _SimulatedApp) -> BlueGreenPods:
    green = STABLE_PODS if state.canary_ready else 0
    blue = 0 if state.stable_rolling else STABLE_PODS
    return BlueGreenPods(
        blue_ready=blue, blue_desired=blue, green_ready=green, green_desired=green or STABLE_PODS
    )


class _Answers(NamedTuple):
    """How one track answers its requests in one reading."""

    error_rate: float
    """Failed share, a fraction: 0.003 is 0.3 %."""
    p99_ms: float


class SimulatedMetrics:
    """MetricsPort for the demo, standing in for Prometheus: simulated readings, nothing is queried.

    The bot's real analysis (CanaryChecks, bot.core.analysis.judge) judges them as it judges
    Prometheus' numbers. Traffic follows the simulated cluster: shop-api's 200 req/s split by the
    canary's weight, or a few requests by header at 0 %. Stable answers 0.3 % errors at p99
    110 ms. A good canary reads 0.2-0.4 % errors at about 120 ms. A bad one is fine by header,
    but once it takes public traffic its error rate climbs reading by reading: 0.6 %, 1.8 %,
    4.1 %, then 12.4 %. Each reading is printed as an aside; `trend` replays the readings over
    the window, so the snapshots' sparklines show what the checks saw.
    """

    PUBLIC_QPS = 200.0
    HEADER_QPS = 2.0  # testers' requests with the x-canary header while the canary is at 0 %
    STABLE = _Answers(0.003, 110.0)
    GOOD_CANARY = (_Answers(0.003, 118.0), _Answers(0.004, 122.0), _Answers(0.002, 121.0))
    BAD_CANARY = (
        _Answers(0.006, 124.0),
        _Answers(0.018, 131.0),
        _Answers(0.041, 139.0),
        _Answers(0.124, 171.0),  # and so on: it stays at its worst
    )

    def __init__(
        self, *, cluster: SimulatedCluster, bad_canary: bool, transcript: Transcript
    ) -> None:
        self._cluster = cluster
        self._bad_canary = bad_canary
        self._transcript = transcript
        self._readings: list[Reading] = []
        self._public_readings = 0

    def next_release(self, *, bad: bool) -> None:
        """The next release's canary (or green) is good or bad; its readings start afresh."""
        self._bad_canary, self._public_readings, self._readings = bad, 0, []

    def covers(self, app: AppConfig) -> bool:
        """Every app has simulated metrics."""
        return True

    def batch_of(self, app: AppConfig, sides: Sides = BY_TRACK) -> str:
        """Each app alone: nothing is queried, so there is nothing to batch."""
        return app.name

    def read_many(
        self, apps: Sequence[tuple[AppConfig, Sides]], *, at: datetime
    ) -> dict[str, Reading | MetricsUnavailable]:
        return {app.name: self.read(app, at=at, sides=sides) for app, sides in apps}

    def read(self, app: AppConfig, *, at: datetime, sides: Sides = BY_TRACK) -> Reading:
        """The simulated canary's (or green's) traffic against stable's (or blue's)."""
        traffic = self._cluster.canary_traffic(app)
        public_share = traffic.weight / 100
        canary_qps = self.PUBLIC_QPS * public_share
        if traffic.weight == 0 and traffic.header_routed:
            canary_qps = self.HEADER_QPS
        window = app.metrics.window_s
        canary = self._canary_answers(public=traffic.weight > 0)
        reading = Reading(
            canary=_track(qps=canary_qps, window_s=window, answers=canary),
            stable=_track(
                qps=self.PUBLIC_QPS * (1 - public_share), window_s=window, answers=self.STABLE
            ),
            window_s=window,
            at=at,
        )
        self._readings.append(reading)
        self._transcript.aside(
            "simulated metrics",
            f"canary {_described(reading.canary)} · stable {_described(reading.stable)}",
        )
        return reading

    def trend(self, app: AppConfig, *, at: datetime, points: int, sides: Sides = BY_TRACK) -> Trend:
        """Per point, the latest reading taken by then."""
        window = app.metrics.window_s
        step = timedelta(seconds=window / points)
        start = at - step * points
        before_first = Reading(  # the canary was starting: stable served everyone
            canary=_track(qps=0.0, window_s=window, answers=self.STABLE),
            stable=_track(qps=self.PUBLIC_QPS, window_s=window, answers=self.STABLE),
            window_s=window,
            at=start,
        )
        shown = [
            next(
                (reading for reading in reversed(self._readings) if reading.at <= start + step * n),
                before_first,
            )
            for n in range(1, points + 1)
        ]
        canary = [_by_metric(reading.canary) for reading in shown]
        stable = [_by_metric(reading.stable) for reading in shown]
        return Trend(
            canary={metric: tuple(values[metric] for values in canary) for metric in Metric},
            stable={metric: tuple(values[metric] for values in stable) for metric in Metric},
        )

    def _canary_answers(self, *, public: bool) -> _Answers:
        if not (public and self._bad_canary):
            return self.GOOD_CANARY[len(self._readings) % len(self.GOOD_CANARY)]
        answers = self.BAD_CANARY[min(self._public_readings, len(self.BAD_CANARY) - 1)]
        self._public_readings += 1
        return answers


def _track(*, qps: float, window_s: int, answers: _Answers) -> TrackReading:
    """A track serving `qps` over the window; with no requests it has no error rate nor p99."""
    if qps == 0:
        return TrackReading(requests=0.0, qps=0.0, error_rate=None, p99_ms=None)
    return TrackReading(
        requests=qps * window_s, qps=qps, error_rate=answers.error_rate, p99_ms=answers.p99_ms
    )


def _by_metric(track: TrackReading) -> dict[Metric, float | None]:
    return {
        Metric.QPS: track.qps,
        Metric.ERROR_RATE: track.error_rate,
        Metric.P99_LATENCY: track.p99_ms,
    }


def _described(track: TrackReading) -> str:
    if not track.qps:
        return "no requests"
    assert track.error_rate is not None and track.p99_ms is not None  # _track sets them with qps
    return f"{track.qps:g} req/s, {track.error_rate * 100:g} % errors, p99 {track.p99_ms:g} ms"


# The run.


@dataclass(frozen=True, slots=True)
class DemoRelease:
    """One release a scenario runs, and how it must end."""

    version: str
    bad: bool
    intended: Phase


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    kind: ReleaseKind
    releases: tuple[DemoRelease, ...]

    @property
    def bad_canary(self) -> bool:
        return self.releases[0].bad


_SCENARIOS = {
    "canary": Scenario(
        "canary", ReleaseKind.CANARY, (DemoRelease(NEW_VERSION, False, Phase.SUCCEEDED),)
    ),
    "rollback": Scenario(
        "rollback", ReleaseKind.CANARY, (DemoRelease(NEW_VERSION, True, Phase.ROLLED_BACK),)
    ),
    "hybrid": Scenario(
        "hybrid", ReleaseKind.HYBRID, (DemoRelease(NEW_VERSION, False, Phase.SUCCEEDED),)
    ),
    "bluegreen": Scenario(
        "bluegreen",
        ReleaseKind.BLUE_GREEN,
        (
            DemoRelease(NEW_VERSION, True, Phase.ROLLED_BACK),
            DemoRelease(FIXED_VERSION, False, Phase.SUCCEEDED),
        ),
    ),
}


class DemoRun:
    """Drives one release like the bot's scheduler and its users would: start, ticks, clicks."""

    def __init__(self, *, scenario: Scenario, store: ReleaseStore, transcript: Transcript) -> None:
        config = BotConfig(
            source="(built into release-bot demo)",
            apps={APP: DEMO_APP},
            plans={DEMO_PLAN.name: DEMO_PLAN},
        )
        self._store = store
        self._transcript = transcript
        self._waiting_since: float | None = None
        self._kind = scenario.kind
        cluster = SimulatedCluster(transcript=transcript)
        self._metrics = SimulatedMetrics(
            cluster=cluster, bad_canary=scenario.bad_canary, transcript=transcript
        )
        self._service = ReleaseService(
            config=config,
            store=store,
            leases=Leases(store=store),
            cluster=cluster,
            announcer=TerminalAnnouncer(config=config, transcript=transcript),
            checks=CanaryChecks(metrics=self._metrics),
        )

    def run(self, planned: DemoRelease) -> Release:
        """The release once finished; DemoError when it does not finish in time."""
        self._metrics.next_release(bad=planned.bad)
        release = self._start(planned.version)
        deadline = time.monotonic() + DEADLINE_S
        while not release.phase.is_terminal:
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the release did not finish within {DEADLINE_S:g} s; "
                    f"it is stuck in phase {release.phase}"
                )
            time.sleep(TICK_S)
            self._approve_when_asked(self._current(release))
            self._service.tick()
            release = self._current(release)
        return release

    def _start(self, version: str) -> Release:
        command = f"/release {self._kind.value} {APP} {version}"
        self._transcript.line(f"\n@{REQUESTER} (a simulated person) types: {command}")
        outcome = self._service.start(
            app_name=APP,
            version=version,
            plan_name=None,
            user=REQUESTER,
            channel=DEMO_CHANNEL,
            kind=self._kind,
        )
        if outcome.release is None:
            raise DemoError(f"the release did not start: {outcome.message}")
        self._transcript.line(f"\n[reply only {REQUESTER} sees] {outcome.message}")
        return outcome.release

    def _current(self, release: Release) -> Release:
        stored = self._store.get(release.id)
        if stored is None:
            raise DemoError(f"release {release.id} vanished from Redis")
        return stored.release

    def _approve_when_asked(self, release: Release) -> None:
        if release.phase is not Phase.AWAITING_APPROVAL:
            self._waiting_since = None
            return
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        if time.monotonic() - self._waiting_since < APPROVER_DELAY_S:
            return
        self._transcript.line(f"\n@{APPROVER} (a simulated person) clicks [ Approve ]")
        approve = Approve(by=APPROVER, stage_index=release.stage_index)  # what the button carries
        outcome = self._service.act_on_release(release_id=release.id, event=approve, actor=APPROVER)
        if not outcome.applied:
            self._transcript.line(f"[reply only {APPROVER} sees] {outcome.message}")


# Redis.


class MissingRedis(DemoError):
    def __init__(self) -> None:
        super().__init__(
            "redis-server is not on PATH, and the demo keeps its release state in a real Redis; "
            "install it with 'apt-get install redis-server' (Debian, Ubuntu) and run it again"
        )


@contextmanager
def temporary_redis() -> Iterator[str]:
    """A redis-server on a free loopback port in a temporary directory, no persistence; its URL.

    Stopped when the block exits, also on Ctrl-C. DemoError when it is missing or will not start.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise MissingRedis
    with tempfile.TemporaryDirectory(prefix="release-bot-demo-") as workdir:
        port = _free_port()
        log = Path(workdir) / "redis.log"
        argv = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(log),
        ]  # fmt: skip
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            _wait_for_redis(url, process, log)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_redis(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    client = connect(url)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-600:] if log.exists() else "(no log)"
            raise DemoError(f"redis-server exited at start (code {process.returncode}):\n{tail}")
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise DemoError(f"redis-server did not answer on {url} within 10 s")


# Entry point.


def run_demo(*, scenario: str) -> int:
    """`release-bot demo [--scenario canary|rollback]`: the exit code (0: ended as intended)."""
    chosen = _SCENARIOS[scenario]
    transcript = Transcript()
    _quiet_bot_log()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.monotonic()
    try:
        with temporary_redis() as url:
            _introduce(chosen, url, transcript)
            store = ReleaseStore(connect(url))
            demo = DemoRun(scenario=chosen, store=store, transcript=transcript)
            for planned in chosen.releases:
                release = demo.run(planned)
                if release.phase is not planned.intended:
                    break
                if planned is not chosen.releases[-1]:
                    _between_releases(release, transcript)
    except MissingRedis as error:
        print(f"release-bot demo: {error}", file=sys.stderr)
        return EXIT_MISSING_REDIS
    except (DemoError, ReleaseBotError) as error:
        print(f"release-bot demo: {error}", file=sys.stderr)
        return EXIT_DEMO_BROKE
    except KeyboardInterrupt:
        print("\nrelease-bot demo: interrupted; the temporary redis-server is stopped", flush=True)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return _conclude(chosen, release, time.monotonic() - started, transcript)


def _quiet_bot_log() -> None:
    """The transcript is the demo's output: the bot's own log shows only warnings, on stderr."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C, so the redis-server is stopped


def _introduce(scenario: Scenario, url: str, transcript: Transcript) -> None:
    if scenario.kind is ReleaseKind.HYBRID:
        plan = DEMO_APP.bluegreen.hybrid_plan(DEMO_PLAN)
        what = (
            f"a hybrid release of {APP} {STABLE_VERSION} (blue) → {NEW_VERSION} (green): green "
            f"comes up beside blue at full size and is previewed, then production traffic moves "
            f"onto it in canary stages ({plan_text(plan)}; times compressed)."
        )
    elif scenario.kind is ReleaseKind.BLUE_GREEN:
        settings = DEMO_APP.bluegreen
        what = (
            f"two blue-green releases of {APP} {STABLE_VERSION} (blue): green {NEW_VERSION} is "
            f"previewed, switched to once approved, then breaks under production traffic and is "
            f"switched back by itself; then green {FIXED_VERSION}, watched for "
            f"{format_duration(settings.watch_window_s)}, blue kept "
            f"{format_duration(settings.retention_s)} and then retired (times compressed)."
        )
    else:
        what = _canary_introduction(scenario)
    _introduce_parts(f"({scenario.name} scenario): {what}", url, transcript)


def _canary_introduction(scenario: Scenario) -> str:
    plan = plan_text(DEMO_PLAN)
    metrics = DEMO_APP.metrics
    limit = percent(metrics.error_rate.max * 100)
    bad = ""
    if scenario.bad_canary:
        bad = (
            f" The canary is bad: once it takes public traffic, its error rate climbs past {limit}."
        )
    return (
        f"a canary release of {APP} {STABLE_VERSION} → {NEW_VERSION}, stages compressed to "
        f"seconds ({plan}).{bad}"
    )


def _introduce_parts(what: str, url: str, transcript: Transcript) -> None:
    metrics = DEMO_APP.metrics
    limit = percent(metrics.error_rate.max * 100)
    transcript.line(
        f"release-bot demo {what}\n"
        f"  state store: a real, temporary redis-server at {url}\n"
        f"  cluster:     simulated in memory, no Kubernetes is touched\n"
        f"  metrics:     simulated, no Prometheus is asked; the bot's real analysis judges canary\n"
        f"               against stable every {format_duration(metrics.interval_s)} over the last "
        f"{format_duration(metrics.window_s)} and rolls back above {limit} errors\n"
        f"  Slack:       not connected; each message the bot would post to {DEMO_CHANNEL} "
        "is printed"
    )


def _between_releases(release: Release, transcript: Transcript) -> None:
    transcript.line(
        f"\n{APP} {release.version} was switched back to blue {release.previous_version} by "
        f"itself ({release.outcome_reason}). The team fixes it and releases {FIXED_VERSION}."
    )


def _conclude(scenario: Scenario, release: Release, seconds: float, transcript: Transcript) -> int:
    why = release.outcome_reason or "no reason given"
    took = f"{seconds:.1f} s"
    intended = next(p.intended for p in scenario.releases if p.version == release.version)
    if release.phase is Phase.SUCCEEDED and release.kind is ReleaseKind.BLUE_GREEN:
        transcript.line(
            f"\nDemo finished in {took}: {APP} {release.version} released, green serves "
            f"production and blue is retired ({why}); the first green was switched back by itself."
        )
    elif release.phase is Phase.SUCCEEDED:
        transcript.line(
            f"\nDemo finished in {took}: {APP} {release.version} released, stable runs it ({why})."
        )
    elif release.phase is Phase.ROLLED_BACK:
        transcript.line(
            f"\nDemo finished in {took}: {APP} {release.version} rolled back, stable "
            f"{release.previous_version} serves all traffic ({why})."
            + (" A bad canary stopped, as this scenario intends." if scenario.bad_canary else "")
        )
    else:
        transcript.line(f"\nDemo finished in {took}: {APP} {release.version} {release.phase}.")
    if release.phase is not intended:
        print(
            f"release-bot demo: the {scenario.name} scenario's release {release.version} should "
            f"end {intended}, but it ended {release.phase}",
            file=sys.stderr,
        )
        return EXIT_DEMO_BROKE
    if scenario.name == "canary":
        transcript.line("To see a bad canary rolled back: release-bot demo --scenario rollback")
    return EXIT_OK
