"""`release-bot check-config FILE...`: called by bot.entrypoints.cli; prints what the apps files
describe, or every problem in them; with --live, checks them against the cluster and Prometheus.

--live reads the cluster through the bot's own client (KUBECONFIG, else the pod's service
account; bot.kube.live_check) and asks each app's Prometheus (its metrics.prometheus_url, else
PROMETHEUS_URL) the three queries of a reading, with a short timeout. OK lines go to stdout,
problems to stderr; any problem exits 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from bot.application.apps_file import ConfigError, load_config
from bot.core.analysis import MetricsUnavailable
from bot.core.apps import AppConfig, BotConfig, NoRouter
from bot.core.errors import PermanentError
from bot.core.plan import DEFAULT_PLAN
from bot.core.text import count, plan_text
from bot.kube.client import build_api_client
from bot.kube.live_check import check_app_live
from bot.metrics.prometheus import PrometheusMetrics


def _describe_app(app: AppConfig) -> str:
    if app.workload_kind == "Rollout":
        releases = "an Argo Rollout: its own steps"
    elif isinstance(app.router, NoRouter):
        releases = "no router: blue-green only"
    else:
        releases = f"via {app.router.provider}, plan {app.plan.name}"
    return f"{app.name}: {app.namespace}/{app.workload} {releases}, channel {app.slack_channel}"


def _summary(config: BotConfig) -> str:
    """The check-config report: counts, then one line per app and per plan."""
    lines = [f"OK: {count(len(config.apps), 'app')}, {count(len(config.plans), 'plan')}"]
    lines += ["apps:", *(f"  {_describe_app(app)}" for app in config.apps.values())]
    lines.append("plans:")
    for name, plan in config.plans.items():
        origin = " (built in)" if plan is DEFAULT_PLAN else ""
        lines.append(f"  {name}{origin}: {plan_text(plan)}")
    return "\n".join(lines)


LIVE_PROMETHEUS_TIMEOUT_S = 5.0


def _live_lines(config: BotConfig) -> tuple[list[str], list[str]]:
    """OK lines and problems of every app, against the cluster and its Prometheus."""
    ok: list[str] = []
    problems: list[str] = []
    try:
        api = build_api_client(os.environ.get("KUBECONFIG") or None)
    except PermanentError as error:
        problems.append(f"live: {error}")
        api = None
    metrics = PrometheusMetrics(
        default_url=os.environ.get("PROMETHEUS_URL") or None, timeout_s=LIVE_PROMETHEUS_TIMEOUT_S
    )
    for app in config.apps.values():
        if api is not None:
            for finding in check_app_live(api, app):
                (ok if finding.ok else problems).append(f"{app.name}: {finding.message}")
        url = app.metrics.prometheus_url or os.environ.get("PROMETHEUS_URL")
        if url is None:
            problems.append(
                f"{app.name}: no Prometheus to ask: set metrics.prometheus_url or PROMETHEUS_URL"
            )
            continue
        try:
            metrics.read(app, at=datetime.now(UTC))
        except MetricsUnavailable as error:
            problems.append(f"{app.name}: {error}")
        else:
            ok.append(f"{app.name}: Prometheus {url} answers the three queries")
    return ok, problems


def check_config_command(files: str | Sequence[str], *, live: bool = False) -> int:
    """`release-bot check-config FILE...`: summary on stdout (exit 0), problems on stderr
    (exit 1); `live` adds the checks against the cluster and Prometheus."""
    paths = [files] if isinstance(files, str) else list(files)
    try:
        config = load_config(*paths)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(_summary(config))
    if not live:
        return 0
    ok, problems = _live_lines(config)
    print("live:", *(f"  OK {line}" for line in ok), sep="\n")
    if problems:
        print(f"live: {count(len(problems), 'problem')}:", file=sys.stderr)
        print(*(f"  {line}" for line in problems), sep="\n", file=sys.stderr)
        return 1
    return 0
