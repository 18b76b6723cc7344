"""The apps and plans file: reading it, validating it, and every problem with its position.

Called by the server at start-up (RELEASE_BOT_CONFIG: a file, a directory, or several joined by
':') and by `release-bot check-config` (bot.entrypoints); the server hands the BotConfig it
returns to the release service.

File layout (see deploy/examples/apps.yaml for every field, commented):

    apps:           # required, at least one; key = app name used in `/release canary <app>`
      shop-api: {namespace, workload, container?, router?, slack_channel, plan?, metrics?,
                 alert_mention?, authorization?, bluegreen?, freezes?, verification?}
                 # no router: blue-green only
    plans:          # optional; key = plan name, value = list of stages
      fast: [{weight, duration, approval?, approvals?, header_routed?, verification?}, ...]
    default_plan:   # optional; the plan of apps that name none (default: "default")
    freezes:        # optional; recurring freeze windows of every app:
      - {rrule: "FREQ=WEEKLY;BYDAY=FR;BYHOUR=16", duration: 64h, timezone: Europe/Berlin,
         reason: weekend}
    break_glass:    # optional; Slack user IDs who may `--override` a freeze or a lock

Decisions:
- The built-in plan `default` (bot.core.plan.DEFAULT_PLAN) always exists and cannot be
  redefined: `plans: {default: ...}` is refused. To give apps another default, define the plan
  under its own name and set `default_plan: <name>`; so a reader of the file always knows what
  "default" means.
- A plan whose last stage is below 100 % gets a final `100 %, 0 s` stage appended (the
  promotion), so every loaded plan ends at 100 % like DEFAULT_PLAN. Nothing may follow a
  100 % stage.
- Durations need a unit (`90s`, `30m`, `1h`, `2h30m`, `1d`); a bare number is refused
  because it is ambiguous.
- Every problem is reported at once, each as `FILE:LINE:COL: path.in.file: what is wrong`;
  the cross-field ones (a Deployment shared by two apps, a plan the app's router cannot run)
  too, computed on the apps and plans that validated, so one run shows them all.
- The config may be split in several files or a directory of them (one per team): names of
  apps and plans are unique across the files, an app may name a plan of another file, and
  default_plan is set in one file at most. With several files, a file may hold no apps.
- A stage of 0s is refused unless it is the final 100 % stage or held for approval: with no
  time, no metric check could judge it.
- A quoted boolean or number (`four_eyes: "true"`) is text to YAML; the problem says to write
  it without quotes.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Generic, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from bot.core.apps import (
    ROUTER_PROVIDERS,
    AppConfig,
    AppSettings,
    AuthorizationConfig,
    BlueGreenConfig,
    BotConfig,
    DnsLabel,
    ErrorRateLimits,
    FreezeWindow,
    FreezeWindows,
    FrozenModel,
    GatewayApiRouter,
    IstioRouter,
    LatencyLimits,
    MetricsConfig,
    Principals,
    QpsLimits,
    ReplicasRouter,
    VerificationSettings,
    VerificationSpec,
    plan_problem,
    verification_problem,
)
from bot.core.durations import StageDuration
from bot.core.plan import DEFAULT_PLAN, Plan, Stage
from bot.core.text import count

Loc = tuple[str | int, ...]
_Value = TypeVar("_Value")


class ConfigError(Exception):
    """The file cannot be used; `problems` lists every mistake found, each naming file and path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: {count(len(problems), 'problem')}:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


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


