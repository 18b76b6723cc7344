"""Per-release leases: one bot replica (one thread of it) at a time runs a release's scheduler
pass and posts its Slack messages, so several replicas never double a message or a card.

Used by the release service. A lease lives in Redis with a time to live; while held it is renewed
by one background thread per process (started with the first lease, ended once none is held), so
a holder that dies loses it within `ttl_s` and another replica takes over. Holding is reentrant
within a thread.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from bot.core.errors import ReleaseBotError
from bot.core.ports import StoredRelease
from bot.redis.store import ReleaseStore

log = structlog.get_logger(__name__)

DEFAULT_TTL_S = 30.0


class Leases:
    def __init__(self, *, store: ReleaseStore, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._process = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._held = threading.local()
        self._owners: dict[str, str] = {}  # every lease this process holds: release id -> owner
        self._owners_lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    def _owner(self) -> str:
        return f"{self._process}-{threading.get_ident()}"

    def _held_here(self) -> set[str]:
        held: set[str] = self._held.__dict__.setdefault("ids", set())
        return held

    @contextmanager
    def hold_release(self, release_id: str) -> Iterator[StoredRelease | None]:
        """Yields the release, read in the same step as its lease is taken, while this thread
        holds the lease; None if someone else holds it or the release is gone."""
        if release_id in self._held_here():
            yield self._store.get(release_id)
            return
        owner = self._owner()
        taken, stored = self._store.take_lease_and_read(release_id, owner=owner, ttl_s=self._ttl_s)
        if not taken:
            yield None
            return
        with self._kept(release_id, owner):
            yield stored

    def holds(self, release_id: str) -> bool:
        return release_id in self._held_here()

    @contextmanager
    def _kept(self, release_id: str, owner: str) -> Iterator[None]:
        """Renew the taken lease until the block ends, then drop it."""
        self._held_here().add(release_id)
        with self._owners_lock:
            self._owners[release_id] = owner
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_while_held, name="lease-renewer", daemon=True
                )
                self._renewer.start()
        try:
            yield
        finally:
            self._held_here().discard(release_id)
            with self._owners_lock:  # so the renewer cannot take it again once it is dropped
                self._owners.pop(release_id, None)
            self._drop(release_id, owner)

    def _renew_while_held(self) -> None:
        """Every third of the TTL, extend every lease held; end when none is."""
        while True:
            time.sleep(self._ttl_s / 3)
            with self._owners_lock:
                if not self._owners:
                    self._renewer = None
                    return
                for release_id, owner in list(self._owners.items()):
                    self._renew(release_id, owner)

    def _renew(self, release_id: str, owner: str) -> None:
        try:
            if not self._store.take_lease(release_id, owner=owner, ttl_s=self._ttl_s):
                log.error("lease_lost", release=release_id)
                del self._owners[release_id]  # another replica has it: stop extending it
        except ReleaseBotError as error:
            log.warning("lease_renewal_failed", release=release_id, error=str(error))

    def _drop(self, release_id: str, owner: str) -> None:
        try:
            self._store.drop_lease(release_id, owner=owner)
        except ReleaseBotError as error:  # it expires by itself
            log.warning("lease_drop_failed", release=release_id, error=str(error))
