"""The bot's App Home: a live board of releases, published per person with views.publish.

Built by bot.entrypoints.server with the bot's Web API client and handed to
bot.application.home.AppHome as its HomePublisherPort. The board's wording is here; each release
row is the card's (bot.slack.cards.board_row), with the card's buttons, so a click on Home goes
through the same button listeners and the same authorization as a click on the card. Slack
shows at most 100 blocks in a Home view: releases that do not fit are counted, not shown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.core.ports import HomeBoard
from bot.core.release import Release
from bot.slack.announcer import _slack_call  # the one translator of Slack errors
from bot.slack.cards import board_row, finished_line
from bot.slack.start_form import ACTION_OPEN_START_FORM

HOME_BLOCKS_MAX = 100
_ROOM_AFTER_RELEASES = 6  # the finished list, its heading, the divider, the footer


class SlackHome:
    """Publishes a person's board on their App Home tab."""

    def __init__(self, *, client: WebClient) -> None:
        self._client = client

    def publish(self, board: HomeBoard) -> None:
        view = home_view(board, now=datetime.now(UTC))
        with _slack_call("views.publish", f"showing App Home to {board.viewer}"):
            self._client.views_publish(user_id=board.viewer, view=view)


def home_view(board: HomeBoard, *, now: datetime) -> dict[str, Any]:
    """The Home view of `board.viewer`: what waits for their approval first, then every active
    release, then the last finished ones."""
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="Releases"))]
    if board.notice:
        blocks.append(_section(board.notice[: SectionBlock.text_max_length]))
    if board.may_start:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=PlainTextObject(text="Start a release"),
                        action_id=ACTION_OPEN_START_FORM,
                        style="primary",
                    )
                ]
            )
        )
    waiting = [r for r in board.active if r.id in board.waiting_for_viewer]
    others = [r for r in board.active if r.id not in board.waiting_for_viewer]
    room = HOME_BLOCKS_MAX - len(blocks) - _ROOM_AFTER_RELEASES
    if waiting:
        blocks.append(_heading(f"✋ Waiting for your approval ({len(waiting)})"))
        blocks += _rows(waiting, now=now, room=room - len(blocks))
    heading = f"Active releases ({len(others)})" if others else "No other active releases."
    if not board.active:
        heading = "No active releases."
    blocks.append(_heading(heading))
    blocks += _rows(others, now=now, room=room - len(blocks))
    blocks.append(DividerBlock())
    blocks.append(_heading("Last finished"))
    blocks.append(_section(_finished_text(board.finished)))
    blocks.append(_context(f"Updated {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"))
    return View(type="home", blocks=blocks).to_dict()


def _rows(releases: list[Release], *, now: datetime, room: int) -> list[Block]:
    """Each release's row and a divider while they fit in `room` blocks; then a count of the
    rest."""
    blocks: list[Block] = []
    for shown, release in enumerate(releases):
        row = [*board_row(release, now=now), DividerBlock()]
        if len(blocks) + len(row) > room - 1:
            left = len(releases) - shown
            blocks.append(_context(f"… and {left} more: `/release list` shows them all."))
            break
        blocks += row
    return blocks


def _finished_text(finished: tuple[Release, ...]) -> str:
    """One line per finished release, as many as fit in a section's 3,000 characters."""
    lines: list[str] = []
    for release in finished:
        line = finished_line(release)
        if sum(len(kept) + 1 for kept in lines) + len(line) > SectionBlock.text_max_length:
            break
        lines.append(line)
    return "\n".join(lines) or "None yet."


def _heading(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=f"*{text}*"))


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])