class _StageSpec(FrozenModel):
    weight: Annotated[int, Field(ge=0, le=100)]
    """Percent of public traffic on the canary, 0..100, never decreasing from stage to stage."""
    approval: bool = False
    """A person approves before the release leaves this stage."""
    approvals: Annotated[int, Field(ge=1, le=10)] | None = None
    """How many distinct people must approve (implies `approval`; under four-eyes none of them
    the requester); a promote counts as one approval, so it never passes a stage of 2 or more
    alone."""
    duration_s: StageDuration = Field(alias="duration")
    """How long the stage runs, checked all along; 0s only for the final 100 % stage or an
    approval stage."""
    header_routed: bool = False
    """Internal validation (weight 0 only): no public traffic, the canary reachable by header."""
    verification: VerificationSpec | None = None

    @field_validator("duration_s")
    @classmethod
    def _some_time_to_check(cls, seconds: int, info: ValidationInfo) -> int:
        weight = info.data.get("weight")
        approval = info.data.get("approval", True) or info.data.get("approvals") is not None
        if seconds == 0 and weight is not None and weight < 100 and not approval:
            raise ValueError(
                f"a {weight} % stage of 0s gives no metric check a chance to run: give it a "
                "duration such as '10m' (only the final 100 % stage, the promotion, or a stage "
                "held for approval may take 0s)"
            )
        return seconds

    @property
    def needs_approval(self) -> bool:
        return self.approval or self.approvals is not None

    @model_validator(mode="after")
    def _approvals_agree(self) -> _StageSpec:
        if self.approvals is not None and not self.approval and "approval" in self.model_fields_set:
            raise ValueError(
                f"approval: false contradicts approvals: {self.approvals}; drop 'approval' "
                "('approvals' alone holds the stage for approval)"
            )
        return self

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


def _some_apps(apps: dict[str, _AppSpec]) -> dict[str, _AppSpec]:
    if not apps:
        raise ValueError("no apps defined: describe at least one under 'apps:'")
    return apps


class _AppSpec(AppSettings):
    plan: PlanRef | None = None
    """The app's plan; default: `default_plan`."""


class _FileSpec(FrozenModel):
    apps: Annotated[dict[DnsLabel, _AppSpec], AfterValidator(_some_apps)]
    plans: dict[
        Annotated[DnsLabel, AfterValidator(_not_builtin_plan)],
        Annotated[list[_StageSpec], AfterValidator(_stages_in_order)],
    ] = Field(default_factory=dict)
    default_plan: PlanRef = DEFAULT_PLAN.name
    """The plan of apps that name none (the built-in `default`: 0 % by header for 1h → 5 % for
    2h → 50 % for 4h + approval → 100 %)."""
    freezes: FreezeWindows = ()
    """Recurring freeze windows of every app (see `apps.NAME.freezes` for one app's)."""
    break_glass: Principals = ()
    """Who may `--override` a freeze or a lock: Slack user IDs (group IDs count only once the
    bot resolves group members)."""


class _PartSpec(_FileSpec):
    """One of several files: it may hold no apps (say, the plans the teams share)."""

    apps: dict[DnsLabel, _AppSpec] = Field(default_factory=dict)


# One entry of `apps:` or `plans:` (or default_plan) at a time: the cross-field checks run on
# the parts of a file that validated, so their problems come out with the field problems.
_STRICT = ConfigDict(strict=True)
_APP_ENTRY = TypeAdapter(dict[DnsLabel, _AppSpec], config=_STRICT)
_PLAN_ENTRY = TypeAdapter(
    dict[
        Annotated[DnsLabel, AfterValidator(_not_builtin_plan)],
        Annotated[list[_StageSpec], AfterValidator(_stages_in_order)],
    ],
    config=_STRICT,
)
_PLAN_REF = TypeAdapter(PlanRef, config=_STRICT)
_FREEZES = TypeAdapter(FreezeWindows, config=_STRICT)
_PRINCIPALS = TypeAdapter(Principals, config=_STRICT)

_SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    _FileSpec,
    _AppSpec,
    _StageSpec,
    VerificationSpec,
    VerificationSettings,
    BlueGreenConfig,
    ReplicasRouter,
    IstioRouter,
    GatewayApiRouter,
    MetricsConfig,
    ErrorRateLimits,
    LatencyLimits,
    QpsLimits,
    AuthorizationConfig,
    FreezeWindow,
)
_FIELD_NAMES = sorted(
    {field.alias or name for model in _SCHEMA_MODELS for name, field in model.model_fields.items()}
)


