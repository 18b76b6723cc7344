"""How numbers, people and plans are written for people: one percent style, one plan line,
rounded amounts, mentions and counts.

Used by every surface that words something for a person: the thread texts
(bot.core.thread_wording), the snapshots (bot.core.analysis), the Slack card (bot.slack.cards),
check-config and the demo.
Pure.
"""

from __future__ import annotations

import math
import re

from bot.core.durations import format_duration
from bot.core.plan import Plan, Stage


def number(value: float) -> str:
    """Four significant digits, no exponent, no trailing zeros: 12.4, 0.35, 800.5, 1234, 5;
    10.2653 -> '10.27'."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = min(6, max(0, 3 - math.floor(math.log10(abs(value)))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(value: float) -> str:
    """A share already in percent: 50 -> '50 %', 10.2653 -> '10.27 %'."""
    return f"{number(value)} %"


def amount(value: float, unit: str) -> str:
    """A rounded value with its unit: (10.2653, '%') -> '10.27 %', (412.0, 'ms') -> '412 ms'."""
    return f"{number(value)} {unit}".rstrip()


def mention(user: str) -> str:
    return f"<@{user}>"


def principal_mention(principal: str) -> str:
    """A user ID as <@U...>, a user-group ID (S...) as <!subteam^S...>."""
    return f"<!subteam^{principal}>" if principal.startswith("S") else mention(principal)


def count(number_of: int, noun: str) -> str:
    """(1, 'app') -> '1 app'; (3, 'app') -> '3 apps'."""
    return f"{number_of} {noun}" + ("" if number_of == 1 else "s")


def stage_text(stage: Stage) -> str:
    """One stage as a step of a plan: '0 % by header for 1h', '50 % for 4h + approval',
    '5 % after Job template smoke for 30m' (the Job passes before the stage starts)."""
    step = percent(stage.weight)
    if stage.verification is not None:
        step += f" after {stage.verification.label}"
    if stage.header_routed:
        step += " by header"
    if stage.duration_s:
        step += f" for {format_duration(stage.duration_s)}"
    if stage.approvals_required > 1:
        step += f" + {stage.approvals_required} approvals"
    elif stage.needs_approval:
        step += " + approval"
    return step


def plan_text(plan: Plan) -> str:
    """'0 % by header for 1h → 5 % for 2h → 50 % for 4h + approval → 100 %'."""
    return " → ".join(stage_text(stage) for stage in plan.stages)


SLACK_TOKEN_PATTERN = r"\bxox[a-z]-[A-Za-z0-9-]+|\bxapp-[A-Za-z0-9-]+"
"""What a Slack token looks like: never shown in a log line or an answer."""
_SLACK_TOKEN = re.compile(SLACK_TOKEN_PATTERN)
REDACTED = "[REDACTED]"


def without_tokens(text: str) -> str:
    """`text` with anything shaped like a Slack token replaced by [REDACTED]."""
    return _SLACK_TOKEN.sub(REDACTED, text)
