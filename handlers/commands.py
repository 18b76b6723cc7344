"""The `/release` slash command listener.

Registered on the Bolt app by handlers.app.build_app through
`register(app, service=..., after_ack=...)`. Every command is acknowledged at once, within
Slack's 3 s: usage errors and the read-only commands (help, status, list, history) are answered
in the acknowledgement itself; commands that change something are acknowledged first and carried
out after, on the `after_ack` pool (see `answer_after_ack`), their outcome sent back through
`respond` (ephemeral, seen only by the person who typed it, except a lock or a freeze and their
lifting, which the whole channel sees). The release's card and thread show everyone else what
happened.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

import structlog
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.application.service import Outcome, ReleaseService
from bot.core import commands, machine
from bot.core.commands import COMMAND, UsageError, parse_command, usage_for
from bot.core.errors import ReleaseBotError
from bot.core.ports import HistoryEntry
from bot.core.release import ReleaseKind
from bot.slack.cards import release_card
from bot.slack.start_form import FormOrigin

log = structlog.get_logger(__name__)

NOT_SET_UP = (
    "release-bot is not set up for releases yet: it needs an apps file (RELEASE_BOT_CONFIG) and "
    "a state store (REDIS_URL, or REDIS_SENTINELS with REDIS_SENTINEL_MASTER). Ask the team that "
    "runs the bot; `/release help` works meanwhile."
)
INTERNAL_ERROR = ":x: release-bot hit an internal error; nothing more was done. See its logs."
HISTORY_LINES = 20

_READ_ONLY = (commands.Status, commands.ListActive, commands.History)
_KINDS: dict[type[commands.Command], ReleaseKind] = {
    commands.StartCanary: ReleaseKind.CANARY,
    commands.StartBlueGreen: ReleaseKind.BLUE_GREEN,
    commands.StartHybrid: ReleaseKind.HYBRID,
}
"""The release kind each start command asks for."""


OpenForm = Callable[..., None]
"""handlers.start_form.open_form: opens the start form (client, service, trigger_id=, user=,
origin=, strategy=)."""


def register(
    app: App, *, service: ReleaseService | None, after_ack: Executor, open_form: OpenForm
) -> None:
    """Attach the `/release` listener to `app`; `open_form` opens the start form for a strategy
    typed with nothing after it."""

    def handle_release_command(
        ack: Ack, respond: Respond, command: dict[str, str], client: WebClient
    ) -> None:
        try:
            parsed = parse_command(command.get("text", ""))
        except UsageError as error:
            ack(text=f"{error.problem}\n```{error.usage}```", response_type="ephemeral")
            return
        if isinstance(parsed, commands.Help):
            usage = usage_for(parsed.topic) if parsed.topic else commands.USAGE
            ack(text=f"```{usage}```", response_type="ephemeral")
            return
        if service is None:
            ack(text=NOT_SET_UP, response_type="ephemeral")
            return
        if isinstance(parsed, _READ_ONLY):
            ack(**_guarded(lambda: _answer_query(service, parsed)), response_type="ephemeral")
            return
        if isinstance(parsed, commands.OpenStartForm):
            ack()
            answer_after_ack(
                after_ack=after_ack,
                respond=respond,
                answer=lambda: _guarded(
                    lambda: _open_start_form(open_form, client, service, parsed, command)
                ),
            )
            return
        ack()
        answer_after_ack(
            after_ack=after_ack,
            respond=respond,
            answer=lambda: _guarded(lambda: _carry_out(service, parsed, command)),
        )

    app.command(COMMAND)(handle_release_command)


def answer_after_ack(
    *, after_ack: Executor, respond: Respond, answer: Callable[[], dict[str, Any]]
) -> None:
    """Work out `answer` on the `after_ack` pool and send it to the person alone (nothing when
    it has no text). A listener's acknowledgement is sent when it returns (handlers.app): slow
    work left in it delays that acknowledgement, past Slack's 3 s when slow enough, and Slack
    then shows the person an error for a command that still runs."""

    def answer_and_send() -> None:
        reply = answer()
        if reply.get("text"):
            respond(**{"response_type": "ephemeral", **reply}, replace_original=False)

    run_after_ack(after_ack, answer_and_send, what="answer_after_ack_failed")


def run_after_ack(after_ack: Executor, work: Callable[[], object], *, what: str) -> None:
    """Run `work` on the `after_ack` pool, logging its failure as `what` (a future nobody reads
    would lose it)."""

    def run() -> None:
        try:
            work()
        except Exception:
            log.exception(what)

    after_ack.submit(run)


def _guarded(answer: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The answer's message, or one that says clearly why there is none."""
    try:
        reply = answer()
    except ReleaseBotError as error:  # the state store is down, an app name is unknown
        return {"text": f":warning: {error}"}
    except Exception:
        log.exception("command_failed")
        return {"text": INTERNAL_ERROR}
    return reply


def _open_start_form(
    open_form: OpenForm,
    client: WebClient,
    service: ReleaseService,
    command: commands.OpenStartForm,
    request: dict[str, str],
) -> dict[str, Any]:
    """Open the start form where the command was typed; the form is the answer."""
    open_form(
        client,
        service,
        trigger_id=request["trigger_id"],
        user=request["user_id"],
        origin=FormOrigin(request["channel_id"], request.get("channel_name", "")),
        strategy=command.strategy,
    )
    return {}


