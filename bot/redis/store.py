"""Redis adapter for release state; called by the release service and the scheduler.

Keys (prefix `rb:`):
  release:{id}    hash: json (the Release), revision (bumped by every save)
  active:{app}    id of the app's one active release
  active          set of active release ids
  undelivered     set of release ids with Slack messages (card, thread replies) still to post
  finished        list: the ids of the last FINISHED_KEPT releases that finished, newest first
  due             sorted set: release id -> when it next needs a scheduler pass (Unix seconds;
                  0: at once), written by the same script as each create and save
                  (bot.core.schedule.next_due decides it); a finished release with nothing left
                  to post leaves it. A pass reads only what is due (ZRANGEBYSCORE), so an idle
                  pass is one round trip however many releases exist
  tally           hash: "phase kind" -> how many releases of the due index are in that phase,
                  kept by the same scripts (each release hash's `labels` field says which one
                  it counts in), so the releases gauge costs no read of any release
  history:{app}   list: the app's append-only audit trail (JSON entries, oldest first)
  lock:{app}      hash: by, reason, at (a deploy lock)
  freeze:{app}    hash: by, reason, at, until (a one-off freeze of the app; freeze:all of every
                  app); written in one MULTI with an expiry a day past its length, so an ended
                  freeze is ignored by the freeze decision and gone a day later
  delivery:{key}  Slack deliveries already taken (trigger ids; expire after a day)
  lease:{id}      which bot replica (and thread) works the release now; expires unless renewed

Every write is one Lua script, so it is atomic and a concurrent writer loses
instead of overwriting: saves compare the revision they read.

Audit retention (`audit_retention_days`, RELEASE_BOT_AUDIT_RETENTION_DAYS, default 400): the
script that appends an entry to history:{app} (create, save, append_history) first pops, from the
list's head, the entries whose `at` is more than the retention before the new entry's `at`
(at most TRIM_BATCH a time, the rest on the next appends). So trimming happens on append, in the
same atomic script, compared at the second on UTC times; an app nobody acts on keeps its old
entries until its next entry. Entries are never edited: only the oldest ones leave, whole.

Durability (`replicas_to_wait` > 0, the default behind Sentinel): each write that changes release
state or a deploy lock (create, save, lock, unlock) is followed by `WAIT replicas wait_ms`, and
counts as done only once that many replicas have it. When they do not confirm in time the write
is still on the primary, so `ReplicaUnconfirmed` says so instead of "nothing changed": a repeat
of the same action reads the new revision and is refused rather than applied twice, and the
scheduler's next pass carries out what the saved state asks for. Lease, delivery-claim and audit
appends of refusals are not waited for: each pass retakes its lease, and losing one of the others
in a failover costs a log line, not a release state.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from bot.core.errors import TemporaryError
from bot.core.freezes import ALL_APPS, OneOffFreeze
from bot.core.ports import (
    AppBusy,
    AppLocked,
    DeployLock,
    HistoryEntry,
    RevisionConflict,
    StoredRelease,
)
from bot.core.release import Release

DELIVERY_TTL_S = 24 * 3600
AUDIT_RETENTION_DAYS_DEFAULT = 400
TRIM_BATCH = 1000
FREEZE_KEPT_AFTER_END_S = 24 * 3600
FINISHED_KEPT = 100

# Pops the entries of history list `key` dated before `cutoff` (UTC 'YYYY-MM-DDTHH:MM:SS'), oldest
# first, at most `most`; stops at the first entry it cannot date, so nothing undated is lost.
_TRIM = """
local function trim_history(key, cutoff, most)
  for _ = 1, most do
    local head = redis.call('LINDEX', key, 0)
    if not head then return end
    local ok, entry = pcall(cjson.decode, head)
    if not ok or type(entry) ~= 'table' or type(entry['at']) ~= 'string' then return end
    if string.sub(entry['at'], 1, 19) >= cutoff then return end
    redis.call('LPOP', key)
  end
