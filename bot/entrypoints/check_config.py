"""`release-bot check-config FILE`: called by bot.entrypoints.cli; prints what the apps file
describes, or every problem in it."""

from __future__ import annotations

import sys

from bot.application.apps_file import ConfigError, load_config
from bot.core.apps import AppConfig, BotConfig
from bot.core.plan import DEFAULT_PLAN
from bot.core.text import count, plan_text


def _describe_app(app: AppConfig) -> str:
    return (
        f"{app.name}: {app.namespace}/{app.workload} via {app.router.provider}, "
        f"plan {app.plan.name}, channel {app.slack_channel}"
    )


def _summary(config: BotConfig) -> str:
    """The check-config report: counts, then one line per app and per plan."""
    lines = [f"OK: {count(len(config.apps), 'app')}, {count(len(config.plans), 'plan')}"]
    lines += ["apps:", *(f"  {_describe_app(app)}" for app in config.apps.values())]
    lines.append("plans:")
    for name, plan in config.plans.items():
        origin = " (built in)" if plan is DEFAULT_PLAN else ""
        lines.append(f"  {name}{origin}: {plan_text(plan)}")
    return "\n".join(lines)


def check_config_command(file: str) -> int:
    """`release-bot check-config FILE`: summary on stdout (exit 0), problems on stderr (exit 1)."""
    try:
        config = load_config(file)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(_summary(config))
    return 0
