"""The `release-bot` console script: parses the command line and calls the subcommand's module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from bot.entrypoints.exit_codes import EXIT_CODES
from bot.entrypoints.settings import environment_help

DISTRIBUTION = "release-bot"
SERVE_DESCRIPTION = (
    "Run the bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode on /slack/events; "
    "/healthz, /readyz and /metrics on PORT either way. Configured by the environment alone."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="release-bot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="run the bot (Socket Mode with SLACK_APP_TOKEN, else HTTP)",
        description=SERVE_DESCRIPTION,
        epilog=serve_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check = commands.add_parser(
        "check-config", help="validate apps and plans files (or directories of them)"
    )
    check.add_argument(
        "file", nargs="+", metavar="FILE", help="a YAML file, or a directory of *.yaml files"
    )
    check.add_argument(
        "--live",
        action="store_true",
        help="also check the apps against the cluster (KUBECONFIG or in-cluster) and Prometheus",
    )
    demo = commands.add_parser(
        "demo", help="run a complete release in the terminal: simulated cluster, real Redis"
    )
    demo.add_argument(
        "--scenario",
        choices=("canary", "rollback", "bluegreen", "hybrid"),
        default="canary",
        help="canary: a good release, approved and promoted (default); "
        "rollback: a bad canary rolled back automatically; "
        "bluegreen: a bad green switched back by itself, then a good one released; "
        "hybrid: a previewed green, then canary stages onto it",
    )
    audit = commands.add_parser("audit", help="the audit trail kept in Redis")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser(
        "export",
        help="print the audit trail as JSON lines, oldest first (needs REDIS_URL or "
        "REDIS_SENTINELS with REDIS_SENTINEL_MASTER; no Slack token)",
    )
    export.add_argument("--app", help="one app's trail (default: every app's, merged by time)")
    export.add_argument(
        "--since",
        metavar="T",
        help="only entries from T on: an ISO 8601 time, or a duration such as 7d (the last 7 days)",
    )
    return parser


def installed_version() -> str:
    """The version of the installed release-bot distribution (pip install -e . counts)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "(not installed: pip install -e .)"


def serve_epilog() -> str:
    """The environment variables and exit codes, one line each, from settings and exit_codes."""
    variables = environment_help()
    width = max(len(name) for name, _ in variables)
    lines = ["environment variables:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, text in variables]
    lines += ["", "exit codes:"]
    lines += [f"  {code:<3}  {meaning}" for code, meaning in EXIT_CODES]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from bot.entrypoints.server import serve

        exit_code: int = serve()
        return exit_code
    if args.command == "demo":
        from bot.entrypoints.demo import run_demo

        return run_demo(scenario=args.scenario)
    if args.command == "audit":
        from bot.entrypoints.audit import export_command

        return export_command(app=args.app, since=args.since)
    from bot.entrypoints.check_config import check_config_command

    return check_config_command(args.file, live=args.live)


if __name__ == "__main__":
    sys.exit(main())
