"""The apps and plans model: what the apps file describes, as the bot reads it.

Built by the apps-file loader (bot.application.apps_file) and read everywhere a release needs
its app: the release service, the adapters (workload, router, channel, metrics limits) and the
demo. Pure: validation rules live on the models, reading and YAML live in the loader.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    PlainValidator,
    Strict,
    model_validator,
)

from bot.core.durations import PositiveDuration, StageDuration
from bot.core.errors import ReleaseBotError
from bot.core.freezes import Window, parse_rule
from bot.core.plan import Plan, blue_green_plan, hybrid_plan
from bot.core.release import BlueGreenTimes, ReleaseKind
from bot.core.verification import (
    DEFAULT_LOG_LINES,
    DEFAULT_TIMEOUT_S,
    MAX_LOG_LINES,
    Verification,
    template_problems,
)


class UnknownApp(ReleaseBotError):
    """No app of that name in the config; the message lists the apps that exist."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown app {name!r}; known apps: {', '.join(known) or '(none)'}")


class UnknownPlan(ReleaseBotError):
    """No plan of that name in the config; the message lists the plans that exist."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown plan {name!r}; known plans: {', '.join(known)}")


# ---------------------------------------------------------------- checked strings


def _matching(pattern: str, *, max_length: int, expected: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if len(value) > max_length or compiled.fullmatch(value) is None:
            raise ValueError(f"{value!r} is not {expected}")
        return value

    return AfterValidator(check)


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DnsLabel = Annotated[
    str,
    Strict(),
    _matching(
        _LABEL,
        max_length=63,
        expected="a valid name: lowercase letters, digits and '-', at most 63 characters",
    ),
]
ResourceName = Annotated[
    str,
    Strict(),
    _matching(
        rf"{_LABEL}(\.{_LABEL})*",
        max_length=253,
        expected="a Kubernetes object name: lowercase letters, digits, '-' and '.'",
    ),
]
ServiceName = Annotated[
    str,
    Strict(),
    _matching(
        r"[a-z]([-a-z0-9]*[a-z0-9])?",
        max_length=63,
        expected="a Service name: lowercase letters, digits and '-', starting with a letter",
    ),
]
MeshHost = Annotated[
    str,
    Strict(),
    _matching(
        rf"(\*\.)?{_LABEL}(\.{_LABEL})*",
        max_length=253,
        expected="a host name such as 'shop-api' or 'shop-api.shop.svc.cluster.local'",
    ),
]
SlackPrincipal = Annotated[
    str,
    Strict(),
    _matching(
        r"[UWS][A-Z0-9]{2,}",
        max_length=32,
        expected="a Slack user ID (U0123ABCD) or user-group ID (S0123ABCD)",
    ),
]
_MENTION = r"<!here>|<!channel>|<!everyone>|<!subteam\^S[A-Z0-9]+(\|[^>]+)?>|<@[UW][A-Z0-9]+>"
AlertMention = Annotated[
    str,
    Strict(),
    _matching(
        rf"(({_MENTION})(\s+({_MENTION}))*)?",
        max_length=500,
        expected="Slack mentions such as '<!here>', '<!subteam^S0123ABCD>' or '<@U0123ABCD>'"
        " ('' for none)",
    ),
]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL such as 'http://prometheus:9090'")
    return value


HttpUrl = Annotated[str, Strict(), AfterValidator(_http_url)]


def _fraction(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f"must be a fraction between 0 and 1 (0.05 means 5 %), got {value:g}")
    return value


Fraction = Annotated[float, AfterValidator(_fraction)]


# ---------------------------------------------------------------- Slack channels

_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A Slack channel from the config: an ID (C0123ABCD) or a name (stored without '#')."""

    value: str

    @property
    def is_id(self) -> bool:
        return _CHANNEL_ID.fullmatch(self.value) is not None

    def matches(self, *, channel_id: str, channel_name: str) -> bool:
        """True when a Slack payload's channel (ID and name) is this channel."""
        return self.value == (channel_id if self.is_id else channel_name)

    def __str__(self) -> str:
        return self.value if self.is_id else f"#{self.value}"


def _channel(value: object) -> ChannelRef:
    if isinstance(value, ChannelRef):
        return value
    if isinstance(value, str):
        text = value.removeprefix("#")
        if _CHANNEL_ID.fullmatch(text) or _CHANNEL_NAME.fullmatch(text):
            return ChannelRef(text)
    raise ValueError(
        f"{value!r} is not a Slack channel ID (C0123ABCD) or name ('#releases', lowercase)"
    )