# ---------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class _Problem:
    loc: Loc
    message: str


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
        if not (index > 0 and loc[index - 1] == "router" and segment in ROUTER_PROVIDERS)
    )


ROLLBACK_NOT_GATED = (
    "'rollback' is no longer a setting: stopping harm is never gated, so anyone in the app's "
    "channels may roll back (and pause and resume); remove this line"
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
    if kind == "extra_forbidden" and loc[-2:] == ("authorization", "rollback"):
        return _Problem(loc, ROLLBACK_NOT_GATED)
    if kind == "extra_forbidden":
        return _Problem(loc, _unknown_field(str(loc[-1])))
    if quoted := _quoted_scalar(kind, error["input"]):
        return _Problem(loc, quoted)
    message = _EXPECTED_SHAPE.get(kind) or re.sub(r"^\w+ should", "must", error["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    else:
        message += f", got {_shown(error['input'])}"
    if loc and loc[-1] == "[key]":
        return _Problem(loc[:-1], f"invalid name: {message}")
    return _Problem(loc, message)


_QUOTED_BOOLEANS = {"true": "true", "false": "false", "yes": "true", "no": "false"}
_NUMBER = re.compile(r"[-+]?\d+")
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _quoted_scalar(kind: str, value: object) -> str | None:
    """A boolean or number written in quotes is text to YAML; say how to write it instead."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if kind == "bool_type" and text.lower() in _QUOTED_BOOLEANS:
        written = _QUOTED_BOOLEANS[text.lower()]
        return f"must be a boolean, got the text {value!r}: write {written} without quotes"
    if (kind == "int_type" and _NUMBER.fullmatch(text)) or (
        kind == "float_type" and _DECIMAL.fullmatch(text)
    ):
        return f"must be a number, got the text {value!r}: write {text} without quotes"
    return None


def _unknown_field(name: str) -> str:
    if name in _FIELD_NAMES:
        return "unknown field here (it belongs to another block or router provider)"
    close = difflib.get_close_matches(name, _FIELD_NAMES, n=1, cutoff=0.75)
    return "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")


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


def _written_plan_names(data: object) -> list[str]:
    """Plan names as written, so an app naming a plan that has its own mistakes is not flagged."""
    written = data.get("plans") if isinstance(data, dict) else None
    if not isinstance(written, dict):
        return []
    return [name for name in written if name != DEFAULT_PLAN.name]


def _without_extensions(data: object) -> object:
    """Top-level keys starting with 'x-' are the user's own (e.g. YAML anchors to merge from)."""
    if not isinstance(data, dict):
        return data
    return {key: value for key, value in data.items() if not str(key).startswith("x-")}


def _yaml_files(source: str) -> list[str]:
    """`source` itself, or the *.yaml and *.yml files of the directory it names, sorted."""
    directory = Path(source)
    if not directory.is_dir():
        return [source]
    files = sorted(
        str(entry)
        for entry in directory.iterdir()
        if entry.suffix in (".yaml", ".yml") and entry.is_file()
    )
    if not files:
        raise ConfigError(
            source, [f"{source}: is a directory without any *.yaml or *.yml file in it"]
        )
    return files


# Problems sort by file (in the order given), then line and column; -1 for the whole file.
_Order = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class _Located:
    order: _Order
    text: str


@dataclass(frozen=True, slots=True)
class _Part:
    """One parsed file of the config, with what is needed to place a problem in it."""

    index: int
    source: str
    root: yaml.Node
    data: object

    def locate(self, loc: Loc, message: str) -> _Located:
        mark = _position(self.root, loc)
        return self.at(mark, f"{_path(loc)}: {message}")

    def at(self, mark: yaml.Mark | None, text: str) -> _Located:
        order = (self.index, mark.line, mark.column) if mark else (self.index, -1, -1)
        return _Located(order, _at(self.source, mark, text))

    def where(self, loc: Loc) -> str:
        """FILE:LINE:COL of `loc`, for a problem that names a place in another file."""
        mark = _position(self.root, loc)
        return f"{self.source}:{mark.line + 1}:{mark.column + 1}" if mark else self.source

    def section(self, key: str) -> dict[object, object]:
        value = self.data.get(key) if isinstance(self.data, dict) else None
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class _Defined(Generic[_Value]):
    """An app or plan that validated on its own, and where it is written."""

    part: _Part
    name: str
    value: _Value


def _field_problems(part: _Part, schema: type[_FileSpec], plan_names: list[str]) -> list[_Located]:
    found = [part.at(mark, text) for mark, text in _duplicate_keys(part.root, (), set())]
    try:
        schema.model_validate(part.data, context={"plan_names": plan_names})
    except ValidationError as error:
        for details in error.errors():
            problem = _from_pydantic(details)
            found.append(part.locate(problem.loc, problem.message))
    return found


def _valid_entries(
    parts: Sequence[_Part], section: str, adapter: TypeAdapter[dict[str, _Value]], context: object
) -> Iterator[_Defined[_Value]]:
    """The entries of `section` (apps or plans) that validate on their own, in file order."""
    for part in parts:
        for name, value in part.section(section).items():
            try:
                (valid,) = adapter.validate_python({name: value}, context=context).values()
            except ValidationError:
                continue  # its problems are among the field problems
            yield _Defined(part, str(name), valid)


def _names_defined_twice(parts: Sequence[_Part], section: str, what: str) -> Iterator[_Located]:
    first: dict[str, _Part] = {}
    for part in parts:
        for name in part.section(section):
            key = str(name)
            if key in first and first[key] is not part:
                yield part.locate(
                    (section, key),
                    f"{what} {key!r} is defined twice: also in {first[key].where((section, key))};"
                    f" {what} names must be unique across the files",
                )
            first.setdefault(key, part)


def _default_plan(parts: Sequence[_Part], plan_names: list[str]) -> tuple[str, list[_Located]]:
    """The plan of apps naming none; default_plan may be set in one file only."""
    setters = [p for p in parts if isinstance(p.data, dict) and "default_plan" in p.data]
    problems = [
        part.locate(
            ("default_plan",),
            f"also set in {setters[0].where(('default_plan',))}; set default_plan in one file only",
        )
        for part in setters[1:]
    ]
    if setters and isinstance(setters[0].data, dict):
        try:
            name = _PLAN_REF.validate_python(
                setters[0].data["default_plan"], context={"plan_names": plan_names}
            )
        except ValidationError:
            return DEFAULT_PLAN.name, problems
        return name, problems
    return DEFAULT_PLAN.name, problems


def _to_plan(name: str, stages: list[_StageSpec]) -> Plan:
    converted = [
        Stage(
            weight=stage.weight,
            duration_s=stage.duration_s,
            needs_approval=stage.needs_approval,
            approvals_needed=stage.approvals or 1,
            header_routed=stage.header_routed,
            verification=stage.verification.verification() if stage.verification else None,
        )
        for stage in stages
    ]
    if converted[-1].weight < 100:
        converted.append(Stage(weight=100, duration_s=0))
    return Plan(name=name, stages=tuple(converted))


def _merge(parts: Sequence[_Part], plan_names: list[str]) -> tuple[BotConfig, list[_Located]]:
    """The config built of every app and plan that validated, and the cross-field problems:
    names defined twice, default_plan set twice, a Deployment shared by two apps, a plan the
    app's router cannot run. An app whose plan has mistakes of its own is not checked."""
    problems = [
        *_names_defined_twice(parts, "apps", "app"),
        *_names_defined_twice(parts, "plans", "plan"),
    ]
    default_plan, default_problems = _default_plan(parts, plan_names)
    problems += default_problems
    plans: dict[str, Plan] = {DEFAULT_PLAN.name: DEFAULT_PLAN}
    for written in _valid_entries(parts, "plans", _PLAN_ENTRY, None):
        plans.setdefault(written.name, _to_plan(written.name, written.value))
    apps: dict[str, AppConfig] = {}
    owners: dict[tuple[str, str], _Defined[_AppSpec]] = {}
    context = {"plan_names": plan_names}
    for entry in _valid_entries(parts, "apps", _APP_ENTRY, context):
        app = entry.value
        if entry.name in apps:
            continue  # defined twice: named above
        target = (app.namespace, app.workload)
        if (owner := owners.setdefault(target, entry)) is not entry:
            elsewhere = "" if owner.part is entry.part else f" (in {owner.part.source})"
            problems.append(
                entry.part.locate(
                    ("apps", entry.name, "workload"),
                    f"Deployment {app.namespace}/{app.workload} already belongs to app "
                    f"{owner.name!r}{elsewhere}; one Deployment, one app",
                )
            )
        plan = plans.get(app.plan or default_plan)
        if plan is None:
            continue  # the plan has mistakes of its own
        for problem in (plan_problem(app.router, plan), verification_problem(app, plan)):
            if problem:
                problems.append(entry.part.locate(("apps", entry.name, "plan"), problem))
        if problem := verification_problem(app, app.bluegreen.plan()):
            where = ("apps", entry.name, "bluegreen", "verification")
            problems.append(entry.part.locate(where, problem))
        apps[entry.name] = AppConfig(
            name=entry.name,
            plan=plan,
            **{field: getattr(app, field) for field in AppSettings.model_fields},
        )
    source = ", ".join(dict.fromkeys(part.source for part in parts))
    freezes: list[FreezeWindow] = []
    break_glass: list[str] = []
    for part in parts:
        data = part.data if isinstance(part.data, dict) else {}
        try:
            freezes += _FREEZES.validate_python(data.get("freezes", ()))
            break_glass += _PRINCIPALS.validate_python(data.get("break_glass", ()))
        except ValidationError:
            continue  # its problems are among the field problems
    config = BotConfig(
        source=source,
        apps=apps,
        plans=plans,
        freezes=tuple(freezes),
        break_glass=tuple(dict.fromkeys(break_glass)),
    )
    return config, problems


def load_config(*paths: str | os.PathLike[str]) -> BotConfig:
    """Read and validate the apps and plans files; ConfigError lists every problem found.

    Each path is a file, or a directory whose *.yaml and *.yml files are read in name order.
    Several files (one per team, say) make one config: app and plan names are unique across
    them, an app may name a plan of another file, and default_plan is set in one file at most.
    Every file is checked and every problem is placed in its own file.
    """
    if not paths:
        raise ValueError("load_config needs at least one file or directory")
    sources = [os.fspath(path) for path in paths]
    source = ", ".join(sources)
    problems: list[_Located] = []
    parts: list[_Part] = []
    files: list[str] = []
    for given in sources:
        try:
            files += _yaml_files(given)
        except ConfigError as error:
            problems += [_Located((len(files), -1, -1), text) for text in error.problems]
    for index, file in enumerate(dict.fromkeys(files)):
        try:
            root, data = _parse(file, _read(file))
        except ConfigError as error:
            problems += [_Located((index, -1, -1), text) for text in error.problems]
            continue
        parts.append(_Part(index, file, root, _without_extensions(data)))
    plan_names = [
        DEFAULT_PLAN.name,
        *dict.fromkeys(name for part in parts for name in _written_plan_names(part.data)),
    ]
    schema = _FileSpec if len(files) == 1 else _PartSpec
    for part in parts:
        problems += _field_problems(part, schema, plan_names)
    config, cross_field = _merge(parts, plan_names)
    problems += cross_field
    if parts and not config.apps and not problems:
        problems.append(_Located((0, -1, -1), f"{source}: no apps defined in any of the files"))
    if problems:
        # Stable: in one place, a key written twice explains the problems found in its copy.
        problems.sort(key=lambda problem: problem.order)
        raise ConfigError(source, [problem.text for problem in problems])
    return dataclasses.replace(config, source=source)
