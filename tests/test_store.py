"""The Redis release store, against a real redis-server: atomic starts, optimistic concurrency,
delivery claims, locks and the audit trail."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis

from bot.core.machine import (
    Accepted,
    CanaryReady,
    Rollback,
    RollbackDone,
    start_release,
    transition,
)
from bot.core.plan import DEFAULT_PLAN
from bot.core.ports import AppBusy, AppLocked, HistoryEntry, RevisionConflict, StoredRelease
from bot.core.release import NoticeKind, OutboxNotice, Phase, Release
from bot.redis.store import ReleaseStore, StoreUnavailable, connect
from tests.infra.processes import free_port

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def new_release(app: str = "shop-api", release_id: str = "r1", user: str = "U0ANA") -> Release:
    return start_release(
        release_id=release_id,
        app=app,
        version="v2.4.1",
        previous_version="v2.4.0",
        plan=DEFAULT_PLAN,
        requested_by=user,
        channel="C0RELEASE",
        four_eyes=False,
        now=NOW,
    ).release


def entry(release: Release, action: str, actor: str = "U0ANA") -> HistoryEntry:
    return HistoryEntry(
        at=NOW.isoformat(), release_id=release.id, actor=actor, action=action, outcome="applied",
        stage=release.stage_index, phase=release.phase.value,
    )  # fmt: skip


@pytest.fixture
def store(redis_client: redis.Redis) -> ReleaseStore:
    return ReleaseStore(redis_client)


def test_create_then_read_back(store: ReleaseStore) -> None:
    release = new_release()
    stored = store.create(release, entry=entry(release, "start"))
    assert stored.revision == 1
    assert store.active("shop-api") == stored
    assert store.get("r1") == stored
    assert [s.release.id for s in store.active_releases()] == ["r1"]


def test_second_start_is_refused_naming_the_holder(store: ReleaseStore) -> None:
    first = new_release(user="U0ANA")
    store.create(first, entry=entry(first, "start"))
    second = new_release(release_id="r2", user="U0BOB")
    with pytest.raises(
        AppBusy, match=r"shop-api already has an active release: v2.4.1 started by <@U0ANA>"
    ):
        store.create(second, entry=entry(second, "start", "U0BOB"))
    assert store.get("r2") is None
    assert len(store.history("shop-api")) == 1


def test_only_one_of_many_concurrent_starts_wins(
    store: ReleaseStore, redis_client: redis.Redis
) -> None:
    winners: list[str] = []
    losers: list[str] = []

    def start(index: int) -> None:
        release = new_release(release_id=f"r{index}", user=f"U{index}")
        try:
            store.create(release, entry=entry(release, "start"))
            winners.append(release.id)
        except AppBusy:
            losers.append(release.id)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert len(losers) == 19
    assert redis_client.get("rb:active:shop-api") == winners[0]


def test_locked_app_refuses_start_naming_who_and_why(store: ReleaseStore) -> None:
    store.lock("shop-api", by="U0OPS", reason="payment freeze until Monday", at=NOW)
    release = new_release()
    with pytest.raises(
        AppLocked, match=r"shop-api is locked by <@U0OPS>: payment freeze until Monday"
    ):
        store.create(release, entry=entry(release, "start"))
    assert store.active("shop-api") is None
    assert store.unlock("shop-api") is not None
    store.create(release, entry=entry(release, "start"))
    assert store.active("shop-api") is not None


def test_a_stale_writer_loses_and_nothing_is_overwritten(store: ReleaseStore) -> None:
    release = new_release()
    stored = store.create(release, entry=entry(release, "start"))
    running = transition(stored.release, CanaryReady(), now=NOW)
    first = store.save(
        stored, running.release, entry=entry(running.release, "ready"), finished=False
    )
    assert first.revision == 2
    with pytest.raises(RevisionConflict, match="revision 2, expected 1"):
        store.save(stored, release, entry=entry(release, "stale"), finished=False)
    current = store.get("r1")
    assert current is not None
    assert current.release.phase is Phase.RUNNING
    assert [e.action for e in store.history("shop-api")] == ["start", "ready"]


def test_concurrent_transitions_each_apply_exactly_once(store: ReleaseStore) -> None:
    """Ten writers approve-and-roll-back in a read-modify-write loop; the release ends with
    exactly one applied rollback and the revision counts every applied save."""
    release = new_release()
    store.create(release, entry=entry(release, "start"))
    applied: list[str] = []

    def act(user: str) -> None:
        while True:
            current = store.get("r1")
            assert current is not None
            outcome = transition(current.release, Rollback(by=user, reason="test"), now=NOW)
            assert isinstance(outcome, Accepted)
            try:
                store.save(
                    current,
                    outcome.release,
                    entry=entry(outcome.release, "rollback", user),
                    finished=False,
                )
                applied.append(user)
                return
            except RevisionConflict:
                continue

    threads = [threading.Thread(target=act, args=(f"U{i}",)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.get("r1")
    assert final is not None
    # Rolling back again is accepted by the machine (it re-reconciles), so every writer applies,
    # but strictly one after another: revisions 2..11, no lost or doubled write.
    assert final.revision == 1 + len(applied) == 11
    assert len([e for e in store.history("shop-api") if e.action == "rollback"]) == 10


def test_a_delivery_is_claimed_once(store: ReleaseStore) -> None:
    assert store.claim_delivery("trigger-1") is True
    assert store.claim_delivery("trigger-1") is False
    assert store.claim_delivery("trigger-2") is True


def test_finishing_frees_the_app(store: ReleaseStore) -> None:
    release = new_release()
    stored = store.create(release, entry=entry(release, "start"))
    rolling = transition(stored.release, Rollback(by="U0ANA"), now=NOW).release
    stored = store.save(stored, rolling, entry=entry(rolling, "rollback"), finished=False)
    done = transition(rolling, RollbackDone(), now=NOW).release
    store.save(stored, done, entry=entry(done, "rolled back"), finished=True)
    assert store.active("shop-api") is None
    assert store.active_releases() == []
    assert store.get("r1") is not None  # the record stays for history
    nxt = new_release(release_id="r2")
    assert store.create(nxt, entry=entry(nxt, "start")).revision == 1


def test_redis_down_is_a_clear_temporary_error() -> None:
    store = ReleaseStore(connect(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(StoreUnavailable, match="state store unavailable, nothing changed"):
        store.active("shop-api")


def due_ids(store: ReleaseStore, now: datetime) -> list[str]:
    return store.release_ids_due(now)[0]


def tally(store: ReleaseStore) -> dict[str, int]:
    counts = store.release_ids_due(NOW)[1]
    return {phase: count for (phase, _), count in counts.items() if count}


def test_each_save_writes_the_due_time_in_the_same_script(store: ReleaseStore) -> None:
    release = new_release()
    stored = store.create(release, entry=entry(release, "start"), due_at=NOW)
    assert due_ids(store, NOW) == ["r1"]
    assert tally(store) == {"starting": 1}
    later = NOW + timedelta(minutes=5)
    running = transition(stored.release, CanaryReady(), now=NOW).release
    stored = store.save(
        stored, running, entry=entry(running, "ready"), finished=False, due_at=later
    )
    assert due_ids(store, NOW) == []
    assert due_ids(store, later) == ["r1"]
    assert tally(store) == {"running": 1}
    with pytest.raises(RevisionConflict):  # a save that loses changes no due time either
        store.save(StoredRelease(release, 1), running, entry=None, finished=False, due_at=NOW)
    assert due_ids(store, NOW) == []


def test_a_finished_release_leaves_the_index_once_nothing_is_left_to_post(
    store: ReleaseStore,
) -> None:
    release = new_release()
    stored = store.create(release, entry=entry(release, "start"))
    rolling = transition(stored.release, Rollback(by="U0ANA"), now=NOW).release
    stored = store.save(stored, rolling, entry=None, finished=False)
    done = transition(rolling, RollbackDone(), now=NOW).release
    notice = OutboxNotice(id=1, kind=NoticeKind.ROLLED_BACK, text="rolled back")
    stored = store.save(stored, done.evolve(outbox=(notice,)), entry=None, finished=True)
    assert due_ids(store, NOW) == ["r1"]  # its last message is still to post
    assert tally(store) == {"rolled_back": 1}
    store.save(stored, done, entry=None, finished=True)
    assert due_ids(store, NOW + timedelta(days=365)) == []
    assert tally(store) == {}
    store.make_due("r1")  # a finished release does not come back
    assert due_ids(store, NOW) == []


def test_reschedule_moves_only_a_release_nobody_saved_since(store: ReleaseStore) -> None:
    release = new_release()
    stored = store.create(release, entry=entry(release, "start"))
    later = NOW + timedelta(minutes=1)
    assert store.reschedule(stored, later)
    assert due_ids(store, NOW) == []
    store.make_due("r1")
    assert due_ids(store, NOW) == ["r1"]
    store.save(stored, release, entry=None, finished=False, due_at=NOW)  # revision 2 now
    assert not store.reschedule(stored, later)  # read at revision 1: the save's time stands
    assert due_ids(store, NOW) == ["r1"]


def test_releases_saved_before_the_index_join_it_due_at_once(
    store: ReleaseStore, redis_client: redis.Redis
) -> None:
    for name in ("a", "b"):
        release = new_release(app=name, release_id=name)
        store.create(release, entry=entry(release, "start"), due_at=NOW + timedelta(hours=1))
    redis_client.zrem("rb:due", "a")  # as if saved by a bot without the index or its tally
    redis_client.hdel("rb:release:a", "labels")
    redis_client.hincrby("rb:tally", "starting canary", -1)
    assert tally(store) == {"starting": 1}
    assert store.index_unindexed() == 1
    assert due_ids(store, NOW) == ["a"]  # b keeps its own time
    assert tally(store) == {"starting": 2}
    assert store.index_unindexed() == 0


def test_a_bookkeeping_save_never_postpones_a_pass(store: ReleaseStore) -> None:
    release = new_release()
    stored = store.create(release, entry=entry(release, "start"), due_at=NOW)
    later = NOW + timedelta(hours=1)
    stored = store.save(stored, release, entry=None, finished=False, due_at=later, only_sooner=True)
    assert due_ids(store, NOW) == ["r1"]  # still due at NOW
    store.save(stored, release, entry=None, finished=False, due_at=later)
    assert due_ids(store, NOW) == []
