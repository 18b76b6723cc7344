"""The apps and plans file: reading it, validating it, and every problem with its position.

Called by the server at start-up and by `release-bot check-config` (bot.entrypoints), which hand
the BotConfig it returns to the release service.

File layout (see deploy/examples/apps.yaml for every field, commented):

    apps:           # required, at least one; key = app name used in `/release canary <app>`
      shop-api: {namespace, workload, container?, router, slack_channel, plan?, metrics?,
                 alert_mention?, authorization?}
    plans:          # optional; key = plan name, value = list of stages
      fast: [{weight, duration, approval?, header_routed?}, ...]
    default_plan:   # optional; the plan of apps that name none (default: "default")

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
- Every problem is reported at once, each as `FILE:LINE:COL: path.in.file: what is wrong`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails

from bot.core.apps import (
    ROUTER_PROVIDERS,
    AppConfig,
    AppSettings,
    AuthorizationConfig,
    BotConfig,
    DnsLabel,
    ErrorRateLimits,
    FrozenModel,
    GatewayApiRouter,
    IstioRouter,
    LatencyLimits,
    MetricsConfig,
    QpsLimits,
    ReplicasRouter,
    plan_problem,
)
from bot.core.durations import StageDuration
from bot.core.plan import DEFAULT_PLAN, Plan, Stage
from bot.core.text import count

Loc = tuple[str | int, ...]


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


def _some_apps(apps: dict[str, _AppSpec]) -> dict[str, _AppSpec]:
    if not apps:
        raise ValueError("no apps defined: describe at least one under 'apps:'")
    return apps


class _AppSpec(AppSettings):
    plan: PlanRef | None = None


class _FileSpec(FrozenModel):
    apps: Annotated[dict[DnsLabel, _AppSpec], AfterValidator(_some_apps)]
    plans: dict[
        Annotated[DnsLabel, AfterValidator(_not_builtin_plan)],
        Annotated[list[_StageSpec], AfterValidator(_stages_in_order)],
    ] = Field(default_factory=dict)
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
            plan=plans[app.plan or spec.default_plan],
            **{field: getattr(app, field) for field in AppSettings.model_fields},
        )
        for name, app in spec.apps.items()
    }
    return BotConfig(source=source, apps=apps, plans=plans)


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


def _plans_routers_cannot_run(config: BotConfig) -> Iterator[_Problem]:
    for app in config.apps.values():
        if problem := plan_problem(app.router, app.plan):
            yield _Problem(("apps", app.name, "plan"), problem)


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
        config = _to_config(source, spec)
        problems = [*_shared_workloads(spec), *_plans_routers_cannot_run(config)]
    except ValidationError as error:
        config, problems = None, [_from_pydantic(details) for details in error.errors()]
    # Duplicates first: a key written twice explains the problems found in the copy kept.
    located = duplicates + [
        (_position(root, p.loc), f"{_path(p.loc)}: {p.message}") for p in problems
    ]
    if config is None or located:
        located.sort(key=lambda item: (item[0].line, item[0].column) if item[0] else (-1, -1))
        raise ConfigError(source, [_at(source, mark, text) for mark, text in located])
    return config