Channel = Annotated[ChannelRef, PlainValidator(_channel)]


# Strict(False) on the tuple lets a YAML list in (strict mode demands a Python tuple);
# the items stay strict.
Principals = Annotated[tuple[SlackPrincipal, ...], Strict(False)]
Channels = Annotated[tuple[Channel, ...], Strict(False)]

# ---------------------------------------------------------------- app settings (public models)


class FrozenModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True
    )


class ReplicasRouter(FrozenModel):
    """Native canary: a canary Deployment behind the stable Service; traffic follows replicas."""

    provider: Literal["replicas"]
    """`replicas`: no mesh; the canary's share of traffic is its share of ready pods."""
    service: ServiceName | None = None
    """The Service in front of stable and canary pods; default: the workload's name."""


class IstioRouter(FrozenModel):
    """Istio: route weights between the DestinationRule's stable and canary subsets."""

    provider: Literal["istio"]
    """`istio`: route weights of a VirtualService between two DestinationRule subsets."""
    virtual_service: ResourceName
    """The VirtualService that routes the app's host."""
    destination_rule: ResourceName
    """The DestinationRule that defines the stable and canary subsets."""
    host: MeshHost
    """The host the route sends to, e.g. `shop-api.shop.svc.cluster.local`."""
    route_index: Annotated[int, Field(ge=0)] = 0
    """Which http route of the VirtualService to weight (0: the first)."""
    subset_label: Literal["version", "track"] = "version"
    """What the subsets select pods by: `version` (the version label the pods carry; subset
    `stable` follows the stable's version through promotion) or `track` (`track: stable` on the
    stable pods, `track: canary` on the canary's)."""


class GatewayApiRouter(FrozenModel):
    """Gateway API: backend weights between two Services in one HTTPRoute rule."""

    provider: Literal["gateway-api"]
    """`gateway-api`: backend weights of one HTTPRoute rule between two Services."""
    http_route: ResourceName
    """The HTTPRoute whose rule is weighted."""
    stable_service: ServiceName
    """The Service in front of the stable pods."""
    canary_service: ServiceName
    """The Service in front of the canary pods (the bot creates it)."""
    rule_index: Annotated[int, Field(ge=0)] = 0
    """Which rule of the HTTPRoute to weight (0: the first)."""

    @model_validator(mode="after")
    def _distinct_services(self) -> GatewayApiRouter:
        if self.stable_service == self.canary_service:
            raise ValueError(f"stable_service and canary_service are both {self.stable_service!r}")
        return self


class NoRouter(FrozenModel):
    """No traffic splitting: the app releases by blue-green only (the `bluegreen` block)."""

    provider: Literal["none"]
    """`none` (what an app without a `router` gets): blue-green only; a canary or hybrid
    start is refused until the app names one of the routers above."""


Router = ReplicasRouter | IstioRouter | GatewayApiRouter | NoRouter
ROUTER_PROVIDERS = frozenset(
    get_args(model.model_fields["provider"].annotation)[0] for model in get_args(Router)
)


class ErrorRateLimits(FrozenModel):
    """Canary error rate (failed / all requests) limits, as fractions: 0.05 means 5 %."""

    max: Fraction = 0.05
    """Highest error rate the canary may show, as a fraction (0.05 is 5 %)."""
    max_above_stable: Fraction | None = None
    """Relative limit: canary may exceed stable's error rate by at most this much."""


class LatencyLimits(FrozenModel):
    """Canary p99 latency limits in milliseconds; at least one must be set."""

    max: Annotated[float, Field(gt=0)] | None = None
    """Highest p99 latency the canary may show, in ms."""
    max_above_stable: Annotated[float, Field(ge=0)] | None = None
    """Relative limit: canary p99 may exceed stable's p99 by at most this many ms."""

    @model_validator(mode="after")
    def _some_limit(self) -> LatencyLimits:
        if self.max is None and self.max_above_stable is None:
            raise ValueError("set 'max', 'max_above_stable' or both (or drop the block)")
        return self


