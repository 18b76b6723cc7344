"""App Home: shows each person the live board when they open it, and again after releases change.

Built by bot.entrypoints.server; `opened` is called by the app_home_opened listener
(handlers/events.py), `publish_due` by the scheduler loop after each pass. The release service
schedules a refresh of every recent viewer after each saved transition (HomeViewersPort); the
viewers registry coalesces those per person and caps them all within Slack's rate limit, so a
burst of changes costs each viewer one or two views, not one per change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from bot.application.service import ReleaseService
from bot.core.errors import ReleaseBotError
from bot.core.ports import HomePublisherPort, HomeViewersPort

log = structlog.get_logger(__name__)


class AppHome:
    def __init__(
        self,
        *,
        service: ReleaseService,
        viewers: HomeViewersPort,
        publisher: HomePublisherPort,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._service = service
        self._viewers = viewers
        self._publisher = publisher
        self._clock = clock

    def opened(self, user: str) -> None:
        """`user` opened the Home tab: remember them for refreshes and show the board now."""
        self._viewers.opened(user, at=self._clock())
        self._publish(user)

    def tell(self, user: str, text: str) -> None:
        """Show `user` their board with `text` on top (a click on it was refused)."""
        self._viewers.opened(user, at=self._clock())
        self._publish(user, notice=text)

    def publish_due(self) -> None:
        """Show the board to each viewer whose coalesced refresh has come due."""
        for user in self._viewers.take_due(at=self._clock()):
            self._publish(user)

    def _publish(self, user: str, *, notice: str = "") -> None:
        """A refresh Slack refuses is dropped: the next change schedules another."""
        try:
            self._publisher.publish(replace(self._service.home_board(user), notice=notice))
        except ReleaseBotError as error:
            log.warning("home_not_published", user=user, error=str(error))
