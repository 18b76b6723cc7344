"""The `release-bot` console script: parses the command line and calls the subcommand's module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="release-bot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the bot (Socket Mode with SLACK_APP_TOKEN, else HTTP)")
    demo = commands.add_parser("demo", help="a complete release against a simulated cluster")
    demo.add_argument("--scenario", choices=["healthy", "rollback"], default="healthy")
    demo.add_argument("--stage-seconds", type=float, default=1.0)
    check = commands.add_parser("check-config", help="validate an apps and plans file")
    check.add_argument("file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from bot.server import serve
        from handlers.app import build_app

        return serve(build_app=build_app)
    if args.command == "check-config":
        from bot.config import check_config_command

        return check_config_command(args.file)
    from bot.demo import run_demo

    return run_demo(scenario=args.scenario, stage_seconds=args.stage_seconds)


if __name__ == "__main__":
    sys.exit(main())
