"""Durations as people write and read them: '90s', '30m', '2h30m', '1d'.

Used by the apps-file schema (stage durations, check intervals), the `/release` grammar
(`--for 2h`) and every text that shows a duration to a person (thread, card, check-config,
demo). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import PlainValidator

_DURATION = re.compile(r"(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?")
_DURATION_UNITS_S = (86400, 3600, 60, 1)


def parse_duration(text: str) -> int:
    """'2h30m' (or '2h 30m') -> 9000 seconds (units d, h, m, s, largest first); ValueError
    explains the form."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(
            f"{text!r} is not a duration: write a number with a unit (d, h, m, s), "
            "largest first, e.g. '90s', '30m', '1h', '2h30m'"
        )
    return sum(
        int(part) * unit
        for part, unit in zip(match.groups(), _DURATION_UNITS_S, strict=True)
        if part
    )


def format_duration(seconds: float) -> str:
    """9000 -> '2h 30m'; 0 -> '0s'; rounded to the second. parse_duration reads it back."""
    left = max(0, round(seconds))
    parts = []
    for unit_s, suffix in zip(_DURATION_UNITS_S, "dhms", strict=True):
        count, left = divmod(left, unit_s)
        if count:
            parts.append(f"{count}{suffix}")
    return " ".join(parts) or "0s"


def _duration_field(*, allow_zero: bool) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if not isinstance(value, str):
            raise ValueError(f"a duration needs a unit, e.g. '90s', '30m', '1h'; got {value!r}")
        seconds = parse_duration(value)
        if seconds == 0 and not allow_zero:
            raise ValueError(f"must be longer than 0s, got {value!r}")
        return seconds

    return parse


StageDuration = Annotated[int, PlainValidator(_duration_field(allow_zero=True))]
PositiveDuration = Annotated[int, PlainValidator(_duration_field(allow_zero=False))]
