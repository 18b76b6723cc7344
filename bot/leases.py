"""Per-release leases: one bot replica (one thread of it) at a time runs a release's scheduler
pass and posts its Slack messages, so several replicas never double a message or a card.

Used by the release service. A lease lives in Redis with a time to live; the holder renews it in
the background while it works, so a holder that dies loses it within `ttl_s` and another replica
takes over. Holding is reentrant within a thread.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from bot.errors import ReleaseBotError
from bot.store import ReleaseStore

log = structlog.get_logger(__name__)

DEFAULT_TTL_S = 30.0


class Leases:
    def __init__(self, *, store: ReleaseStore, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._process = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._held = threading.local()

    def _owner(self) -> str:
        return f"{self._process}-{threading.get_ident()}"

    @contextmanager
    def hold(self, release_id: str) -> Iterator[bool]:
        """Yields True while this thread holds the release's lease, False if someone else does."""
        held: set[str] = self._held.__dict__.setdefault("ids", set())
        if release_id in held:
            yield True
            return
        owner = self._owner()
        if not self._store.take_lease(release_id, owner=owner, ttl_s=self._ttl_s):
            yield False
            return
        held.add(release_id)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(release_id, owner, stop), name="lease-renewer", daemon=True
        )
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            renewer.join()
            held.discard(release_id)
            self._drop(release_id, owner)

    def _renew(self, release_id: str, owner: str, stop: threading.Event) -> None:
        while not stop.wait(self._ttl_s / 3):
            try:
                if not self._store.take_lease(release_id, owner=owner, ttl_s=self._ttl_s):
                    log.error("lease_lost", release=release_id)
                    return
            except ReleaseBotError as error:
                log.warning("lease_renewal_failed", release=release_id, error=str(error))

    def _drop(self, release_id: str, owner: str) -> None:
        try:
            self._store.drop_lease(release_id, owner=owner)
        except ReleaseBotError as error:  # it expires by itself
            log.warning("lease_drop_failed", release=release_id, error=str(error))
