"""Builds the Bolt app and registers every Slack listener on it.

Called by bot.entrypoints.cli, which hands `build_app` to bot.entrypoints.server.serve (bot never
imports handlers).

The rule for every listener: it runs on the HTTP server's event loop, one request at a time
(bot.entrypoints.http_server; in Socket Mode on its client's thread), and its acknowledgement goes
out when it returns (Bolt's process_before_response: no hand-off to a listener pool, no polling for
ack(); bench/README.md has the figures). So a listener parses, reads only what its acknowledgement
shows (Redis, at most a call or two), calls ack() and returns; anything slower, and anything that
talks to Slack (respond, the Web API) or to the cluster, goes to `answer_after_ack`
(handlers.commands), which carries it out on the after-ack pool. Bolt does not check signatures: the
server's request guard has, before anything was parsed."""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from bot.application.home import AppHome
from bot.application.service import ReleaseService
from handlers import actions, commands, events, start_form

AFTER_ACK_WORKERS = 16
"""Threads carrying out acknowledged commands and clicks (each may take seconds: preflight,
the cluster, Slack); more requests than this wait their turn, already acknowledged."""
AFTER_ACK_NICENESS = 10
"""How much lower the after-ack threads' OS priority is than the HTTP loop's: an acknowledgement
has Slack's 3 s to meet, the work after it has none. bench/acks.py, pause at 16 connections:
p99 111 ms at the same priority, 75 to 82 ms at 10."""


def _yield_to_acks() -> None:
    """Each after-ack thread runs AFTER_ACK_NICENESS below the HTTP loop: when both wait for a
    CPU (and so for the GIL), Linux hands it to the loop's acknowledgement first."""
    if sys.platform != "linux":  # elsewhere PRIO_PROCESS of a thread id means a process
        return
    thread = threading.get_native_id()
    niceness = os.getpriority(os.PRIO_PROCESS, thread) + AFTER_ACK_NICENESS
    os.setpriority(os.PRIO_PROCESS, thread, min(niceness, 19))  # raising it needs no privilege


def build_app(
    *, client: WebClient, service: ReleaseService | None, home: AppHome | None = None
) -> App:
    """A Bolt app with every listener registered; building it makes no network call.

    `service` (and `home`, the App Home) is None when the bot has no apps file or state store
    configured: the listeners then answer with what is missing. The token is verified by the
    server's readiness check (auth.test), not here, so a slow Slack at start-up delays
    readiness instead of crashing.
    """
    app = App(
        client=client,
        token_verification_enabled=False,
        request_verification_enabled=False,  # the server's request guard has checked
        process_before_response=True,  # the rule above
        logger=logging.getLogger("release_bot.slack"),
    )
    after_ack = ThreadPoolExecutor(
        max_workers=AFTER_ACK_WORKERS, thread_name_prefix="after-ack", initializer=_yield_to_acks
    )
    commands.register(app, service=service, after_ack=after_ack, open_form=start_form.open_form)
    actions.register(app, service=service, after_ack=after_ack, home=home)  # Bolt tries in order
    start_form.register(app, service=service, after_ack=after_ack)
    actions.register_unknown_button(app, after_ack=after_ack)  # after every known action
    events.register(app, service=service, home=home, after_ack=after_ack)
    return app
