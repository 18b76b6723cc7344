"""The apps and plans file: loading, validation and the typed objects the bot reads.

Called by `release-bot check-config` (bot/cli.py) and by the server at start-up, which then
hands `BotConfig.app(name)` results to the release services.

File layout (see deploy/examples/apps.yaml for every field, commented):

    apps:           # required, at least one; key = app name used in `/release canary <app>`
      shop-api: {namespace, workload, container?, router, slack_channel, plan?, metrics?,
                 alert_mention?, authorization?}
    plans:          # optional; key = plan name, value = list of stages
      fast: [{weight, duration, approval?, header_routed?}, ...]
    default_plan:   # optional; the plan of apps that name none (default: "default")

Decisions:
- The built-in plan `default` (bot.plan.DEFAULT_PLAN) always exists and cannot be redefined:
  `plans: {default: ...}` is refused. To give apps another default, define the plan under its
  own name and set `default_plan: <name>`; so a reader of the file always knows what
  "default" means.
- A plan whose last stage is below 100 % gets a final `100 %, 0 s` stage appended (the
  promotion), so every loaded plan ends at 100 % like DEFAULT_PLAN. Nothing may follow a
  100 % stage.
- Durations need a unit (`90s`, `30m`, `1h`, `2h30m`, `1d`); a bare number is refused
  because it is ambiguous.
- Every problem is reported at once, each as `FILE:LINE:COL: path.in.file: what is wrong`.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails

from bot.plan import DEFAULT_PLAN, Plan, Stage

Loc = tuple[str | int, ...]


class ConfigError(Exception):
    """The file cannot be used; `problems` lists every mistake found, each naming file and path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: {_count(len(problems), 'problem')}:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


class UnknownApp(LookupError):
    """No app of that name in the config; the message lists the apps that exist."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown app {name!r}; known apps: {', '.join(known) or '(none)'}")


class UnknownPlan(LookupError):
    """No plan of that name in the config; the message lists the plans that exist."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown plan {name!r}; known plans: {', '.join(known)}")


# ---------------------------------------------------------------- durations

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_UNITS_S = (86400, 3600, 60, 1)


def parse_duration(text: str) -> int:
    """'2h30m' -> 9000 seconds (units d, h, m, s, largest first); ValueError explains the form."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a number with a unit (d, h, m, s), "
            "largest first, e.g. '90s', '30m', '1h', '2h30m'"
        )
    return sum(
        int(part) * unit
        for part, unit in zip(match.groups(), _DURATION_UNITS_S, strict=True)
        if part
    )


def format_duration(seconds: int) -> str:
    """9000 -> '2h30m'; 0 -> '0s'. The inverse of parse_duration."""
    parts = []
    for unit_s, suffix in zip(_DURATION_UNITS_S, "dhms", strict=True):
        count, seconds = divmod(seconds, unit_s)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts) or "0s"


def _duration_field(*, allow_zero: bool) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if not isinstance(value, str):
            raise ValueError(f"a duration needs a unit, e.g. '90s', '30m', '1h'; got {value!r}")
        seconds = parse_duration(value)
        if seconds == 0 and not allow_zero:
            raise ValueError(f"must be longer than 0s, got {value!r}")
        return seconds

    return parse


StageDuration = Annotated[int, PlainValidator(_duration_field(allow_zero=True))]
PositiveDuration = Annotated[int, PlainValidator(_duration_field(allow_zero=False))]


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


class _FrozenModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ReplicasRouter(_FrozenModel):
    """Native canary: a canary Deployment behind the stable Service; traffic follows replicas."""

    provider: Literal["replicas"]
    service: ServiceName | None = None
    """The Service in front of stable and canary pods; None: the workload's name."""


class IstioRouter(_FrozenModel):
    """Istio: route weights between the DestinationRule's stable and canary subsets."""

    provider: Literal["istio"]
    virtual_service: ResourceName
    destination_rule: ResourceName
    host: MeshHost
    route_index: Annotated[int, Field(ge=0)] = 0
    """Which http route of the VirtualService to weight (0: the first)."""


class GatewayApiRouter(_FrozenModel):
    """Gateway API: backend weights between two Services in one HTTPRoute rule."""

    provider: Literal["gateway-api"]
    http_route: ResourceName
    stable_service: ServiceName
    canary_service: ServiceName
    rule_index: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _distinct_services(self) -> GatewayApiRouter:
        if self.stable_service == self.canary_service:
            raise ValueError(f"stable_service and canary_service are both {self.stable_service!r}")
        return self


