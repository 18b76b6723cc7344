"""The start form's listeners: open it, re-draw it as its selects change, start on submit.

Registered on the Bolt app by handlers.app.build_app through
`register(app, service=..., after_ack=...)`; `open_form` is also called by the `/release`
listener for a strategy with nothing after it. The form is opened with the request's
trigger_id (views.open), re-drawn with views.update, and its submission runs the same grammar
(bot.core.commands.start_command) and the same service call as the typed command: the checks
decided at once (authorization, plan, freeze, lock, busy, the version's form) come back as
errors on the form's fields, which stays open and loses nothing; the rest (the cluster's
preflight) after the acknowledgement, shown in the modal, which on a refusal is the form again,
filled in as it was, with the reason on top.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

import structlog
from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.application.service import Outcome, ReleaseService
from bot.core.authorization import APP_HOME
from bot.core.commands import STRATEGIES, UsageError, start_command, takes_plan
from bot.core.errors import ReleaseBotError
from bot.slack.cards import plain_text
from bot.slack.start_form import (
    ACTION_OPEN_START_FORM,
    ACTION_PREFIX,
    FIELD_APP,
    FIELD_PLAN,
    FIELD_STRATEGY,
    FIELD_VERSION,
    START_FORM_CALLBACK,
    FormChoices,
    FormOrigin,
    FormValues,
    field_errors,
    progress_view,
    read_form,
    start_form,
)
from handlers.commands import NOT_SET_UP, mark, outcome_of, run_after_ack

log = structlog.get_logger(__name__)


def register(app: App, *, service: ReleaseService | None, after_ack: Executor) -> None:
    """Attach the form's listeners: App Home's start button, the form's selects, its submit."""

    def handle_open_start_form(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        if service is None:
            return
        origin = FormOrigin(channel=APP_HOME)
        user, trigger_id = body["user"]["id"], body["trigger_id"]
        run_after_ack(
            after_ack,
            lambda: open_form(
                client,
                service,
                trigger_id=trigger_id,
                user=user,
                origin=origin,
                strategy=STRATEGIES[0],
            ),
            what="start_form_failed",
        )

    def handle_form_changed(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        if service is None:
            return
        run_after_ack(after_ack, lambda: _redraw(client, service, body), what="start_form_failed")

    def handle_form_submitted(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient
    ) -> None:
        # Field errors can only come in the acknowledgement: the quick checks run before it.
        values, user = read_form(view), body["user"]["id"]
        if service is None:
            ack(**field_errors(FIELD_APP, NOT_SET_UP))
            return
        checked = _checked(service, values, user)
        if isinstance(checked, dict):
            ack(**checked)
            return
        ack(response_action="update", view=progress_view(f"⏳ Starting {values.app} …"))
        run_after_ack(
            after_ack,
            lambda: _start(client, service, view["id"], values, user),
            what="start_form_failed",
        )

    app.action(ACTION_OPEN_START_FORM)(handle_open_start_form)
    for field in (FIELD_APP, FIELD_STRATEGY, FIELD_PLAN):
        app.action(ACTION_PREFIX + field)(handle_form_changed)
    app.view(START_FORM_CALLBACK)(handle_form_submitted)


def open_form(
    client: WebClient,
    service: ReleaseService,
    *,
    trigger_id: str,
    user: str,
    origin: FormOrigin,
    strategy: str,
) -> None:
    """Open the start form for `user` (views.open, within the trigger's 3 s)."""
    blank = FormValues(origin=origin, app=None, strategy=strategy, plan=None, version="", reason="")
    view = start_form(_choices(service, blank, user))
    try:
        client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as error:
        log.warning("start_form_not_opened", error=error.response.get("error"))


def _redraw(client: WebClient, service: ReleaseService, body: dict[str, Any]) -> None:
    """The form again after a select changed: the plan's stages, the app's recent versions."""
    view = body["view"]
    values = read_form(view)
    redrawn = start_form(_choices(service, values, body["user"]["id"]))
    try:
        client.views_update(view_id=view["id"], hash=view.get("hash"), view=redrawn)
    except SlackApiError as error:  # hash_conflict: a newer change re-draws it
        log.info("start_form_not_redrawn", error=error.response.get("error"))


def _choices(
    service: ReleaseService, values: FormValues, user: str, *, notice: str = ""
) -> FormChoices:
    origin = values.origin
    apps = service.startable_apps(
        user=user, channel=origin.channel, channel_name=origin.channel_name
    )
    app = values.app if values.app in apps else (apps[0] if len(apps) == 1 else None)
    strategy = values.strategy if values.strategy in STRATEGIES else STRATEGIES[0]
    plans = tuple(service.plans_for(app)) if app and takes_plan(strategy) else ()
    plan = next((p for p in plans if p.name == values.plan), plans[0] if plans else None)
    return FormChoices(
        origin=origin,
        apps=tuple(apps),
        strategies=STRATEGIES,
        app=app,
        strategy=strategy,
        plans=plans,
        plan=plan,
        recent_versions=tuple(service.recent_versions(app)) if app else (),
        version=values.version,
        reason=values.reason,
        notice=notice,
    )


def _checked(service: ReleaseService, values: FormValues, user: str) -> dict[str, Any] | None:
    """The field errors of a submission (the answer that keeps the form open); None when the
    start may go ahead."""
    if not values.app:
        return field_errors(FIELD_APP, "Choose an app.")
    try:
        start_command(
            values.strategy or "", app=values.app, version=values.version, plan=_plan(values)
        )
    except UsageError as error:
        return field_errors(FIELD_VERSION, error.problem)
    problem = service.check_start(
        app_name=values.app,
        plan_name=_plan(values),
        user=user,
        channel=values.origin.channel,
        channel_name=values.origin.channel_name,
    )
    if problem is None:
        return None
    return field_errors(problem.field.value, plain_text(problem.message))


def _plan(values: FormValues) -> str | None:
    return values.plan if values.strategy and takes_plan(values.strategy) else None


def _start(
    client: WebClient, service: ReleaseService, view_id: str, values: FormValues, user: str
) -> None:
    """Start as the command does; the modal shows the outcome (a refusal: the form again)."""
    assert values.app is not None and values.strategy is not None  # _checked made sure
    command = start_command(
        values.strategy, app=values.app, version=values.version, plan=_plan(values)
    )
    origin = values.origin
    try:
        outcome = outcome_of(
            service,
            command,
            user=user,
            channel=origin.channel,
            channel_name=origin.channel_name,
            reason=values.reason,
        )
    except ReleaseBotError as error:  # the state store is down: nothing was started
        outcome = Outcome(False, str(error), not_taken_up=True)
    text = f"{mark(outcome)} {outcome.message}"
    if outcome.applied and outcome.release is not None:
        view = progress_view(f"{text} Its card is in <#{outcome.release.channel}>.")
    else:
        view = start_form(_choices(service, values, user, notice=text))
    try:
        client.views_update(view_id=view_id, view=view)
    except SlackApiError as error:
        log.warning("start_form_outcome_not_shown", error=error.response.get("error"), text=text)
