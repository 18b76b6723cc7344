"""A pool of worker threads that runs the most urgent waiting call first.

Used by the release service for its scheduler passes: a release whose metric check is due (its
verdict may roll a bad canary back) goes before releases that only wait for something to be
observed or posted, whatever the pass that queued them. Calls of the same rank run in the order
they were queued. Threads are started as calls need them, up to `workers`; they are daemon
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

    def submit(self, rank: int, call: Callable[..., T], *args: Any) -> Future[T]:
        """Run `call(*args)` on a worker once no call of a lower rank is waiting."""
        future: Future[T] = Future()
        with self._changed:
            heapq.heappush(self._queue, (rank, next(self._order), future, call, args))
            if self._idle == 0 and self._started < self._workers:
                self._start_worker()
            self._changed.notify()
        return future

    def _start_worker(self) -> None:
        name = f"{self._name}_{self._started}"
        threading.Thread(target=self._serve, name=name, daemon=True).start()
        self._started += 1

    def _serve(self) -> None:
        while True:
            _, _, future, call, args = self._next()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(*args))
            except BaseException as error:  # handed to whoever waits on the future
                future.set_exception(error)

    def _next(self) -> _Queued:
        with self._changed:
            self._idle += 1
            while not self._queue:
                self._changed.wait()
            self._idle -= 1
            return heapq.heappop(self._queue)