Router = ReplicasRouter | IstioRouter | GatewayApiRouter
_ROUTER_PROVIDERS = frozenset(
    get_args(model.model_fields["provider"].annotation)[0] for model in get_args(Router)
)


class ErrorRateLimits(_FrozenModel):
    """Canary error rate (failed / all requests) limits, as fractions: 0.05 means 5 %."""

    max: Fraction = 0.05
    max_above_stable: Fraction | None = None
    """Relative limit: canary may exceed stable's error rate by at most this much."""


class LatencyLimits(_FrozenModel):
    """Canary p99 latency limits in milliseconds; at least one must be set."""

    max: Annotated[float, Field(gt=0)] | None = None
    max_above_stable: Annotated[float, Field(ge=0)] | None = None
    """Relative limit: canary p99 may exceed stable's p99 by at most this many ms."""

    @model_validator(mode="after")
    def _some_limit(self) -> LatencyLimits:
        if self.max is None and self.max_above_stable is None:
            raise ValueError("set 'max', 'max_above_stable' or both (or drop the block)")
        return self


class QpsLimits(_FrozenModel):
    """A floor on the canary's request rate (req/s) while it takes public traffic: a canary
    serving less than this is not getting (or not answering) its share."""

    min: Annotated[float, Field(gt=0)]


class MetricsConfig(_FrozenModel):
    """How the analysis judges a stage; prometheus_url None means the bot's PROMETHEUS_URL."""

    provider: Literal["generic", "istio"] = "generic"
    prometheus_url: HttpUrl | None = None
    interval_s: PositiveDuration = Field(default=60, alias="interval")
    window_s: PositiveDuration = Field(default=300, alias="window")
    min_requests: Annotated[int, Field(ge=0)] = 50
    """Fewer canary requests than this in the window: the check is inconclusive (never promotes)."""
    failure_limit: Annotated[int, Field(ge=0)] = 1
    """Failed checks tolerated in one stage; one more rolls back (Argo's failureLimit)."""
    error_rate: ErrorRateLimits = ErrorRateLimits()
    p99_latency_ms: LatencyLimits | None = None
    qps: QpsLimits | None = None
    snapshot_interval_s: PositiveDuration = Field(default=900, alias="snapshot_interval")
    """How often a metrics snapshot is posted in the thread, besides one at each stage change."""


class AuthorizationConfig(_FrozenModel):
    """Who may do what (Slack user/user-group IDs; empty = anyone); validated, not enforced yet."""

    start: Principals = ()
    approve: Principals = ()
    rollback: Principals = ()
    channels: Channels = ()
    """Channels that accept commands for the app; empty = the app's slack_channel only."""
    four_eyes: bool = False
    """The approver must differ from whoever started the release."""


# ---------------------------------------------------------------- file schema (internal)


def _known_plan(name: str, info: ValidationInfo) -> str:
    known: Sequence[str] = info.context["plan_names"] if info.context else ()
    if name not in known:
        raise ValueError(f"unknown plan {name!r}; known plans: {', '.join(known)}")
    return name


def _not_builtin_plan(name: str) -> str:
    if name == DEFAULT_PLAN.name:
        raise ValueError(
            "the built-in plan 'default' cannot be redefined; define your plan under another "
            "name and set 'default_plan: <name>' to make apps use it by default"
        )
    return name


PlanRef = Annotated[DnsLabel, AfterValidator(_known_plan)]


class _StageSpec(_FrozenModel):
    weight: Annotated[int, Field(ge=0, le=100)]
    duration_s: StageDuration = Field(alias="duration")
    approval: bool = False
    header_routed: bool = False

    @model_validator(mode="after")
    def _header_routing_only_at_zero(self) -> _StageSpec:
        if self.header_routed and self.weight > 0:
            raise ValueError(
                f"header_routed applies only to a 0 % stage (internal validation), "
                f"this stage has weight {self.weight}"
            )
        return self


def _stages_in_order(stages: list[_StageSpec]) -> list[_StageSpec]:
    if not stages:
        raise ValueError("a plan needs at least one stage")
    for index in range(1, len(stages)):
        before, after = stages[index - 1].weight, stages[index].weight
        if after < before:
            raise ValueError(
                f"stage weights must not decrease: stage [{index}] has {after} % "
                f"after {before} % in stage [{index - 1}]"
            )
        if before == 100:
            raise ValueError(f"nothing may follow a 100 % stage, but stage [{index}] does")
    return stages


