"""A pool of worker threads that runs the most urgent waiting call first.

Used by the release service for its scheduler passes: a release whose metric check is due (its
verdict may roll a bad canary back) goes before releases that only wait for something to be
observed or posted, whatever the pass that queued them; and a release queued for something else
moves up once its check comes due (`rerank`). Calls of the same rank run in the order they were
queued. Threads are started as calls need them, up to `workers`; they are daemon
threads, so a call that hangs never keeps the process from stopping.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_Queued = tuple[int, int, Future[Any], Callable[..., Any], tuple[Any, ...]]


class RankedPool:
    def __init__(self, *, workers: int, name: str) -> None:
        if workers < 1:
            raise ValueError(f"a pool needs at least one worker, got {workers}")
        self._workers = workers
        self._name = name
        self._queue: list[_Queued] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._started = 0
        self._idle = 0
        self._ranks: dict[Future[Any], int] = {}  # the best rank each waiting future is queued at

    def submit(self, rank: int, call: Callable[..., T], *args: Any) -> Future[T]:
        """Run `call(*args)` on a worker once no call of a lower rank is waiting."""
        future: Future[T] = Future()
        with self._changed:
            self._queue_call(rank, future, call, args)
            if self._idle == 0 and self._started < self._workers:
                self._start_worker()
        return future

    def rerank(self, future: Future[T], rank: int, call: Callable[..., T], *args: Any) -> bool:
        """`future` gets `call(*args)`'s outcome instead, run at `rank`, if it is still waiting
        at a higher one; False when it has started, is done, or already waits at `rank` or lower."""
        with self._changed:
            if future not in self._ranks or self._ranks[future] <= rank:
                return False
            self._queue_call(rank, future, call, args)
            return True

    def _queue_call(
        self, rank: int, future: Future[Any], call: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        heapq.heappush(self._queue, (rank, next(self._order), future, call, args))
        self._ranks[future] = rank
        self._changed.notify()

    def _start_worker(self) -> None:
        name = f"{self._name}_{self._started}"
        threading.Thread(target=self._serve, name=name, daemon=True).start()
        self._started += 1

    def _serve(self) -> None:
        while True:
            _, _, future, call, args = self._next()
            try:
                future.set_result(call(*args))
            except BaseException as error:  # handed to whoever waits on the future
                future.set_exception(error)

    def _next(self) -> _Queued:
        """The most urgent waiting call, its future marked running (a reranked future's other
        entries are dropped as they come up)."""
        with self._changed:
            self._idle += 1
            while True:
                while not self._queue:
                    self._changed.wait()
                queued = heapq.heappop(self._queue)
                future = queued[2]
                if future not in self._ranks:
                    continue  # it ran from another entry
                del self._ranks[future]
                if future.set_running_or_notify_cancel():
                    self._idle -= 1
                    return queued