class QpsLimits(FrozenModel):
    """A floor on the canary's request rate (req/s) while it takes public traffic: a canary
    serving less than this is not getting (or not answering) its share."""

    min: Annotated[float, Field(gt=0)]
    """Lowest request rate, in req/s, the canary must serve in a stage with public traffic."""


JudgeDirection = Literal["increase", "decrease", "either"]


class JudgedMetric(FrozenModel):
    """How the statistical judge compares one metric of the canary with stable's."""

    direction: JudgeDirection = "increase"
    """Which move of the canary is harmful: `increase`, `decrease` or `either`."""
    allowed_effect: Annotated[float, Field(ge=0)] = 0.0
    """How far the canary's median may move the harmful way and still pass, in the metric's
    unit (error rate: a fraction, 0.005 is half a point; p99: ms)."""
    critical: bool = False
    """A failure of this metric fails the judgement whatever the score."""


class JudgedMetrics(FrozenModel):
    """The metrics the statistical judge compares; at least one."""

    error_rate: JudgedMetric | None = JudgedMetric()
    """Error rate per interval; default: judged, an increase is harmful, none allowed."""
    p99_latency_ms: JudgedMetric | None = None
    """p99 latency per interval, in ms; judged when set."""

    @model_validator(mode="after")
    def _some_metric(self) -> JudgedMetrics:
        if self.error_rate is None and self.p99_latency_ms is None:
            raise ValueError("judge at least one metric (error_rate, p99_latency_ms)")
        return self


class JudgeConfig(FrozenModel):
    """A statistical judge of canary against stable (Kayenta's idea), beside the thresholds:
    per-interval samples of each track, a Mann-Whitney U test per metric, a score."""

    kind: Literal["mann-whitney"]
    """The test: `mann-whitney` (two-sided Mann-Whitney U, with a Hodges-Lehmann shift)."""
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    """How sure the test must be that the canary differs before a move counts (0.95: p below
    0.05)."""
    lookback_s: PositiveDuration = Field(default=600, alias="lookback")
    """How far back the samples reach, across stage changes."""
    samples: Annotated[int, Field(ge=3, le=200)] = 10
    """Into how many intervals the lookback is cut: one sample per track per interval."""
    min_samples: Annotated[int, Field(ge=3)] = 5
    """Fewer intervals with data on either track: missing data, the check is inconclusive
    (never promotes)."""
    pass_score: Annotated[float, Field(ge=0, le=100)] = Field(default=95, alias="pass")
    """Lowest score (0..100) that passes."""
    marginal: Annotated[float, Field(ge=0, le=100)] = 75
    """Lowest score that is marginal rather than failed; a marginal check pauses the release."""
    metrics: JudgedMetrics = JudgedMetrics()
    """What is judged, per metric."""

    @model_validator(mode="after")
    def _consistent(self) -> JudgeConfig:
        if self.marginal > self.pass_score:
            raise ValueError(f"marginal {self.marginal:g} is above pass {self.pass_score:g}")
        if self.min_samples > self.samples:
            raise ValueError(f"min_samples {self.min_samples} is above samples {self.samples}")
        return self


class MetricsConfig(FrozenModel):
    """How the analysis judges a stage; prometheus_url None means the bot's PROMETHEUS_URL."""

    provider: Literal["generic", "istio"] = "generic"
    """Query preset: `generic` (http_requests_total by track) or `istio` (istio_requests_total)."""
    prometheus_url: HttpUrl | None = None
    """The app's Prometheus; default: the bot's PROMETHEUS_URL."""
    interval_s: PositiveDuration = Field(default=60, alias="interval")
    """How often the canary is checked against stable."""
    window_s: PositiveDuration = Field(default=300, alias="window")
    """How far back each check looks."""
    min_requests: Annotated[int, Field(ge=0)] = 50
    """Fewer canary requests than this in the window: the check is inconclusive (never promotes)."""
    failure_limit: Annotated[int, Field(ge=0)] = 1
    """Failed checks tolerated in one stage; one more rolls back (Argo's failureLimit)."""
    error_rate: ErrorRateLimits = ErrorRateLimits()
    """Error-rate limits; always checked."""
    p99_latency_ms: LatencyLimits | None = None
    """p99 latency limits; checked when set."""
    qps: QpsLimits | None = None
    """A request-rate floor; checked when set."""
    snapshot_interval_s: PositiveDuration = Field(default=900, alias="snapshot_interval")
    """How often a metrics snapshot is posted in the thread, besides one at each stage change."""
    judge: JudgeConfig | None = None
    """A statistical judge of canary against stable, after the thresholds pass; none by default."""


