"""The start form: a modal to start a release without remembering the grammar.

Opened by the `/release canary` (or other strategy) listener with nothing after it, and by App
Home's "Start a release" button (handlers/start_form.py); re-drawn with views.update when a
select changes (the chosen plan's stages are previewed, the app's recent versions hinted).
Pure: builds view JSON and reads a submitted view back; the listener calls Slack. The wording
of the form is here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.core.plan import Plan
from bot.core.text import plan_text

ACTION_OPEN_START_FORM = "home.start_form"
START_FORM_CALLBACK = "release.start_form"
FIELD_APP = "app"
FIELD_STRATEGY = "strategy"
FIELD_PLAN = "plan"
FIELD_VERSION = "version"
FIELD_REASON = "reason"
ACTION_PREFIX = "start_form."
"""Every field's action id is this plus the field's name (its block id)."""
SELECT_OPTIONS_MAX = 100
ERROR_TEXT_MAX = 300


@dataclass(frozen=True, slots=True)
class FormOrigin:
    """Where the form was opened: the channel of the command (or APP_HOME), kept in the view's
    private_metadata so the submission is checked against the app's channels as a command is."""

    channel: str
    channel_name: str = ""


@dataclass(frozen=True, slots=True)
class FormChoices:
    """What the form offers: `apps` the person may start, the strategies of the grammar, the
    plans that fit the chosen app (its own first), what is chosen so far, and a `notice` on top
    (why the last submission was refused after the form closed)."""

    origin: FormOrigin
    apps: tuple[str, ...]
    strategies: tuple[str, ...]
    app: str | None
    strategy: str
    plans: tuple[Plan, ...] = ()
    """Empty when the strategy takes no plan."""
    plan: Plan | None = None
    recent_versions: tuple[str, ...] = ()
    version: str = ""
    reason: str = ""
    notice: str = ""


@dataclass(frozen=True, slots=True)
class FormValues:
    """A form as the person left it."""

    origin: FormOrigin
    app: str | None
    strategy: str | None
    plan: str | None
    version: str
    reason: str


def start_form(choices: FormChoices) -> dict[str, Any]:
    """The modal; without an app the person may start it only says so."""
    metadata = json.dumps(asdict(choices.origin))
    blocks: list[Any] = []
    if choices.notice:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=choices.notice[:3000])))
    if not choices.apps:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text="There is no app you may start from here: the apps file's "
                    "`authorization.start` and `channels` decide who may, and where."
                )
            )
        )
        return _modal(blocks, metadata, submit=False)
    blocks += [
        _select(FIELD_APP, "App", choices.apps, choices.app, hint="Only the apps you may start."),
        _select(FIELD_STRATEGY, "Strategy", choices.strategies, choices.strategy),
    ]
    if choices.plans:
        chosen = choices.plan.name if choices.plan else None
        blocks.append(_select(FIELD_PLAN, "Plan", [plan.name for plan in choices.plans], chosen))
        if choices.plan is not None:
            stages = f"*Stages:* {plan_text(choices.plan)}"
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text=stages)]))
    blocks += [
        _text_input(
            FIELD_VERSION,
            "Version",
            choices.version,
            placeholder="v2.4.1 or a full image reference",
            hint=_version_hint(choices.recent_versions),
        ),
        _text_input(
            FIELD_REASON,
            "Reason",
            choices.reason,
            placeholder="Why this release (kept in the audit trail)",
            optional=True,
        ),
    ]
    return _modal(blocks, metadata, submit=True)


def progress_view(text: str) -> dict[str, Any]:
    """What the modal shows while, and after, the release is started: `text` alone."""
    blocks = [SectionBlock(text=MarkdownTextObject(text=text[:3000]))]
    return _modal(blocks, "", submit=False)


def read_form(view: dict[str, Any]) -> FormValues:
    """The values of a submitted (or changed) form, from its `state` and `private_metadata`."""
    values = (view.get("state") or {}).get("values") or {}

    def value(field: str) -> str | None:
        element = (values.get(field) or {}).get(ACTION_PREFIX + field) or {}
        selected = element.get("selected_option")
        if selected is not None:
            return str(selected.get("value") or "") or None
        return str(element["value"]).strip() if element.get("value") else None

    try:
        origin = FormOrigin(**json.loads(view.get("private_metadata") or "{}"))
    except (TypeError, ValueError):
        origin = FormOrigin(channel="")
    return FormValues(
        origin=origin,
        app=value(FIELD_APP),
        strategy=value(FIELD_STRATEGY),
        plan=value(FIELD_PLAN),
        version=value(FIELD_VERSION) or "",
        reason=value(FIELD_REASON) or "",
    )


def field_errors(field: str, message: str) -> dict[str, Any]:
    """The answer to a submission that shows `message` under `field` and keeps the form open."""
    text = message if len(message) <= ERROR_TEXT_MAX else message[: ERROR_TEXT_MAX - 1] + "…"
    return {"response_action": "errors", "errors": {field: text}}


def _version_hint(recent: tuple[str, ...]) -> str:
    if not recent:
        return "An image tag (v2.4.1) or a full image reference."
    return f"Recent: {', '.join(recent)}."


def _modal(blocks: list[Any], metadata: str, *, submit: bool) -> dict[str, Any]:
    view = View(
        type="modal",
        callback_id=START_FORM_CALLBACK,
        title=PlainTextObject(text="Start a release"),
        submit=PlainTextObject(text="Start") if submit else None,
        close=PlainTextObject(text="Cancel" if submit else "Close"),
        private_metadata=metadata,
        blocks=blocks,
    )
    return view.to_dict()


def _select(
    field: str, label: str, names: Any, chosen: str | None, *, hint: str | None = None
) -> InputBlock:
    options = [Option(value=name, text=name) for name in list(names)[:SELECT_OPTIONS_MAX]]
    initial = next((option for option in options if option.value == chosen), None)
    return InputBlock(
        block_id=field,
        label=PlainTextObject(text=label),
        dispatch_action=True,  # a change re-draws the form (plan stages, recent versions)
        hint=PlainTextObject(text=hint) if hint else None,
        element=StaticSelectElement(
            action_id=ACTION_PREFIX + field,
            placeholder=PlainTextObject(text=f"Choose the {label.lower()}"),
            options=options,
            initial_option=initial,
        ),
    )


def _text_input(
    field: str,
    label: str,
    initial: str,
    *,
    placeholder: str,
    hint: str | None = None,
    optional: bool = False,
) -> InputBlock:
    return InputBlock(
        block_id=field,
        label=PlainTextObject(text=label),
        optional=optional,
        hint=PlainTextObject(text=hint[:2000]) if hint else None,
        element=PlainTextInputElement(
            action_id=ACTION_PREFIX + field,
            placeholder=PlainTextObject(text=placeholder),
            initial_value=initial or None,
            max_length=300,
        ),
    )
