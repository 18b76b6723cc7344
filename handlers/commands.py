"""The `/release` slash command listener.

Registered on the Bolt app by handlers.app.build_app through `register(app)`. For now it knows
only `help`: every other input is answered, ephemerally, with the command grammar of SPEC.md.
"""

from __future__ import annotations

from slack_bolt import Ack, App

COMMAND = "/release"

USAGE = """\
Usage:
```
/release help
/release canary <app> <version> [--plan NAME]
/release bluegreen <app> <version>
/release status [<app>]            (no app: all active releases)
/release list                      (active releases)
/release history <app>
/release advance <app>             (next stage now; gates still apply)
/release approve <app>
/release pause <app> [reason]
/release resume <app>
/release rollback <app> [reason]
/release promote <app> [--full]    (--full: skip remaining stages)
/release lock <app> [reason]
/release unlock <app>
```
`<version>` is an image tag or a full image reference."""

SUBCOMMANDS = frozenset(
    {"help", "canary", "bluegreen", "status", "list", "history", "advance", "approve", "pause"}
    | {"resume", "rollback", "promote", "lock", "unlock"}
)


def register(app: App) -> None:
    """Attach the `/release` listener to `app`."""
    app.command(COMMAND)(handle_release_command)


def handle_release_command(ack: Ack, command: dict[str, str]) -> None:
    """Answer within Slack's 3 s limit, in the HTTP response itself (seen only by the caller)."""
    ack(text=reply_to(command.get("text", "")), response_type="ephemeral")


def reply_to(text: str) -> str:
    """The answer to `/release <text>`."""
    words = text.split()
    if not words or words[0].lower() == "help":
        return USAGE
    subcommand = words[0].lower()
    if subcommand in SUBCOMMANDS:
        return f"`{COMMAND} {subcommand}` is not available in this version of the bot yet.\n{USAGE}"
    return f"Unknown subcommand `{words[0]}`.\n{USAGE}"