def _job_template(value: object) -> dict[str, Any]:
    if problems := template_problems(value):
        raise ValueError("; ".join(problems))
    assert isinstance(value, Mapping)  # template_problems refuses anything else
    return dict(value)


JobTemplate = Annotated[dict[str, Any], PlainValidator(_job_template)]
"""A Job's spec as a Job manifest writes it (`template.spec.containers`, `backoffLimit`...)."""


class VerificationSpec(FrozenModel):
    """A verification Job a gate runs: a plan stage's `verification`, or a blue-green preview's."""

    job: DnsLabel | None = None
    """Run the app's Job template of this name (`apps.NAME.verification.jobs`) at the gate:
    before the stage starts (blue-green: before the switch's approval is asked), traffic staying
    as it was until the Job succeeds; its failure rolls back."""
    template: JobTemplate | None = None
    """Instead of `job`: an inline Job spec (in a plan: the same for every app of the plan)."""
    timeout_s: PositiveDuration = Field(default=DEFAULT_TIMEOUT_S, alias="timeout")
    """Longest the Job may run; past it the Job counts as failed (and is stopped)."""
    log_lines: Annotated[int, Field(ge=1, le=MAX_LOG_LINES)] = DEFAULT_LOG_LINES
    """How many of the Job's last log lines the thread shows when it fails."""

    @model_validator(mode="after")
    def _one_job(self) -> VerificationSpec:
        if (self.job is None) == (self.template is None):
            raise ValueError(
                "name the Job with 'job: <template name>' (one of the app's verification.jobs) "
                "or give it inline with 'template:', not both or neither"
            )
        return self

    def verification(self) -> Verification:
        return Verification(
            job=self.job,
            template=self.template,
            timeout_s=self.timeout_s,
            log_lines=self.log_lines,
        )


class BlueGreenConfig(FrozenModel):
    """How `/release bluegreen` runs for the app: green beside blue, a preview Service, one
    selector switch, a watch window, then blue kept as the rollback path before it is removed."""

    service: ServiceName | None = None
    """The production Service whose selector is switched from blue to green; default: the
    workload's name."""
    preview_service: ServiceName | None = None
    """The Service that selects only green's pods, for verifying green before the switch;
    default: `<app>-green`."""
    approvals: Annotated[int, Field(ge=1)] = 1
    """How many distinct people approve the switch (under four-eyes none of them the requester)."""
    preview_checks: bool = False
    """Metric checks of green's preview traffic gate the switch (a passing check is needed)."""
    watch_window_s: PositiveDuration = Field(default=1800, alias="watch_window")
    """How long production traffic on green is checked after the switch; a failing check
    switches back to blue by itself."""
    check_interval_s: PositiveDuration | None = Field(default=None, alias="check_interval")
    """How often green is checked (preview and watch window); default: `metrics.interval`."""
    retention_s: StageDuration = Field(default=86400, alias="retention")
    """How long blue is kept at full size after the watch window, as the instant rollback path."""
    scale_down_grace_s: StageDuration = Field(default=3600, alias="scale_down_grace")
    """How long blue stays scaled to 0 after its retention before it is deleted."""
    verification: VerificationSpec | None = None
    """A verification Job run against the preview Service once green is ready, before the
    switch's approval is asked (hybrid: before the widening stages); its failure ends the
    release with green removed and blue serving. Its RELEASE_TARGET_URL is the preview Service."""

    def preview_service_of(self, app: str) -> str:
        return self.preview_service or f"{app}-green"

    def plan(self) -> Plan:
        """The two stages a blue-green release of the app walks (bot.core.plan)."""
        return blue_green_plan(
            approvals=self.approvals,
            preview_checked=self.preview_checks,
            watch_s=self.watch_window_s,
            check_interval_s=self.check_interval_s,
            verification=self._verification(),
        )

    def hybrid_plan(self, canary: Plan) -> Plan:
        """The preview (with these gates), then `canary`'s stages with public traffic."""
        return hybrid_plan(
            canary,
            approvals=self.approvals,
            preview_checked=self.preview_checks,
            check_interval_s=self.check_interval_s,
            verification=self._verification(),
        )

    def _verification(self) -> Verification | None:
        return self.verification.verification() if self.verification else None

    def times(self) -> BlueGreenTimes:
        return BlueGreenTimes(
            retention_s=self.retention_s, scale_down_grace_s=self.scale_down_grace_s
        )