class _AppSpec(_FrozenModel):
    namespace: DnsLabel
    workload: ResourceName
    container: DnsLabel | None = None
    router: Annotated[Router, Field(discriminator="provider")]
    slack_channel: Channel
    plan: PlanRef | None = None
    metrics: MetricsConfig = MetricsConfig()
    alert_mention: AlertMention = "<!here>"
    authorization: AuthorizationConfig = AuthorizationConfig()


def _some_apps(apps: dict[str, _AppSpec]) -> dict[str, _AppSpec]:
    if not apps:
        raise ValueError("no apps defined: describe at least one under 'apps:'")
    return apps


class _FileSpec(_FrozenModel):
    apps: Annotated[dict[DnsLabel, _AppSpec], AfterValidator(_some_apps)]
    plans: dict[
        Annotated[DnsLabel, AfterValidator(_not_builtin_plan)],
        Annotated[list[_StageSpec], AfterValidator(_stages_in_order)],
    ] = {}
    default_plan: PlanRef = DEFAULT_PLAN.name


_SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    _FileSpec,
    _AppSpec,
    _StageSpec,
    ReplicasRouter,
    IstioRouter,
    GatewayApiRouter,
    MetricsConfig,
    ErrorRateLimits,
    LatencyLimits,
    QpsLimits,
    AuthorizationConfig,
)
_FIELD_NAMES = sorted(
    {field.alias or name for model in _SCHEMA_MODELS for name, field in model.model_fields.items()}
)


# ---------------------------------------------------------------- loaded result (public)


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One app, ready to release: its workload, router, channel, resolved plan and rules."""

    name: str
    namespace: str
    workload: str
    """The stable Deployment."""
    container: str | None
    """The container whose image changes; None: the Deployment's first container."""
    router: Router
    slack_channel: ChannelRef
    plan: Plan
    metrics: MetricsConfig
    alert_mention: str
    """Prepended to auto-rollback alerts in the channel; '' for none."""
    authorization: AuthorizationConfig


@dataclass(frozen=True, slots=True)
class BotConfig:
    """Everything the apps file describes; plans include the built-in `default`."""

    source: str
    apps: Mapping[str, AppConfig]
    plans: Mapping[str, Plan]

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


def _to_plan(name: str, stages: list[_StageSpec]) -> Plan:
    converted = [
        Stage(
            weight=stage.weight,
            duration_s=stage.duration_s,
            needs_approval=stage.approval,
            header_routed=stage.header_routed,
        )
        for stage in stages
    ]
    if converted[-1].weight < 100:
        converted.append(Stage(weight=100, duration_s=0))
    return Plan(name=name, stages=tuple(converted))


def _to_config(source: str, spec: _FileSpec) -> BotConfig:
    plans = {DEFAULT_PLAN.name: DEFAULT_PLAN} | {
        name: _to_plan(name, stages) for name, stages in spec.plans.items()
    }
    apps = {
        name: AppConfig(
            name=name,
            namespace=app.namespace,
            workload=app.workload,
            container=app.container,
            router=app.router,
            slack_channel=app.slack_channel,
            plan=plans[app.plan or spec.default_plan],
            metrics=app.metrics,
            alert_mention=app.alert_mention,
            authorization=app.authorization,
        )
        for name, app in spec.apps.items()
    }
    return BotConfig(source=source, apps=apps, plans=plans)


# ---------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class _Problem:
    loc: Loc
    message: str


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _path(loc: Loc) -> str:
    text = ""
    for segment in loc:
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
    return text.removeprefix(".") or "(top level)"


def _shown(value: object) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _without_union_tags(loc: Loc) -> Loc:
    """Pydantic puts the router's provider tag into the path; the file has no such level."""
    return tuple(
        segment
        for index, segment in enumerate(loc)
        if not (index > 0 and loc[index - 1] == "router" and segment in _ROUTER_PROVIDERS)
    )


_MAPPING = "must be a mapping ('key: value' lines)"
_LIST = "must be a list ('- item' lines or [a, b])"
_EXPECTED_SHAPE = {
    "dict_type": _MAPPING,
    "model_type": _MAPPING,
    "model_attributes_type": _MAPPING,
    "list_type": _LIST,
    "tuple_type": _LIST,
}


