"""README stands alone and tells the truth: run by pytest; its usage block is the bot's own
`/release help`, its configuration reference is the one the schema makes, and it sends nobody
outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from bot.application.apps_reference import reference
from bot.core.commands import USAGE

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def block(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", README, re.DOTALL)
    assert match is not None, f"README has no {name} block"
    return match[1]


def test_the_usage_block_is_the_bots_own_help() -> None:
    assert block("usage") == f"```\n{USAGE}\n```"


def test_the_configuration_reference_is_the_one_the_schema_makes() -> None:
    assert block("apps-reference") == reference()


def test_the_reference_names_every_field_a_file_may_use() -> None:
    fields = set(re.findall(r"^\| `([^`]+)`", reference(), re.MULTILINE))
    leaves = {field.rsplit(".", 1)[-1] for field in fields}
    for written in ("four_eyes", "max_above_stable", "snapshot_interval", "header_routed"):
        assert written in leaves
    assert "apps.NAME.router.virtual_service" in fields


def test_readme_sends_nobody_outside_the_repository() -> None:
    assert "../shared" not in README
    assert "SPEC.md" not in README


def test_readme_holds_the_two_commands_a_newcomer_needs() -> None:
    assert ".venv/bin/release-bot demo" in README
    assert "./scripts/test.sh" in README
