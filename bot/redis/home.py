"""Redis adapter for App Home refreshes: who looked lately, and when each is due a new view.

Built by bot.entrypoints.server and used by bot.application.home.AppHome (its HomeViewersPort)
and by the release service, which schedules a refresh after each saved transition. Keys (the
store's prefix, `rb:`):
  home:viewers    sorted set: user id -> when they last opened App Home (epoch seconds)
  home:due        sorted set: user id -> when their refresh is due
  home:shown      hash: user id -> when they were last shown a view
  home:budget:{m} publishes counted in minute m (expires after two minutes)

Each operation is one Lua script, so replicas never take the same refresh twice. A burst of
changes gives each viewer one refresh at the end of its gap (trailing edge): the first change
schedules it `settle_s` ahead, or `min_gap_s` after the last view shown, whichever is later;
the later changes find it scheduled and leave it. Slack allows views.publish about 100 times a
minute (Tier 4): `budget_per_minute` caps all replicas together, and what does not fit waits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis

from bot.redis.store import StoreUnavailable

VIEWER_TTL_S = 2 * 3600
"""How long after opening App Home a person keeps being sent refreshes."""
MIN_GAP_S = 10.0
SETTLE_S = 1.0
BUDGET_PER_MINUTE = 80
"""Below Slack's Tier 4 (100+ per minute) for views.publish, room left for openings."""

# KEYS: viewers, due, shown, budget. ARGV: user, now.
_OPENED = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], 120)
"""

# KEYS: viewers, due, shown. ARGV: now, viewer ttl, min gap, settle. Returns the viewer count.
_SCHEDULE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local viewers = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, user in ipairs(viewers) do
  local due = now + tonumber(ARGV[4])
  local shown = tonumber(redis.call('HGET', KEYS[3], user) or '')
  if shown and shown + tonumber(ARGV[3]) > due then due = shown + tonumber(ARGV[3]) end
  redis.call('ZADD', KEYS[2], 'NX', due, user)
end
return #viewers
"""

# KEYS: due, shown, budget. ARGV: now, budget per minute. Returns the users taken.
_TAKE_DUE = """
local room = tonumber(ARGV[2]) - tonumber(redis.call('GET', KEYS[3]) or '0')
if room <= 0 then return {} end
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, room)
for _, user in ipairs(users) do
  redis.call('ZREM', KEYS[1], user)
  redis.call('HSET', KEYS[2], user, ARGV[1])
end
if #users > 0 then
  redis.call('INCRBY', KEYS[3], #users)
  redis.call('EXPIRE', KEYS[3], 120)
end
return users
"""


class HomeViewers:
    """A HomeViewersPort on Redis (a client made with decode_responses=True)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "rb:",
        viewer_ttl_s: float = VIEWER_TTL_S,
        min_gap_s: float = MIN_GAP_S,
        settle_s: float = SETTLE_S,
        budget_per_minute: int = BUDGET_PER_MINUTE,
    ) -> None:
        self._prefix = prefix
        self._viewer_ttl_s = viewer_ttl_s
        self._min_gap_s = min_gap_s
        self._settle_s = settle_s
        self._budget = budget_per_minute
        self._opened = client.register_script(_OPENED)
        self._schedule = client.register_script(_SCHEDULE)
        self._take_due = client.register_script(_TAKE_DUE)

    def opened(self, user: str, *, at: datetime) -> None:
        keys = [*self._keys("viewers", "due", "shown"), self._budget_key(at)]
        _run(self._opened, keys, [user, at.timestamp()])

    def schedule_refresh(self, *, at: datetime) -> int:
        args = [at.timestamp(), self._viewer_ttl_s, self._min_gap_s, self._settle_s]
        return int(_run(self._schedule, self._keys("viewers", "due", "shown"), args))

    def take_due(self, *, at: datetime) -> list[str]:
        keys = [*self._keys("due", "shown"), self._budget_key(at)]
        return [str(user) for user in _run(self._take_due, keys, [at.timestamp(), self._budget])]

    def _keys(self, *names: str) -> list[str]:
        return [f"{self._prefix}home:{name}" for name in names]

    def _budget_key(self, at: datetime) -> str:
        return f"{self._prefix}home:budget:{int(at.timestamp() // 60)}"


def _run(script: Any, keys: list[str], args: list[Any]) -> Any:
    try:
        return script(keys=keys, args=args)
    except (redis.RedisError, OSError) as error:
        raise StoreUnavailable(error) from error
