"""The `release-bot` console script: parses the command line and calls the subcommand's module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="release-bot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the bot (Socket Mode with SLACK_APP_TOKEN, else HTTP)")
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
        choices=("canary", "rollback"),
        default="canary",
        help="canary: a good release, approved and promoted (default); "
        "rollback: a bad canary rolled back automatically",
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