end
"""

# KEYS: active:{app}, lock:{app}, release, history, active set, due index, tally.
# ARGV: release id, json, history entry, trim cutoff, trim batch, through lock (0/1: a
# break-glass override lets the start through the app's deploy lock), due score, labels.
_CREATE = (
    _TRIM
    + """
if ARGV[6] ~= '1' then
  local lock = redis.call('HGETALL', KEYS[2])
  if #lock > 0 then return {'locked', cjson.encode(lock)} end
end
local holder = redis.call('GET', KEYS[1])
if holder then return {'busy', holder} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], 'json', ARGV[2], 'revision', 1, 'labels', ARGV[8])
redis.call('HINCRBY', KEYS[7], ARGV[8], 1)
trim_history(KEYS[4], ARGV[4], tonumber(ARGV[5]))
redis.call('RPUSH', KEYS[4], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[7], ARGV[1])
return {'ok', '1'}
"""
)

# KEYS: release, history, active:{app}, active set, undelivered set, due index, tally, finished
# list. ARGV: expected revision, json, history entry ('' for none), finished (0/1), release id,
# undelivered (0/1: the release has Slack messages still to post), trim cutoff, trim batch,
# due score ('' : it leaves the due index, and the tally), labels, only sooner (1: the due time
# only moves earlier, as ZADD LT), finished ids kept.
_SAVE = (
    _TRIM
    + """
local revision = redis.call('HGET', KEYS[1], 'revision')
if revision ~= ARGV[1] then return {'conflict', revision or ''} end
local next_revision = tonumber(revision) + 1
if redis.call('ZSCORE', KEYS[6], ARGV[5]) then
  local counted = redis.call('HGET', KEYS[1], 'labels')
  if counted then redis.call('HINCRBY', KEYS[7], counted, -1) end
end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'revision', next_revision, 'labels', ARGV[10])
if ARGV[3] ~= '' then
  trim_history(KEYS[2], ARGV[7], tonumber(ARGV[8]))
  redis.call('RPUSH', KEYS[2], ARGV[3])
end
if ARGV[4] == '1' then
  if redis.call('GET', KEYS[3]) == ARGV[5] then redis.call('DEL', KEYS[3]) end
  if redis.call('SREM', KEYS[4], ARGV[5]) == 1 then
    redis.call('LPUSH', KEYS[8], ARGV[5])
    redis.call('LTRIM', KEYS[8], 0, tonumber(ARGV[12]) - 1)
  end
end
if ARGV[6] == '1' then redis.call('SADD', KEYS[5], ARGV[5])
else redis.call('SREM', KEYS[5], ARGV[5]) end
if ARGV[9] == '' then redis.call('ZREM', KEYS[6], ARGV[5])
elseif ARGV[11] == '1' then
  redis.call('ZADD', KEYS[6], 'LT', ARGV[9], ARGV[5])
  redis.call('HINCRBY', KEYS[7], ARGV[10], 1)
else
  redis.call('ZADD', KEYS[6], ARGV[9], ARGV[5])
  redis.call('HINCRBY', KEYS[7], ARGV[10], 1)
end
return {'ok', tostring(next_revision)}
"""
)

# KEYS: history:{app}. ARGV: entry, trim cutoff, trim batch.
_APPEND = (
    _TRIM
    + """
trim_history(KEYS[1], ARGV[2], tonumber(ARGV[3]))
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""
)

# KEYS: lease:{release id}, and optionally release:{release id} to read once the lease is taken.
# ARGV: owner, ttl in ms. Taking a lease one holds extends it. Returns {0} when another owner
# holds it, else {1}, followed by the release's json and revision when asked for and it exists.
_TAKE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if KEYS[2] then
  local record = redis.call('HMGET', KEYS[2], 'json', 'revision')
  if record[1] then return {1, record[1], record[2]} end