class AuthorizationConfig(FrozenModel):
    """Who may change production, by Slack user ID (U...) and user-group ID (S...), enforced on
    every command and click; anyone in an allowed channel may pause, resume and roll back."""

    start: Principals = ()
    """Who may start a release: Slack user IDs (U...) and user-group IDs (S...); empty = anyone."""
    approve: Principals = ()
    """Who may approve a stage; empty = anyone in an allowed channel."""
    promote: Principals = ()
    """Who may promote or advance (end a stage early); empty = anyone in an allowed channel."""
    channels: Channels = ()
    """Channels that accept the app's commands and clicks; empty = the app's slack_channel only."""
    four_eyes: bool = False
    """The approver must differ from whoever started the release."""


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a time zone name such as 'Europe/Berlin' or 'UTC'"
        ) from None
    return value


TimeZoneName = Annotated[str, Strict(), AfterValidator(_time_zone)]


class FreezeWindow(FrozenModel):
    """A recurring change freeze: starts and widening steps are refused while it lasts, and a
    running release holds at its next gate."""

    rrule: Annotated[str, Strict(), Field(min_length=1)]
    """When each window starts: an iCalendar RRULE such as `FREQ=WEEKLY;BYDAY=FR;BYHOUR=16`,
    read in `timezone` (minutes and seconds left out are 0; daily at most often)."""
    duration_s: PositiveDuration = Field(alias="duration")
    """How long each window lasts, e.g. `64h`."""
    timezone: TimeZoneName = "UTC"
    """The time zone the rule is read in, e.g. `Europe/Berlin`."""
    reason: str = ""
    """Shown when a start or a step is refused, e.g. `weekend`."""

    @model_validator(mode="after")
    def _rule_parses(self) -> FreezeWindow:
        try:
            parse_rule(self.rrule, timezone=self.timezone)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"rrule {self.rrule!r} is not an iCalendar RRULE ({error}); write e.g. "
                "'FREQ=WEEKLY;BYDAY=FR;BYHOUR=16'"
            ) from None
        return self

    def window(self) -> Window:
        return Window(
            rrule=self.rrule,
            duration_s=self.duration_s,
            timezone=self.timezone,
            reason=self.reason,
        )


FreezeWindows = Annotated[tuple[FreezeWindow, ...], Strict(False)]


class VerificationSettings(FrozenModel):
    """The app's verification Jobs: the templates its plans' stages name, and who they run as."""

    service_account: ResourceName | None = None
    """The ServiceAccount verification Jobs run with; default: the stable Deployment's
    (its serviceAccountName, else `default`). Never the bot's own."""
    jobs: dict[DnsLabel, JobTemplate] = Field(default_factory=dict)
    """Job templates by name, for a stage's `verification.job`: each a Job's spec
    (`template.spec.containers`, `backoffLimit`...), run in the app's namespace."""


class AppSettings(FrozenModel):
    """What the apps file says of one app besides its name and plan (the loader's schema adds
    the plan's name; AppConfig adds the resolved plan)."""

    namespace: DnsLabel
    """The Kubernetes namespace of the workload."""
    workload: ResourceName
    """The stable Deployment, or the Argo Rollout (with `workload_kind: Rollout`)."""
    workload_kind: Literal["Deployment", "Rollout"] = "Deployment"
    """`Rollout`: the workload is an Argo Rollouts `Rollout`, released through its own fields
    and steps (its strategy says canary or blueGreen; no `router`, `plan` or `bluegreen`)."""
    container: DnsLabel | None = None
    """The container whose image changes; default: the workload's first container."""
    router: Annotated[Router, Field(discriminator="provider")] = NoRouter(provider="none")
    """How traffic is split between stable and canary: one of the `router.*` blocks below;
    without one the app releases by blue-green only."""
    slack_channel: Channel
    """Where the release card and alerts go: a channel ID (C0123ABCD) or a name (#releases)."""
    metrics: MetricsConfig = MetricsConfig()
    alert_mention: AlertMention = "<!here>"
    """Prepended to auto-rollback alerts in the channel; '' for none."""
    authorization: AuthorizationConfig = AuthorizationConfig()
    bluegreen: BlueGreenConfig = BlueGreenConfig()
    freezes: FreezeWindows = ()
    """The app's recurring freeze windows (besides the top-level `freezes`, which apply to all)."""
    verification: VerificationSettings = VerificationSettings()

    @model_validator(mode="after")
    def _rollout_routes_itself(self) -> Self:
        if self.workload_kind == "Rollout" and not isinstance(self.router, NoRouter):
            raise ValueError(
                "an Argo Rollout splits its traffic itself (its spec.strategy): remove `router` "
                "from an app with workload_kind Rollout"
            )
        return self

    def release_kind(self, asked: ReleaseKind) -> ReleaseKind:
        """The kind of release `asked` starts for this app: an Argo Rollout's own for a
        Rollout; ValueError (a person's words) when a Rollout cannot release that way."""
        if self.workload_kind != "Rollout" or asked.drives_argo:
            return asked
        if asked not in _ARGO_KINDS:
            raise ValueError(
                f"{self.workload} is an Argo Rollout, which releases by its own canary or "
                f"blueGreen strategy: start it with `/release canary` or `/release bluegreen`"
            )
        return _ARGO_KINDS[asked]


