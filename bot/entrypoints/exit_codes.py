"""The exit codes of `release-bot serve`; returned by bot.entrypoints.server, listed by cli's help.

README.md's "Running it for real" table shows the same rows (tests/test_serve_cli.py keeps them
in step)."""

from __future__ import annotations

from bot.application.service import CRASH_EXIT_CODE

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_CONFIG = 2
EXIT_SLACK_REFUSED = 3
EXIT_SLACK_UNREACHABLE = 4
EXIT_PORT_UNAVAILABLE = 5

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "stopped by SIGTERM or SIGINT"),
    (EXIT_UNEXPECTED, "an unexpected error (a bug: the traceback is in the log)"),
    (EXIT_BAD_CONFIG, "bad configuration: environment, apps file, kubeconfig, or command line"),
    (EXIT_SLACK_REFUSED, "Slack rejected SLACK_BOT_TOKEN or refused SLACK_APP_TOKEN"),
    (EXIT_SLACK_UNREACHABLE, "Socket Mode could not reach Slack (SLACK_API_URL, the network)"),
    (EXIT_PORT_UNAVAILABLE, "PORT is taken by another process (or may not be bound)"),
    (CRASH_EXIT_CODE, "a recovery drill's planned crash (RELEASE_BOT_CRASH_AT)"),
)
"""(code, meaning) in the order `serve --help` and README.md list them."""