def _from_pydantic(error: ErrorDetails) -> _Problem:
    loc = _without_union_tags(error["loc"])
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag_field = ctx["discriminator"].strip("'")
        if kind == "union_tag_not_found":
            return _Problem((*loc, tag_field), "required field is missing")
        expected = f"expected one of {ctx['expected_tags']}"
        return _Problem((*loc, tag_field), f"unknown {tag_field} {ctx['tag']!r}; {expected}")
    if kind == "missing":
        return _Problem(loc, "required field is missing")
    if kind == "extra_forbidden":
        return _Problem(loc, _unknown_field(str(loc[-1])))
    message = _EXPECTED_SHAPE.get(kind) or re.sub(r"^\w+ should", "must", error["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    else:
        message += f", got {_shown(error['input'])}"
    if loc and loc[-1] == "[key]":
        return _Problem(loc[:-1], f"invalid name: {message}")
    return _Problem(loc, message)


def _unknown_field(name: str) -> str:
    if name in _FIELD_NAMES:
        return "unknown field here (it belongs to another block or router provider)"
    close = difflib.get_close_matches(name, _FIELD_NAMES, n=1, cutoff=0.75)
    return "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")


def _shared_workloads(spec: _FileSpec) -> Iterator[_Problem]:
    """Two app names for one Deployment would dodge the one-release-per-app rule."""
    owners: dict[tuple[str, str], str] = {}
    for name, app in spec.apps.items():
        target = (app.namespace, app.workload)
        if target in owners:
            yield _Problem(
                ("apps", name, "workload"),
                f"Deployment {app.namespace}/{app.workload} already belongs to app "
                f"{owners[target]!r}; one Deployment, one app",
            )
        owners.setdefault(target, name)


def _plans_routers_cannot_run(spec: _FileSpec) -> Iterator[_Problem]:
    for name, app in spec.apps.items():
        plan = app.plan or spec.default_plan
        stages = spec.plans.get(plan)
        header_routed = (
            any(stage.header_routed for stage in stages)
            if stages is not None
            else any(stage.header_routed for stage in DEFAULT_PLAN.stages)
        )
        if header_routed and not router_routes_by_header(app.router):
            yield _Problem(("apps", name, "plan"), _no_header_routing(plan))


def router_routes_by_header(router: Router) -> bool:
    """The replicas router splits by pod count only: it cannot send a header to the canary."""
    return not isinstance(router, ReplicasRouter)


def plan_refusal(app: AppConfig, plan: Plan) -> str | None:
    """Why `app` cannot run `plan` (a `--plan` given at start), or None when it can."""
    if any(stage.header_routed for stage in plan.stages) and not router_routes_by_header(
        app.router
    ):
        return f"{app.name}: {_no_header_routing(plan.name)}"
    return None


def _no_header_routing(plan: str) -> str:
    return (
        f"plan {plan!r} has a header-routed stage, which router 'replicas' cannot run (it splits "
        "traffic by pod count only); use a plan without header_routed stages, or router istio "
        "or gateway-api"
    )


# ---------------------------------------------------------------- YAML positions


def _child(node: yaml.Node, segment: str | int) -> tuple[yaml.Mark, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in reversed(node.value):  # a key written twice: safe_load keeps the last
            if isinstance(key, yaml.ScalarNode) and key.value == str(segment):
                return key.start_mark, value
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(segment, int)
        and segment < len(node.value)
    ):
        item: yaml.Node = node.value[segment]
        return item.start_mark, item
    return None


def _position(root: yaml.Node, loc: Loc) -> yaml.Mark | None:
    """Where in the file `loc` is, or its nearest written ancestor (a missing field: its parent)."""
    mark, node = None, root
    for segment in loc:
        found = _child(node, segment)
        if found is None:
            break
        mark, node = found
    return mark


def _duplicate_keys(node: yaml.Node, loc: Loc, seen: set[int]) -> Iterator[tuple[yaml.Mark, str]]:
    """Keys written twice in one mapping: safe_load would silently keep only the last one."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in first_line:
                    where = f"{_path((*loc, key.value))}: key written twice"
                    yield key.start_mark, f"{where} (first on line {first_line[key.value]})"
                first_line.setdefault(key.value, key.start_mark.line + 1)
            yield from _duplicate_keys(value, (*loc, str(key.value)), seen)
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index), seen)


def _at(source: str, mark: yaml.Mark | None, text: str) -> str:
    if mark is None:
        return f"{source}: {text}"
    return f"{source}:{mark.line + 1}:{mark.column + 1}: {text}"


# ---------------------------------------------------------------- loading


def _read(source: str) -> str:
    try:
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [f"{source}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(source, [f"{source}: is a directory, not a YAML file"]) from None
    except UnicodeDecodeError as error:
        problem = f"{source}: not UTF-8 text (byte {error.start})"
        raise ConfigError(source, [problem]) from None
    except OSError as error:
        raise ConfigError(source, [f"{source}: cannot read: {error.strerror}"]) from None


def _yaml_error(source: str, error: yaml.YAMLError) -> ConfigError:
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return ConfigError(source, [f"{source}: YAML error: {error}"])
    text = str(error.problem)
    if error.context and error.context_mark is not None:
        text = f"{error.context} on line {error.context_mark.line + 1}, {text}"
    return ConfigError(source, [_at(source, error.problem_mark, f"YAML syntax error: {text}")])


def _parse(source: str, text: str) -> tuple[yaml.Node, object]:
    """The node tree (for line numbers and duplicate keys) and the data safe_load builds."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise _yaml_error(source, error) from None
    if root is None or data is None:
        raise ConfigError(
            source, [f"{source}: file is empty; expected 'apps:' (and optionally 'plans:')"]
        )
    return root, data


def _plan_names(data: object) -> list[str]:
    """Plan names as written, so an app naming a plan that has its own mistakes is not flagged."""
    written = data.get("plans") if isinstance(data, dict) else None
    if not isinstance(written, dict):
        return [DEFAULT_PLAN.name]
    return [DEFAULT_PLAN.name, *(name for name in written if name != DEFAULT_PLAN.name)]


def _without_extensions(data: object) -> object:
    """Top-level keys starting with 'x-' are the user's own (e.g. YAML anchors to merge from)."""
    if not isinstance(data, dict):
        return data
    return {key: value for key, value in data.items() if not str(key).startswith("x-")}


def load_config(path: str | os.PathLike[str]) -> BotConfig:
    """Read and validate the apps and plans file; ConfigError lists every problem found."""
    source = os.fspath(path)
    root, data = _parse(source, _read(source))
    data = _without_extensions(data)
    duplicates = list(_duplicate_keys(root, (), set()))
    try:
        spec = _FileSpec.model_validate(data, context={"plan_names": _plan_names(data)})
        problems = [*_shared_workloads(spec), *_plans_routers_cannot_run(spec)]
    except ValidationError as error:
        spec, problems = None, [_from_pydantic(details) for details in error.errors()]
    # Duplicates first: a key written twice explains the problems found in the copy kept.
    located = duplicates + [
        (_position(root, p.loc), f"{_path(p.loc)}: {p.message}") for p in problems
    ]
    if spec is None or located:
        located.sort(key=lambda item: (item[0].line, item[0].column) if item[0] else (-1, -1))
        raise ConfigError(source, [_at(source, mark, text) for mark, text in located])
    return _to_config(source, spec)


# ---------------------------------------------------------------- check-config


def _describe_plan(plan: Plan) -> str:
    steps = []
    for stage in plan.stages:
        step = f"{stage.weight}%" + (" header-routed" if stage.header_routed else "")
        step += f" {format_duration(stage.duration_s)}" if stage.duration_s else ""
        steps.append(step + (" +approval" if stage.needs_approval else ""))
    return " -> ".join(steps)


def _describe_app(app: AppConfig) -> str:
    return (
        f"{app.name}: {app.namespace}/{app.workload} via {app.router.provider}, "
        f"plan {app.plan.name}, channel {app.slack_channel}"
    )


def _summary(config: BotConfig) -> str:
    """The check-config report: counts, then one line per app and per plan."""
    lines = [f"OK: {_count(len(config.apps), 'app')}, {_count(len(config.plans), 'plan')}"]
    lines += ["apps:", *(f"  {_describe_app(app)}" for app in config.apps.values())]
    lines.append("plans:")
    for name, plan in config.plans.items():
        origin = " (built in)" if plan is DEFAULT_PLAN else ""
        lines.append(f"  {name}{origin}: {_describe_plan(plan)}")
    return "\n".join(lines)


def check_config_command(file: str) -> int:
    """`release-bot check-config FILE`: summary on stdout (exit 0), problems on stderr (exit 1)."""
    try:
        config = load_config(file)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(_summary(config))
    return 0
