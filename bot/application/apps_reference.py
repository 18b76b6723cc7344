"""The apps file's field reference, made from its schema: called by the test that keeps README's
reference equal to it, and run as `python3 -m bot.application.apps_reference` to print it."""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from bot.application.apps_file import _AppSpec, _FileSpec, _StageSpec
from bot.core.apps import (
    ChannelRef,
    GatewayApiRouter,
    IstioRouter,
    JobTemplate,
    NoRouter,
    ReplicasRouter,
)
from bot.core.durations import format_duration

_ROUTERS = (ReplicasRouter, IstioRouter, GatewayApiRouter, NoRouter)
_DURATION_FIELDS = {
    "duration_s",
    "interval_s",
    "window_s",
    "snapshot_interval_s",
    "watch_window_s",
    "check_interval_s",
    "retention_s",
    "scale_down_grace_s",
    "lookback_s",
    "timeout_s",
}
HEADER = "| field | type | default | meaning |\n| --- | --- | --- | --- |"


def reference() -> str:
    """A Markdown table: one row per field of the apps file, with its path."""
    rows = [
        *_rows(_FileSpec, "", skip=frozenset({"apps", "plans"})),
        *_rows(_StageSpec, "plans.NAME[]."),
        *_rows(_AppSpec, "apps.NAME.", skip=frozenset({"router"})),
    ]
    for router in _ROUTERS:
        rows.extend(_rows(router, "apps.NAME.router."))
    return "\n".join([HEADER, *rows])


def _rows(model: type[BaseModel], prefix: str, *, skip: frozenset[str] = frozenset()) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        path = f"{prefix}{field.alias or name}"
        nested = _nested_model(field.annotation)
        if nested is not None:
            rows.extend(_rows(nested, f"{path}[]." if _is_list(field.annotation) else f"{path}."))
            continue
        rows.append(_row(path, name, field))
    return rows


def _row(path: str, name: str, field: FieldInfo) -> str:
    kind = "duration" if name in _DURATION_FIELDS else _type_text(field.annotation)
    default = (
        "required"
        if field.is_required()
        else _default_text(field, duration=name in _DURATION_FIELDS)
    )
    meaning = " ".join((field.description or "").split()).replace("|", "\\|")
    return f"| `{path}` | {kind} | {default} | {meaning} |"


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _is_list(get_args(annotation)[0])
    return get_origin(annotation) is tuple


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is Annotated:
        return _nested_model(get_args(annotation)[0])
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_text(annotation: Any) -> str:
    if annotation == JobTemplate:
        return "Job spec"
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_text(get_args(annotation)[0])
    if origin is Literal:
        return " or ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        shown = [_type_text(arg) for arg in get_args(annotation) if arg is not type(None)]
        return " or ".join(shown)
    if origin is tuple:
        return f"list of {_type_text(get_args(annotation)[0])}"
    if origin is dict:
        return f"mapping of name to {_type_text(get_args(annotation)[1])}"
    if annotation is ChannelRef:
        return "Slack channel"
    return {str: "text", int: "integer", float: "number", bool: "true/false"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _default_text(field: FieldInfo, *, duration: bool) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if duration:
        return f"`{format_duration(value)}`"
    if value in ((), {}, ""):
        return "empty"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


if __name__ == "__main__":
    print(reference())