_ARGO_KINDS = {
    ReleaseKind.CANARY: ReleaseKind.ARGO_CANARY,
    ReleaseKind.BLUE_GREEN: ReleaseKind.ARGO_BLUE_GREEN,
}


class AppConfig(AppSettings):
    """One app, ready to release: its workload, router, channel, resolved plan and rules."""

    name: DnsLabel
    plan: InstanceOf[Plan]


@dataclass(frozen=True, slots=True)
class BotConfig:
    """Everything the apps file describes; plans include the built-in `default`."""

    source: str
    apps: Mapping[str, AppConfig]
    plans: Mapping[str, Plan]
    freezes: tuple[FreezeWindow, ...] = ()
    """Recurring freeze windows of every app."""
    break_glass: tuple[str, ...] = field(default_factory=tuple)
    """Who may `--override` a freeze or a lock: Slack user IDs, and user-group IDs (S...)."""

    def freeze_windows(self, app: str) -> tuple[Window, ...]:
        """The recurring windows that apply to `app`: everyone's, then its own."""
        own = self.apps[app].freezes if app in self.apps else ()
        return tuple(window.window() for window in (*self.freezes, *own))

    def app(self, name: str) -> AppConfig:
        try:
            return self.apps[name]
        except KeyError:
            raise UnknownApp(name, sorted(self.apps)) from None

    def plan(self, name: str) -> Plan:
        """A plan by name, for `/release canary <app> <version> --plan NAME`."""
        try:
            return self.plans[name]
        except KeyError:
            raise UnknownPlan(name, list(self.plans)) from None


def router_routes_by_header(router: Router) -> bool:
    """The replicas router splits by pod count only: it cannot send a header to the canary."""
    return not isinstance(router, ReplicasRouter)


def plan_problem(router: Router, plan: Plan) -> str | None:
    """Why an app routed by `router` cannot run `plan`, or None when it can."""
    if any(stage.header_routed for stage in plan.stages) and not router_routes_by_header(router):
        return (
            f"plan {plan.name!r} has a header-routed stage, which router 'replicas' cannot run "
            "(it splits traffic by pod count only); use a plan without header_routed stages, or "
            "router istio or gateway-api"
        )
    return None


def verification_problem(app: AppSettings, plan: Plan) -> str | None:
    """Which Job templates `plan`'s stages name that `app` does not define, or None."""
    missing = sorted(
        {
            stage.verification.job
            for stage in plan.stages
            if stage.verification is not None
            and stage.verification.job is not None
            and stage.verification.job not in app.verification.jobs
        }
    )
    if not missing:
        return None
    defined = ", ".join(sorted(app.verification.jobs)) or "none"
    return (
        f"plan {plan.name!r} runs verification Job template(s) {', '.join(missing)}, which the "
        f"app does not define under verification.jobs (it defines: {defined})"
    )


def plan_refusal(app: AppConfig, plan: Plan) -> str | None:
    """Why `app` cannot run `plan` (a `--plan` given at start), or None when it can."""
    problem = plan_problem(app.router, plan) or verification_problem(app, plan)
    return None if problem is None else f"{app.name}: {problem}"
