"""The release service's worker pool: the most urgent waiting call first, bounded threads."""

from __future__ import annotations

import threading

import pytest

from bot.application.ranked_pool import RankedPool


def test_a_lower_rank_queued_later_runs_before_the_waiting_higher_ranks() -> None:
    pool = RankedPool(workers=1, name="test-pool")
    gate = threading.Event()
    ran: list[str] = []
    busy = pool.submit(1, gate.wait, 5)  # holds the only worker
    later = [pool.submit(1, ran.append, name) for name in ("waiting-1", "waiting-2")]
    urgent = pool.submit(0, ran.append, "check-due")
    gate.set()
    for future in (busy, *later, urgent):
        future.result(timeout=5)
    assert ran == ["check-due", "waiting-1", "waiting-2"]


def test_a_calls_error_is_the_futures_and_the_worker_goes_on() -> None:
    pool = RankedPool(workers=1, name="test-pool")
    failed = pool.submit(0, int, "not a number")
    with pytest.raises(ValueError, match="not a number"):
        failed.result(timeout=5)
    assert pool.submit(0, int, "7").result(timeout=5) == 7


def test_no_more_threads_than_workers_run_at_once() -> None:
    pool = RankedPool(workers=3, name="test-pool")
    lock, running, most = threading.Lock(), [0], [0]
    gate = threading.Event()

    def work() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        gate.wait(5)
        with lock:
            running[0] -= 1

    futures = [pool.submit(0, work) for _ in range(10)]
    threading.Timer(0.3, gate.set).start()
    for future in futures:
        future.result(timeout=10)
    assert most[0] == 3


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        RankedPool(workers=0, name="test-pool")


def test_a_waiting_call_reranked_runs_once_with_its_new_call() -> None:
    pool = RankedPool(workers=1, name="test-pool")
    gate = threading.Event()
    ran: list[str] = []
    busy = pool.submit(1, gate.wait, 5)
    first = pool.submit(1, ran.append, "first")
    card_only = pool.submit(1, ran.append, "card only")
    assert pool.rerank(card_only, 0, ran.append, "check due")
    assert not pool.rerank(card_only, 0, ran.append, "again")  # waits at rank 0 already
    gate.set()
    for future in (busy, first, card_only):
        future.result(timeout=5)
    assert ran == ["check due", "first"]
    assert not pool.rerank(card_only, 0, ran.append, "done")  # it ran: nothing to move