end
return {1}
"""

# KEYS[1]: the app's active-release key; ARGV[1]: the release hashes' key prefix. The release's
# json and revision in one round trip (a status answer waits on it), nil when none is active.
_ACTIVE = """
local release_id = redis.call('GET', KEYS[1])
if not release_id then return nil end
return redis.call('HMGET', ARGV[1] .. release_id, 'json', 'revision')
"""

# KEYS: release, due index. ARGV: revision read, due score, release id. A pass that changed
# nothing moves the release's due time on, unless a save came in between (it set its own).
_RESCHEDULE = """
if redis.call('HGET', KEYS[1], 'revision') ~= ARGV[1] then return 0 end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[3])
return 1
"""

# KEYS: active set, undelivered set, due index, tally. ARGV: the release key's prefix. Releases
# saved before the index existed join it as due at once (NX: a release already indexed keeps
# its time), and the tally, under the phase and kind their record names.
_INDEX_UNINDEXED = """
local added = 0
for _, set in ipairs({KEYS[1], KEYS[2]}) do
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    if redis.call('ZADD', KEYS[3], 'NX', 0, id) == 1 then
      added = added + 1
      local key = ARGV[1] .. id
      local ok, record = pcall(cjson.decode, redis.call('HGET', key, 'json') or '')
      if ok and type(record) == 'table' then
        local labels = tostring(record['phase']) .. ' ' .. tostring(record['kind'] or 'canary')
        redis.call('HSET', key, 'labels', labels)
        redis.call('HINCRBY', KEYS[4], labels, 1)
      end
    end
  end