def _carry_out(
    service: ReleaseService, command: commands.Command, request: dict[str, str]
) -> dict[str, Any]:
    if not service.claim_delivery(request["trigger_id"]):
        log.info("duplicate_delivery", trigger_id=request["trigger_id"])
        return {}
    user, channel = request["user_id"], request["channel_id"]
    outcome = outcome_of(
        service, command, user=user, channel=channel, channel_name=request.get("channel_name", "")
    )
    seen_by = "in_channel" if outcome.for_everyone else "ephemeral"
    return {"text": f"{mark(outcome)} {outcome.message}", "response_type": seen_by}


def mark(outcome: Outcome) -> str:
    """The emoji an outcome's answer opens with: applied, not taken up, refused."""
    if outcome.applied:
        return ":white_check_mark:"
    return ":warning:" if outcome.not_taken_up else ":no_entry_sign:"


def outcome_of(
    service: ReleaseService,
    command: commands.Command,
    *,
    user: str,
    channel: str,
    channel_name: str,
    reason: str = "",
) -> Outcome:
    """The service's answer; `channel` and `channel_name` are where the command was typed (or
    APP_HOME), which the service checks against the app's rules; `reason`: why a start is made
    (the start form asks)."""
    where = {"channel": channel, "channel_name": channel_name}
    match command:
        case commands.StartCanary() | commands.StartBlueGreen() | commands.StartHybrid():
            return service.start(
                app_name=command.app,
                version=str(command.version),
                plan_name=getattr(command, "plan", None),  # blue-green walks its own plan
                user=user,
                channel=channel,
                channel_name=channel_name,
                override=command.override,
                reason=reason,
                kind=_KINDS[type(command)],
            )
        case commands.Retry():
            return service.retry(app_name=command.app, user=user, **where)
        case commands.Lock():
            return service.lock(app_name=command.app, user=user, reason=command.reason, **where)
        case commands.Unlock():
            return service.unlock(app_name=command.app, user=user, **where)
        case commands.Freeze():
            return service.freeze(
                scope=command.app,
                duration_s=command.duration_s,
                user=user,
                reason=command.reason,
                channel=channel,
            )
        case commands.Unfreeze():
            return service.unfreeze(scope=command.app, user=user, channel=channel)
        case (
            commands.Advance()
            | commands.Approve()
            | commands.Pause()
            | commands.Resume()
            | commands.Rollback()
            | commands.Promote()
        ):
            event = _event(command, user)
            override = getattr(command, "override", None)  # approve and promote take one
            return service.act(
                app_name=command.app, event=event, actor=user, override=override, **where
            )
    raise TypeError(f"not a command that changes anything: {command!r}")


def _event(command: commands.Command, user: str) -> machine.Event:
    match command:
        case commands.Advance():
            return machine.Advance(by=user)
        case commands.Approve():
            return machine.Approve(by=user)
        case commands.Pause():
            return machine.Pause(by=user, reason=command.reason, duration_s=command.duration_s)
        case commands.Resume():
            return machine.Resume(by=user)
        case commands.Rollback():
            return machine.Rollback(by=user, reason=command.reason)
        case commands.Promote():
            return machine.Promote(by=user, full=command.full)
    raise TypeError(f"not a release action: {command!r}")


def _answer_query(service: ReleaseService, command: commands.Command) -> dict[str, Any]:
    now = datetime.now(UTC)
    if isinstance(command, commands.Status) and command.app is not None:
        stored = service.active_release(command.app)
        if stored is None:
            lock = service.lock_of(command.app)
            locked = (
                f" It is locked by <@{lock.by}>: {lock.reason or 'no reason given'}."
                if lock
                else ""
            )
            frozen = service.frozen(command.app)
            freeze = f" It is {frozen.describe()}." if frozen else ""
            return {"text": f"{command.app} has no active release.{locked}{freeze}"}
        card = release_card(stored.release, now=now)
        return {"text": card.text, "blocks": card.payload()["blocks"]}
    if isinstance(command, commands.History):
        entries = service.history(command.app, limit=HISTORY_LINES)
        if not entries:
            return {"text": f"{command.app} has no release history yet."}
        lines = [_history_line(entry) for entry in entries]
        return {"text": f"*{command.app}*, last {len(lines)} actions:\n" + "\n".join(lines)}
    active = service.active_releases()
    if not active:
        return {"text": "No active releases."}
    lines = [f"• {release_card(stored.release, now=now).text}" for stored in active]
    return {"text": f"{len(lines)} active release(s):\n" + "\n".join(lines)}


def _history_line(entry: HistoryEntry) -> str:
    who = f"<@{entry.actor}>" if entry.actor[:1] in ("U", "W") else entry.actor
    detail = f" ({entry.detail})" if entry.detail else ""
    when = entry.at[:16].replace("T", " ")
    return f"`{when}` {who} {entry.action}: {entry.outcome}{detail}"