end
return added
"""

_DROP_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class StoreUnavailable(TemporaryError):
    def __init__(self, cause: Exception) -> None:
        super().__init__(f"state store unavailable, nothing changed ({type(cause).__name__})")


class ReplicaUnconfirmed(TemporaryError):
    """The write is on the primary, but not (yet) on the replicas it must reach: it is not lost
    unless the primary dies before replicating it, and not undone either."""

    def __init__(self, *, replicas: int, wait_ms: int, cause: Exception | None = None) -> None:
        why = (
            f"the connection failed ({type(cause).__name__}) before a replica confirmed it"
            if cause is not None
            else f"no replica confirmed it within {wait_ms} ms"
            if replicas == 1
            else f"fewer than {replicas} replicas confirmed it within {wait_ms} ms"
        )
        super().__init__(
            f"saved on the primary, but {why}; the action is not confirmed: it stands unless "
            "Redis fails over before the replica catches up. Check the release's status before "
            "repeating it (a repeat of a kept action is refused, never applied twice)"
        )


def connect(
    url: str | None = None,
    *,
    sentinels: Sequence[tuple[str, int]] = (),
    master: str | None = None,
    password: str | None = None,
    sentinel_password: str | None = None,
) -> redis.Redis:
    """A client on `url`, or on the master that `sentinels` name for `master`; short timeouts, so
    a Redis outage answers fast instead of hanging Slack.

    It never retries a command by itself: a save whose reply was lost would be sent again and
    could apply one person's action twice. The scheduler's next pass is the retry. Behind
    Sentinel, a connection that fails (or finds its server demoted to a replica) is dropped and
    the next command asks the Sentinels for the master again, so a failover is followed by the
    first command after the new master is promoted."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        "health_check_interval": 30,
        "retry": Retry(NoBackoff(), retries=0),
    }
    if password is not None:
        options["password"] = password
    if url is not None:
        if sentinels:
            raise ValueError("connect to a url or through sentinels, not both")
        return redis.Redis.from_url(url, **options)
    if not sentinels or master is None:
        raise ValueError("connect needs a url, or sentinels and a master name")
    sentinel_options: dict[str, Any] = {
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        "retry": Retry(NoBackoff(), retries=0),
    }
    if sentinel_password is not None:
        sentinel_options["password"] = sentinel_password
    manager = Sentinel(list(sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel untyped
    client: redis.Redis = manager.master_for(master, **options)  # type: ignore[no-untyped-call]
    return client


class ReleaseStore:
    """Expects a client made with decode_responses=True (see `connect`). `replicas_to_wait`
    replicas must confirm each state-changing write within `wait_ms` (0: no WAIT is sent).
    Audit entries older than `audit_retention_days` are trimmed as entries are appended."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "rb:",
        replicas_to_wait: int = 0,
        wait_ms: int = 500,
        audit_retention_days: int = AUDIT_RETENTION_DAYS_DEFAULT,
    ) -> None:
        if replicas_to_wait < 0 or wait_ms < 1:
            raise ValueError("replicas_to_wait must be >= 0 and wait_ms >= 1 (WAIT 0 blocks)")
        if audit_retention_days < 1:
            raise ValueError("audit_retention_days must be >= 1")
        self._retention = timedelta(days=audit_retention_days)
        self._redis = client
        self._prefix = prefix
        self._replicas_to_wait = replicas_to_wait
        self._wait_ms = wait_ms
        self._create = client.register_script(_CREATE)
        self._save = client.register_script(_SAVE)
        self._append = client.register_script(_APPEND)
        self._take_lease = client.register_script(_TAKE_LEASE)
        self._drop_lease = client.register_script(_DROP_LEASE)
        self._active = client.register_script(_ACTIVE)
        self._reschedule = client.register_script(_RESCHEDULE)
        self._index_unindexed = client.register_script(_INDEX_UNINDEXED)

    def ping(self) -> bool:
        """True when Redis answers PING within the client's timeouts (see `connect`); the
        server's readiness check."""
        try:
            return bool(self._redis.ping())
        except (redis.RedisError, OSError):
            return False

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def create(
        self,
        release: Release,
        *,
        entry: HistoryEntry,
        through_lock: bool = False,
        due_at: datetime | None = None,
    ) -> StoredRelease:
        """Store a new active release, due for a pass at `due_at` (None: at once); refuse if
        the app is locked (unless `through_lock`: a break-glass override) or already has one."""
        keys = [
            self._key("active", release.app),
            self._key("lock", release.app),
            self._key("release", release.id),
            self._key("history", release.app),
            self._key("active"),
            self._key("due"),
            self._key("tally"),
        ]
        status, value = self._run(
            self._create,
            keys,
            [
                release.id,
                release.model_dump_json(),
                entry.to_json(),
                *self._trim_args(entry),
                "1" if through_lock else "0",
                _score(due_at),
                _labels(release),
            ],
        )
        if status == "locked":
            fields = json.loads(value)
            raise AppLocked(
                release.app, DeployLock(**dict(zip(fields[::2], fields[1::2], strict=True)))
            )
        if status == "busy":
            holder = self.get(value)
            if holder is None:
                raise RevisionConflict(f"{release.app}'s active release vanished; try again")
            raise AppBusy(holder)
        self._replicated()
        return StoredRelease(release, int(value))

    def save(
        self,
        stored: StoredRelease,
        release: Release,
        *,
        entry: HistoryEntry | None,
        finished: bool,
        due_at: datetime | None = None,
        only_sooner: bool = False,
    ) -> StoredRelease:
        """Replace `stored` by `release` if nobody saved since `stored` was read; `entry` goes to
        the audit trail (None: a bookkeeping save, such as recording what Slack was sent). The
        release is due for a pass at `due_at` (None: at once; `only_sooner`: unless it is due
        sooner already, so a bookkeeping save never postpones the pass a failed reconcile asked
        for), or, once `finished` with nothing left to post, leaves the due index."""
        release_key = self._key("release", release.id)
        keys = [
            release_key,
            self._key("history", release.app),
            self._key("active", release.app),
            self._key("active"),
            self._key("undelivered"),
            self._key("due"),
            self._key("tally"),
            self._key("finished"),
        ]
        undelivered = bool(release.outbox) or release.card_stale
        leaves_index = finished and not undelivered
        args = [
            str(stored.revision),
            release.model_dump_json(),
            entry.to_json() if entry else "",
            "1" if finished else "0",
            release.id,
            "1" if undelivered else "0",
            *(self._trim_args(entry) if entry else ("", "0")),
            "" if leaves_index else _score(due_at),
            _labels(release),
            "1" if only_sooner else "0",
            str(FINISHED_KEPT),
        ]
        status, value = self._run(self._save, keys, args)
        if status == "conflict":
            raise RevisionConflict(
                f"release {release.id} changed (revision {value}, expected {stored.revision})"
            )
        self._replicated()
        return StoredRelease(release, int(value))

    def claim_delivery(self, key: str) -> bool:
        """True the first time `key` (a Slack trigger id) is seen: Slack retries and double
        deliveries of one request are then acted on once, whichever replica receives them."""
        claimed = self._call(
            self._redis.set, self._key("delivery", key), "1", nx=True, ex=DELIVERY_TTL_S
        )
        return bool(claimed)

    def take_lease(self, release_id: str, *, owner: str, ttl_s: float) -> bool:
        """Take, or extend, the release's lease for `ttl_s`; False when another owner holds it."""
        taken, *_ = self._call(
            self._take_lease, keys=[self._key("lease", release_id)], args=_lease_args(owner, ttl_s)
        )
        return bool(taken)

    def take_lease_and_read(
        self, release_id: str, *, owner: str, ttl_s: float
    ) -> tuple[bool, StoredRelease | None]:
        """`take_lease`, and the release as it is once the lease is taken, in one round trip:
        (False, None) when another owner holds the lease; (True, None) if the release is gone."""
        keys = [self._key("lease", release_id), self._key("release", release_id)]
        taken, *record = self._call(self._take_lease, keys=keys, args=_lease_args(owner, ttl_s))
        if not taken:
            return False, None
        return True, _stored(*record) if record else None

    def drop_lease(self, release_id: str, *, owner: str) -> None:
        self._call(self._drop_lease, keys=[self._key("lease", release_id)], args=[owner])

    def server_time(self) -> datetime:
        """Redis's clock: the one time every replica agrees on."""
        seconds, microseconds = self._call(self._redis.time)
        return datetime.fromtimestamp(int(seconds) + int(microseconds) / 1e6, UTC)

    def get(self, release_id: str) -> StoredRelease | None:
        fields = self._call(
            self._redis.hmget, self._key("release", release_id), ["json", "revision"]
        )
        return None if fields[0] is None else _stored(*fields)

    def get_many(self, release_ids: Sequence[str]) -> list[StoredRelease]:
        """The releases that exist among `release_ids`, in one round trip."""
        pipeline = self._redis.pipeline(transaction=False)
        for release_id in release_ids:
            pipeline.hmget(self._key("release", release_id), ["json", "revision"])
        answers = self._call(pipeline.execute)
        return [_stored(*fields) for fields in answers if fields[0] is not None]

    def active(self, app: str) -> StoredRelease | None:
        fields = self._call(
            self._active, keys=[self._key("active", app)], args=[self._key("release", "")]
        )
        return None if not fields or fields[0] is None else _stored(*fields)

    def active_releases(self) -> list[StoredRelease]:
        ids = sorted(self._call(self._redis.smembers, self._key("active")))
        return [stored for release_id in ids if (stored := self.get(release_id)) is not None]

    def finished_releases(self, *, limit: int) -> list[StoredRelease]:
        """The last `limit` releases that finished (at most FINISHED_KEPT), newest first."""
        ids = self._call(self._redis.lrange, self._key("finished"), 0, limit - 1)
        return [stored for release_id in ids if (stored := self.get(release_id)) is not None]

    def release_ids_due(self, now: datetime) -> tuple[list[str], dict[tuple[str, str], int]]:
        """The releases due for a pass at `now` (active ones, and finished ones whose last Slack
        messages are not posted yet), earliest first, and how many releases the index holds by
        (phase, kind), in one round trip; the scheduler reads each due one as it takes its lease
        (take_lease_and_read)."""
        pipeline = self._redis.pipeline(transaction=False)
        pipeline.zrangebyscore(self._key("due"), "-inf", _score(now))
        pipeline.hgetall(self._key("tally"))
        due, tally = self._call(pipeline.execute)
        counts = {}
        for labels, count in tally.items():
            phase, _, kind = labels.partition(" ")
            counts[(phase, kind)] = int(count)
        return due, counts

    def reschedule(self, stored: StoredRelease, due_at: datetime) -> bool:
        """After a pass that saved nothing: the release is next due at `due_at`, unless it was
        saved since `stored` was read (that save set its own due time). True when moved."""
        keys = [self._key("release", stored.release.id), self._key("due")]
        args = [str(stored.revision), _score(due_at), stored.release.id]
        return bool(self._call(self._reschedule, keys=keys, args=args))

    def make_due(self, release_id: str) -> None:
        """The release needs a pass at once (its cluster could not be reconciled, a freeze
        holding it was lifted); a finished one that left the index stays out of it."""
        self._call(self._redis.zadd, self._key("due"), {release_id: 0}, xx=True)

    def index_unindexed(self) -> int:
        """Releases stored before the due index existed join it, due at once; how many did."""
        keys = [self._key("active"), self._key("undelivered"), self._key("due"), self._key("tally")]
        added = self._call(self._index_unindexed, keys=keys, args=[self._key("release", "")])
        return int(added)

    def append_history(self, app: str, entry: HistoryEntry) -> None:
        """Record an action that changed no release state (a refusal, a lock) in the audit
        trail."""
        keys = [self._key("history", app)]
        self._call(self._append, keys=keys, args=[entry.to_json(), *self._trim_args(entry)])

    def history(self, app: str, *, limit: int = 50) -> list[HistoryEntry]:
        """The app's last `limit` entries, oldest first."""
        lines = self._call(self._redis.lrange, self._key("history", app), -limit, -1)
        return [_with_app(HistoryEntry.from_json(line), app) for line in lines]

    def audit_trail(
        self, app: str | None = None, *, since: datetime | None = None
    ) -> list[HistoryEntry]:
        """The app's whole audit trail from `since` (an aware time) on, oldest first; app None:
        every app's trail, merged in time order (each app's entries keep their order)."""
        if app is not None:
            apps = [app]
        else:
            head = self._key("history", "")
            keys = self._call(lambda: list(self._redis.scan_iter(match=head + "*", count=500)))
            apps = sorted(key.removeprefix(head) for key in keys)
        trails = []
        for name in apps:
            lines = self._call(self._redis.lrange, self._key("history", name), 0, -1)
            entries = [_with_app(HistoryEntry.from_json(line), name) for line in lines]
            trails.append([e for e in entries if since is None or entry_time(e) >= since])
        return list(heapq.merge(*trails, key=entry_time))

    def _trim_args(self, entry: HistoryEntry) -> tuple[str, str]:
        """The trim script's cutoff (the retention before the new entry) and batch size."""
        cutoff = (entry_time(entry) - self._retention).astimezone(UTC)
        return cutoff.strftime("%Y-%m-%dT%H:%M:%S"), str(TRIM_BATCH)

    def lock(self, app: str, *, by: str, reason: str, at: datetime) -> DeployLock:
        lock = DeployLock(by=by, reason=reason, at=at.isoformat())
        self._call(self._redis.hset, self._key("lock", app), mapping=asdict(lock))
        self._replicated()
        return lock

    def unlock(self, app: str) -> DeployLock | None:
        previous = self.lock_of(app)
        if self._call(self._redis.delete, self._key("lock", app)):
            self._replicated()
        return previous

    def lock_of(self, app: str) -> DeployLock | None:
        fields = self._call(self._redis.hgetall, self._key("lock", app))
        return DeployLock(**fields) if fields else None

    def freeze(
        self, scope: str, *, by: str, reason: str, at: datetime, until: datetime
    ) -> OneOffFreeze:
        freeze = OneOffFreeze(
            scope=scope, by=by, reason=reason, at=at.isoformat(), until=until.isoformat()
        )
        key = self._key("freeze", scope)
        fields: dict[Any, Any] = {
            "by": by,
            "reason": reason,
            "at": freeze.at,
            "until": freeze.until,
        }
        keep_s = max(int((until - at).total_seconds()), 0) + FREEZE_KEPT_AFTER_END_S
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, keep_s)
            self._call(pipe.execute)
        self._replicated()
        return freeze

    def unfreeze(self, scope: str) -> OneOffFreeze | None:
        previous = self._freeze_of(scope)
        if self._call(self._redis.delete, self._key("freeze", scope)):
            self._replicated()
        return previous

    def freezes_of(self, app: str) -> list[OneOffFreeze]:
        """The app's one-off freeze and the one of every app, those that are set (one round
        trip for both)."""
        scopes = (app, ALL_APPS)
        pipeline = self._redis.pipeline(transaction=False)
        for scope in scopes:
            pipeline.hgetall(self._key("freeze", scope))
        answers = self._call(pipeline.execute)
        return [
            OneOffFreeze(scope=scope, **fields)
            for scope, fields in zip(scopes, answers, strict=True)
            if fields
        ]

    def _freeze_of(self, scope: str) -> OneOffFreeze | None:
        fields = self._call(self._redis.hgetall, self._key("freeze", scope))
        return OneOffFreeze(scope=scope, **fields) if fields else None

    def _replicated(self) -> None:
        """After a write: wait until `replicas_to_wait` replicas have it, or raise
        ReplicaUnconfirmed. No round trip when no replica is waited for."""
        if self._replicas_to_wait == 0:
            return
        try:
            confirmed = int(self._redis.wait(self._replicas_to_wait, self._wait_ms))
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise ReplicaUnconfirmed(
                replicas=self._replicas_to_wait, wait_ms=self._wait_ms, cause=error
            ) from error
        if confirmed < self._replicas_to_wait:
            raise ReplicaUnconfirmed(replicas=self._replicas_to_wait, wait_ms=self._wait_ms)

    def _run(self, script: Any, keys: list[str], args: list[str]) -> tuple[str, str]:
        status, value = self._call(script, keys=keys, args=args)
        return _text(status), _text(value)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise StoreUnavailable(error) from error


def entry_time(entry: HistoryEntry) -> datetime:
    """The entry's `at` as an aware time (UTC when it names no offset)."""
    at = datetime.fromisoformat(entry.at)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _with_app(entry: HistoryEntry, app: str) -> HistoryEntry:
    """Entries written before HistoryEntry had `app` take it from their list's key."""
    return entry if entry.app else replace(entry, app=app)


def _labels(release: Release) -> str:
    """Which tally the release counts in: its phase and kind."""
    return f"{release.phase.value} {release.kind.value}"


def _score(due_at: datetime | None) -> str:
    """A due time as the index's score: Unix seconds, to the millisecond; None (at once) is 0."""
    return "0" if due_at is None else f"{due_at.timestamp():.3f}"


def _lease_args(owner: str, ttl_s: float) -> list[str]:
    return [owner, str(max(1, round(ttl_s * 1000)))]


def _stored(record: str, revision: str) -> StoredRelease:
    """A release from its hash's `json` and `revision` fields."""
    return StoredRelease(Release.model_validate_json(record), int(revision))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
