"""Redis state of the waiting room: one hash-tagged key family per sale, one Lua call per step.

Keys `<prefix>:{sale:<id>}:<name>` (the `{sale:<id>}` tag keeps a sale in one Redis Cluster
slot; every script below touches exactly one sale's keys):
- `meta`      hash: status (scheduled|open|closed), reason, concert_id, opens_ms, closes_ms,
              max_active, min_rate, max_rate, control (auto|manual), seq (last FIFO place),
              seal_next (next drawn place), bucket_tokens/bucket_ms (admission token bucket),
              stock_state (ok|in_carts|unknown), free_units, idle_ms (the worker's setting)
- `prequeue`  zset: user -> secret uniform draw key (arrived before the sale opened)
- `queue`     zset: user -> place in line (1..N drawn at open, then N+1.. FIFO)
- `seen`      zset: user -> last status check, ms (waiting and pre-queue fans)
- `admitted`  zset: user -> admission expiry, ms
- `unclaimed` zset: user -> arrival deadline, ms (admitted fans who have not yet received their
              token from a status check, the push stream or a booking)
- `idle`      zset: user -> idle deadline, ms (admitted fans who collected the token, or all
              admitted fans without an arrival window: collection and every booking attempt
              with the token push it to now + `idle_ms` of `meta`)
- `tokens`    hash: user -> admission token of the current admission (revocation check)
- `gone`      hash: user -> why the place ended (abandoned, admission_expired,
              admission_unclaimed, admission_idle)
- `stats`     hash: joined, admitted_total, abandoned, admission_expired, admission_unclaimed,
              admission_idle, left, completed,
              queued_at_close, ewma (measured admission rate, fans/s), ewma_ms
- `rate`      string: current admission rate, fans/s (operator, CLI or local controller)
- `lease`     string: `<worker id>:<fence>` of the admission worker leading the sale (PX)
- `fence`     string: incremented by every lease acquisition
Plus `<prefix>:queue:concert:<id>` -> the concert's latest sale id (booking gate lookup).

Time comes from Redis (`TIME`), so every API process and worker agrees on one clock.
Lossy by design (DESIGN §3): if Redis loses a sale's keys, `sync` rebuilds meta and rate from
PostgreSQL (status and window are never lost). Places in line, admissions and counters are
lost: fans get 404 not-in-queue and rejoin at the back, admitted fans' tokens stop working
(403 admission-revoked) and they rejoin too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from app.core.redis import Keys

KEY_NAMES = (
    "meta",
    "prequeue",
    "queue",
    "seen",
    "admitted",
    "tokens",
    "gone",
    "stats",
    "rate",
    "lease",
    "fence",
    "unclaimed",
    "idle",
)
# Entries a worker step expires at most per kind; the rest is expired lazily on sight.
SWEEP_LIMIT = 2000
# The most fans one push-ticker call asks about (keeps each script short).
STATUS_BATCH = 1000

_LIB = """
local META, PRE, QUEUE, SEEN, ADM, TOKENS, GONE, STATS, RATE, LEASE, FENCE, UNCLAIMED, IDLE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12], KEYS[13]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function abandon(u)
  redis.call('ZREM', QUEUE, u)
  redis.call('ZREM', PRE, u)
  redis.call('ZREM', SEEN, u)
  redis.call('HSET', GONE, u, 'abandoned')
  redis.call('HINCRBY', STATS, 'abandoned', 1)
end

-- why: admission_expired (ran out), admission_unclaimed (never came back for the token) or
-- admission_idle (came back, then did nothing with it for idle_ms).
local function end_admission(u, why)
  redis.call('ZREM', ADM, u)
  redis.call('ZREM', UNCLAIMED, u)
  redis.call('ZREM', IDLE, u)
  redis.call('HDEL', TOKENS, u)
  redis.call('HSET', GONE, u, why)
  redis.call('HINCRBY', STATS, why, 1)
end

-- The admission was used (admitted, collected, a booking attempt): the idle clock restarts.
local function touch(u, now)
  local idle = tonumber(redis.call('HGET', META, 'idle_ms') or '0')
  if idle > 0 then redis.call('ZADD', IDLE, now + idle, u) end
end

-- The fan has the token (status answer, push event or booking): the arrival window is over.
-- False when the window (or the idle time) had already run out, which ends the admission.
local function claim(u, now)
  local deadline = redis.call('ZSCORE', UNCLAIMED, u)
  if deadline and tonumber(deadline) <= now then
    end_admission(u, 'admission_unclaimed')
    return false
  end
  local idle = redis.call('ZSCORE', IDLE, u)
  if idle and tonumber(idle) <= now then
    end_admission(u, 'admission_idle')
    return false
  end
  if deadline then
    redis.call('ZREM', UNCLAIMED, u)
    touch(u, now)
  end
  return true
end

-- Sale-wide part of every answer; nil when Redis does not know the sale (caller syncs).
local function head(now)
  local m = redis.call('HMGET', META, 'status', 'reason', 'opens_ms', 'closes_ms',
    'stock_state')
  if not m[1] then return nil end
  local status = m[1]
  if status ~= 'closed' and now >= tonumber(m[4]) then
    status = 'closed'  -- past closes_at: the worker is about to close it
    m[2] = m[2] or 'time'
  end
  return {status, m[2] or '', tonumber(m[3]), tonumber(m[4]), m[5] or '',
    redis.call('HGET', STATS, 'ewma') or '', redis.call('GET', RATE) or '0', now}
end

-- One fan's state. Counts as a status check (keeps the place); expires a stale place lazily,
-- so a late poll can never revive it.
local function status_of(u, now, cutoff)
  local exp = redis.call('ZSCORE', ADM, u)
  if exp then
    if tonumber(exp) <= now then
      end_admission(u, 'admission_expired')
      return {'expired', 'admission_expired'}
    end
    if not claim(u, now) then return {'expired', redis.call('HGET', GONE, u)} end
    return {'admitted', redis.call('HGET', TOKENS, u) or '', exp}
  end
  local place = redis.call('ZSCORE', QUEUE, u)
  if place or redis.call('ZSCORE', PRE, u) then
    if tonumber(redis.call('ZSCORE', SEEN, u) or '0') < cutoff then
      abandon(u)
      return {'expired', 'abandoned'}
    end
    redis.call('ZADD', SEEN, now, u)
    if not place then return {'pre_queue'} end
    local ahead = redis.call('ZRANK', QUEUE, u)
    -- While the pre-queue is being moved in, every fan still in it is ahead of FIFO arrivals.
    if tonumber(place) >= tonumber(redis.call('HGET', META, 'seal_next') or '0') then
      ahead = ahead + redis.call('ZCARD', PRE)
    end
    return {'waiting', place, ahead}
  end
  local why = redis.call('HGET', GONE, u)
  if why then return {'expired', why} end
  return {'none'}
end

-- Fixed-window limits folded into the call they guard, so a join or a status check is one
-- round trip: KEYS[14] and KEYS[15] count this account's and this IP's calls to the sale.
-- Returns the milliseconds to wait when either limit is exceeded, else 0.
local function over_limit(per_account, per_ip, window)
  local wait = 0
  for i, limit in ipairs({per_account, per_ip}) do
    local k = KEYS[13 + i]
    local n = redis.call('INCR', k)
    local ttl = redis.call('PTTL', k)
    if n == 1 or ttl < 0 then
      redis.call('PEXPIRE', k, window)
      ttl = window
    end
    if n > limit then wait = math.max(wait, ttl) end
  end
  return wait
end

local function ewma(k, now, tau_ms, measure)
  local s = redis.call('HMGET', STATS, 'ewma', 'ewma_ms')
  if not measure then
    redis.call('HSET', STATS, 'ewma_ms', now)
    return
  end
  local dt = math.max(1, now - tonumber(s[2] or now))
  local e = tonumber(s[1] or '0')
  e = e + (1 - math.exp(-dt / tau_ms)) * (k * 1000 / dt - e)
  redis.call('HSET', STATS, 'ewma', e, 'ewma_ms', now)
end
"""

# ARGV: grace_ms, user... -> {head, status_of(user)...} or {} when the sale is unknown.
_STATUS = """
local now = now_ms()
local h = head(now)
if not h then return {} end
local out = {h}
if h[1] == 'closed' then return out end
local cutoff = now - tonumber(ARGV[1])
for i = 2, #ARGV do out[#out + 1] = status_of(ARGV[i], now, cutoff) end
return out
"""

# One fan's status check under the rate limits (KEYS 14-15).
# ARGV: grace_ms, user, per-account limit, per-IP limit, window ms
#   -> {'limited', wait ms} | {} (unknown sale) | {head} (closed) | {head, status_of(user)}.
_STATUS_ONE = """
local wait = over_limit(tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
if wait > 0 then return {'limited', wait} end
local now = now_ms()
local h = head(now)
if not h then return {} end
if h[1] == 'closed' then return {h} end
return {h, status_of(ARGV[2], now, now - tonumber(ARGV[1]))}
"""

# ARGV: grace_ms, user, draw key, pre-queue window ms, per-account limit, per-IP limit,
# window ms -> {head, kind, status_of(user)} | {'limited', wait ms} | {} (unknown sale).
# kind: new | existing | closed | too_early (status then holds the earliest join time, ms).
_JOIN = """
local wait = over_limit(tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
if wait > 0 then return {'limited', wait} end
local now = now_ms()
local h = head(now)
if not h then return {} end
if h[1] == 'closed' then return {h, 'closed', {}} end
local u = ARGV[2]
local cutoff = now - tonumber(ARGV[1])
local cur = status_of(u, now, cutoff)
if cur[1] == 'admitted' or cur[1] == 'waiting' or cur[1] == 'pre_queue' then
  return {h, 'existing', cur}
end
if h[1] == 'scheduled' then
  local earliest = h[3] - tonumber(ARGV[4])
  if now < earliest then return {h, 'too_early', {earliest}} end
  redis.call('ZADD', PRE, ARGV[3], u)
else
  redis.call('ZADD', QUEUE, redis.call('HINCRBY', META, 'seq', 1), u)
end
redis.call('ZADD', SEEN, now, u)
redis.call('HDEL', GONE, u)
redis.call('HINCRBY', STATS, 'joined', 1)
return {h, 'new', status_of(u, now, cutoff)}
"""

# ARGV: user -> 1 if the fan had a place or an admission (now freed), else 0.
_LEAVE = """
local u = ARGV[1]
local had = redis.call('ZREM', ADM, u) + redis.call('ZREM', QUEUE, u) + redis.call('ZREM', PRE, u)
redis.call('ZREM', UNCLAIMED, u)
redis.call('ZREM', IDLE, u)
redis.call('HDEL', TOKENS, u)
redis.call('ZREM', SEEN, u)
redis.call('HDEL', GONE, u)
if had > 0 then redis.call('HINCRBY', STATS, 'left', 1) end
return math.min(had, 1)
"""

# ARGV: user -> 1 if an admission ended (purchase completed: the slot frees at once).
_RELEASE = """
if redis.call('ZREM', ADM, ARGV[1]) == 0 then return 0 end
redis.call('ZREM', UNCLAIMED, ARGV[1])
redis.call('ZREM', IDLE, ARGV[1])
redis.call('HDEL', TOKENS, ARGV[1])
redis.call('HINCRBY', STATS, 'completed', 1)
return 1
"""

# ARGV: user, token -> 1 if this exact token is the fan's live admission (using it claims it
# and restarts its idle clock).
_VERIFY = """
local now = now_ms()
local exp = redis.call('ZSCORE', ADM, ARGV[1])
if not exp or tonumber(exp) <= now then return 0 end
if redis.call('HGET', TOKENS, ARGV[1]) ~= ARGV[2] then return 0 end
if not claim(ARGV[1], now) then return 0 end
touch(ARGV[1], now)
return 1
"""

# Make Redis follow PostgreSQL (the authority); status moves forward only.
# ARGV: status, reason, concert_id, opens_ms, closes_ms, max_active, min_rate, max_rate,
#       initial_rate, retention_ms -> the status Redis now has.
_SYNC = """
local cur = redis.call('HGET', META, 'status')
if cur == 'closed' then return cur end
redis.call('HSET', META, 'concert_id', ARGV[3], 'opens_ms', ARGV[4], 'closes_ms', ARGV[5],
  'max_active', ARGV[6], 'min_rate', ARGV[7], 'max_rate', ARGV[8])
redis.call('HSETNX', META, 'control', 'auto')
redis.call('SET', RATE, ARGV[9], 'NX')
local want = ARGV[1]
if want == 'scheduled' then
  if not cur then redis.call('HSET', META, 'status', 'scheduled') end
elseif want == 'open' then
  if cur ~= 'open' then
    -- Places 1..N are reserved for the draw; arrivals from now on are FIFO after them.
    local now = now_ms()
    local drawn = redis.call('ZCARD', PRE)
    local seq = math.max(drawn, tonumber(redis.call('HGET', META, 'seq') or '0'))
    redis.call('HSET', META, 'status', 'open', 'seq', seq, 'seal_next', 1,
      'bucket_tokens', 0, 'bucket_ms', now)
    -- The configured rate is the prior of the measured one until admissions are observed.
    redis.call('HSET', STATS, 'ewma', redis.call('GET', RATE), 'ewma_ms', now)
  end
else
  if cur then  -- (a sale rebuilt after its retention ran out has no line left to count)
    local queued = redis.call('ZCARD', QUEUE) + redis.call('ZCARD', PRE)
    redis.call('HSET', STATS, 'queued_at_close', queued)
  end
  redis.call('HSET', META, 'status', 'closed', 'reason', ARGV[2])
  redis.call('UNLINK', PRE, QUEUE, SEEN, ADM, TOKENS, GONE, UNCLAIMED, IDLE)
  for _, k in ipairs({META, STATS, RATE, FENCE}) do redis.call('PEXPIRE', k, ARGV[10]) end
end
return redis.call('HGET', META, 'status')
"""

# ARGV: rate, mode -> the sale's status ('' when Redis does not know the sale).
_SET_RATE = """
local status = redis.call('HGET', META, 'status')
if not status then return '' end
redis.call('SET', RATE, ARGV[1], 'KEEPTTL')
redis.call('HSET', META, 'control', ARGV[2])
return status
"""

_STATS = """
local now = now_ms()
local m = redis.call('HMGET', META, 'status', 'reason', 'control', 'stock_state', 'free_units',
  'max_active')
if not m[1] then return {} end
return {m, redis.call('ZCARD', QUEUE), redis.call('ZCARD', PRE),
  redis.call('ZCOUNT', ADM, '(' .. now, '+inf'), redis.call('HGETALL', STATS),
  redis.call('GET', RATE) or '0', redis.call('GET', LEASE) or ''}
"""

# --- admission worker (every mutating script checks the lease: the fencing check) ----------

# ARGV: worker id, ttl_ms -> the lease value `<worker id>:<fence>`, or nil if someone leads.
_ACQUIRE = """
if redis.call('EXISTS', LEASE) == 1 then return false end
local owner = ARGV[1] .. ':' .. redis.call('INCR', FENCE)
redis.call('SET', LEASE, owner, 'PX', ARGV[2])
return owner
"""

_UNLEASE = """
if redis.call('GET', LEASE) == ARGV[1] then return redis.call('DEL', LEASE) end
return 0
"""

# Move up to ARGV[2] drawn fans (lowest secret keys first) to places seal_next... ARGV: owner,
# chunk -> {moved, left in the pre-queue}, or {-1} lease lost, {-2} not open.
_SEAL = """
if redis.call('GET', LEASE) ~= ARGV[1] then return {-1} end
if redis.call('HGET', META, 'status') ~= 'open' then return {-2} end
local popped = redis.call('ZPOPMIN', PRE, ARGV[2])
local place = tonumber(redis.call('HGET', META, 'seal_next') or '1')
for i = 1, #popped, 2 do
  redis.call('ZADD', QUEUE, place, popped[i])
  place = place + 1
end
redis.call('HSET', META, 'seal_next', place)
return {#popped / 2, redis.call('ZCARD', PRE)}
"""

# Renew the lease, expire admissions and abandoned places, refill the token bucket and pick the
# heads to admit. ARGV: owner, lease_ttl_ms, grace_ms, sweep_limit, stock cap of active fans
# (-1 none), burst_s, tau_ms, stock_state, free_units, idle_ms (0: no idle limit).
# -> {'lost'} | {'status', s} | {'wait', now, s} | {'idle', now} | {'admit', now, budget, users}
_PREPARE = """
if redis.call('GET', LEASE) ~= ARGV[1] then return {'lost'} end
redis.call('PEXPIRE', LEASE, ARGV[2])
local now = now_ms()
local status = redis.call('HGET', META, 'status')
if status ~= 'open' and status ~= 'scheduled' then return {'status', status or ''} end
local limit = tonumber(ARGV[4])
for _, u in ipairs(redis.call('ZRANGEBYSCORE', ADM, '-inf', now, 'LIMIT', 0, limit)) do
  end_admission(u, 'admission_expired')
end
for _, u in ipairs(redis.call('ZRANGEBYSCORE', UNCLAIMED, '-inf', now, 'LIMIT', 0, limit)) do
  end_admission(u, 'admission_unclaimed')
end
for _, u in ipairs(redis.call('ZRANGEBYSCORE', IDLE, '-inf', now, 'LIMIT', 0, limit)) do
  end_admission(u, 'admission_idle')
end
local cutoff = now - tonumber(ARGV[3])
for _, u in ipairs(redis.call('ZRANGEBYSCORE', SEEN, '-inf', '(' .. cutoff, 'LIMIT', 0, limit)) do
  abandon(u)
end
redis.call('HSET', META, 'stock_state', ARGV[8], 'free_units', ARGV[9], 'idle_ms', ARGV[10])
-- Admission waits until the whole draw is in line, so nobody overtakes a drawn fan.
if status ~= 'open' or redis.call('EXISTS', PRE) == 1 then return {'wait', now, status} end
local rate = tonumber(redis.call('GET', RATE) or '0')
local b = redis.call('HMGET', META, 'bucket_tokens', 'bucket_ms', 'max_active')
local tokens = 0
if rate > 0 then
  local elapsed = math.max(0, now - tonumber(b[2] or now)) / 1000
  tokens = math.min(math.max(1, rate * tonumber(ARGV[6])), tonumber(b[1] or '0') + rate * elapsed)
end
redis.call('HSET', META, 'bucket_tokens', tokens, 'bucket_ms', now)
local active = redis.call('ZCARD', ADM)
local slots = tonumber(b[3]) - active
local cap = tonumber(ARGV[5])
if cap >= 0 then slots = math.min(slots, cap - active) end
local n = math.min(math.floor(tokens), slots)
local waiting = redis.call('ZCARD', QUEUE)
if n <= 0 or waiting == 0 then
  -- Fans waited and nobody got in: that is a measured rate of 0. An empty line measures nothing.
  ewma(0, now, tonumber(ARGV[7]), waiting > 0)
  return {'idle', now}
end
return {'admit', now, n, redis.call('ZRANGE', QUEUE, 0, n - 1, 'WITHSCORES')}
"""

# ARGV: owner, grace_ms, tau_ms, budget, expiry_ms, arrival_ms, (user, token)... -> admitted
# users, or {-1} lease lost / {-2} not open. Heads that left meanwhile are skipped; stale ones
# abandoned. An admitted fan must collect the token within arrival_ms (0: no such window).
_COMMIT = """
if redis.call('GET', LEASE) ~= ARGV[1] then return {-1} end
if redis.call('HGET', META, 'status') ~= 'open' then return {-2} end
local now = now_ms()
local cutoff = now - tonumber(ARGV[2])
local arrival = tonumber(ARGV[6])
local done = {}
for i = 7, #ARGV, 2 do
  local u = ARGV[i]
  if redis.call('ZSCORE', QUEUE, u) then
    if tonumber(redis.call('ZSCORE', SEEN, u) or '0') < cutoff then
      abandon(u)
    else
      redis.call('ZREM', QUEUE, u)
      redis.call('ZREM', SEEN, u)
      redis.call('ZADD', ADM, ARGV[5], u)
      redis.call('HSET', TOKENS, u, ARGV[i + 1])
      -- The idle clock starts when the fan collects the admission (claim), or now without an
      -- arrival window: a fan who follows the poll advice is never idle before arriving.
      if arrival > 0 and now + arrival < tonumber(ARGV[5]) then
        redis.call('ZADD', UNCLAIMED, now + arrival, u)
      else
        touch(u, now)
      end
      done[#done + 1] = u
    end
  end
end
local k = #done
if k > 0 then
  redis.call('HINCRBYFLOAT', META, 'bucket_tokens', -k)
  redis.call('HINCRBY', STATS, 'admitted_total', k)
end
-- A tick that drained the line below its budget was bound by demand: it measures nothing.
ewma(k, now, tonumber(ARGV[3]), k >= tonumber(ARGV[4]) or redis.call('ZCARD', QUEUE) > 0)
return done
"""

# ARGV: owner, rate -> 1 set, 0 the sale is under manual control, -1 lease lost.
_CONTROL = """
if redis.call('GET', LEASE) ~= ARGV[1] then return -1 end
if redis.call('HGET', META, 'control') ~= 'auto' then return 0 end
redis.call('SET', RATE, ARGV[2])
return 1
"""


class _Script:
    def __init__(self, body: str) -> None:
        self.source = _LIB + body
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, redis: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)


STATUS = _Script(_STATUS)
STATUS_ONE = _Script(_STATUS_ONE)
JOIN = _Script(_JOIN)
LEAVE = _Script(_LEAVE)
RELEASE = _Script(_RELEASE)
VERIFY = _Script(_VERIFY)
SYNC = _Script(_SYNC)
SET_RATE = _Script(_SET_RATE)
STATS = _Script(_STATS)
ACQUIRE = _Script(_ACQUIRE)
UNLEASE = _Script(_UNLEASE)
SEAL = _Script(_SEAL)
PREPARE = _Script(_PREPARE)
COMMIT = _Script(_COMMIT)
CONTROL = _Script(_CONTROL)


def _s(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _f(value: bytes | str | None) -> float | None:
    text = _s(value)
    return float(text) if text else None


@dataclass(frozen=True, slots=True)
class SaleHead:
    """The sale-wide part of a status answer, as Redis sees it."""

    status: str  # scheduled | open | closed (closed also once closes_at has passed)
    reason: str  # close reason when closed
    opens_ms: int
    closes_ms: int
    stock_state: str
    measured_rate: float | None
    rate: float
    now_ms: int


@dataclass(frozen=True, slots=True)
class FanState:
    state: str  # pre_queue | waiting | admitted | expired | none
    place: int | None = None
    ahead: int | None = None
    token: str | None = None
    expires_ms: int | None = None
    reason: str | None = None


def _head(raw: Sequence[Any]) -> SaleHead:
    return SaleHead(
        status=_s(raw[0]),
        reason=_s(raw[1]),
        opens_ms=int(raw[2]),
        closes_ms=int(raw[3]),
        stock_state=_s(raw[4]),
        measured_rate=_f(raw[5]),
        rate=_f(raw[6]) or 0.0,
        now_ms=int(raw[7]),
    )


def _fan(raw: Sequence[Any]) -> FanState:
    state = _s(raw[0])
    if state == "admitted":
        return FanState(state, token=_s(raw[1]) or None, expires_ms=int(float(_s(raw[2]))))
    if state == "waiting":
        return FanState(state, place=int(float(_s(raw[1]))), ahead=int(raw[2]))
    if state == "expired":
        return FanState(state, reason=_s(raw[1]))
    return FanState(state)


@dataclass(frozen=True, slots=True)
class SaleSnapshot:
    """What Redis needs of the `sale` row."""

    status: str
    reason: str
    concert_id: int
    opens_ms: int
    closes_ms: int
    max_active: int
    min_rate: float
    max_rate: float
    initial_rate: float


@dataclass(frozen=True, slots=True)
class JoinResult:
    kind: str  # new | existing | closed | too_early | limited | unknown (sale not in Redis)
    head: SaleHead | None
    fan: FanState | None
    earliest_ms: int | None = None
    wait_ms: int | None = None  # limited: how long until the window resets


@dataclass(frozen=True, slots=True)
class Limits:
    """Fixed-window limits of one call: per account and per IP, within one sale."""

    action: str  # join | status
    user_id: int
    ip: str
    per_account: int
    per_ip: int
    window_ms: int


class Limited(Exception):
    def __init__(self, wait_ms: int) -> None:
        super().__init__(wait_ms)
        self.wait_ms = wait_ms


@dataclass(frozen=True, slots=True)
class RedisStats:
    status: str
    reason: str
    control: str
    stock_state: str
    free_units: int | None
    max_active: int
    queue_length: int
    pre_queue: int
    admitted_active: int
    counters: dict[str, float]
    rate: float
    leader: str | None


@dataclass(frozen=True, slots=True)
class Prepared:
    kind: str  # lost | status | wait | idle | admit
    now_ms: int = 0
    budget: int = 0
    heads: tuple[tuple[int, int], ...] = ()  # (user id, place)
    status: str = ""


def _limit_args(limits: Limits) -> list[int]:
    return [limits.per_account, limits.per_ip, limits.window_ms]


class QueueStore:
    """Waiting-room operations; every method touches one sale's keys (one slot)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.k = keys

    def keys(self, sale_id: int) -> list[str]:
        tag = f"{{sale:{sale_id}}}"
        return [self.k(tag, name) for name in KEY_NAMES]

    def concert_key(self, concert_id: int) -> str:
        return self.k("queue", "concert", concert_id)

    async def sync(self, sale_id: int, snap: SaleSnapshot, *, retention_ms: int) -> str:
        args = [
            snap.status,
            snap.reason,
            snap.concert_id,
            snap.opens_ms,
            snap.closes_ms,
            snap.max_active,
            repr(snap.min_rate),
            repr(snap.max_rate),
            repr(snap.initial_rate),
            retention_ms,
        ]
        return _s(await SYNC(self.redis, self.keys(sale_id), args))

    def limited_keys(self, sale_id: int, limits: Limits) -> list[str]:
        tag = f"{{sale:{sale_id}}}"
        return [
            *self.keys(sale_id),
            self.k(tag, "rl", limits.action, "account", limits.user_id),
            self.k(tag, "rl", limits.action, "ip", limits.ip),
        ]

    async def join(
        self,
        sale_id: int,
        user_id: int,
        *,
        grace_ms: int,
        draw_key: float,
        window_ms: int,
        limits: Limits,
    ) -> JoinResult:
        raw = await JOIN(
            self.redis,
            self.limited_keys(sale_id, limits),
            [grace_ms, user_id, repr(draw_key), window_ms, *_limit_args(limits)],
        )
        if not raw:
            return JoinResult("unknown", None, None)
        if _s(raw[0]) == "limited":
            return JoinResult("limited", None, None, wait_ms=int(raw[1]))
        head, kind, fan = _head(raw[0]), _s(raw[1]), raw[2]
        if kind == "too_early":
            return JoinResult(kind, head, None, earliest_ms=int(fan[0]))
        if kind == "closed":
            return JoinResult(kind, head, None)
        return JoinResult(kind, head, _fan(fan))

    async def status(
        self, sale_id: int, user_ids: Sequence[int], *, grace_ms: int
    ) -> tuple[SaleHead | None, list[FanState]]:
        """States of several fans in one call (the push ticker's batch); closed sales answer
        with the head only."""
        raw = await STATUS(self.redis, self.keys(sale_id), [grace_ms, *user_ids])
        if not raw:
            return None, []
        return _head(raw[0]), [_fan(r) for r in raw[1:]]

    async def status_one(
        self, sale_id: int, user_id: int, *, grace_ms: int, limits: Limits
    ) -> tuple[SaleHead | None, FanState | None]:
        """One fan's status check under the rate limits (raises Limited); the fan's state is
        None when the sale is closed."""
        raw = await STATUS_ONE(
            self.redis,
            self.limited_keys(sale_id, limits),
            [grace_ms, user_id, *_limit_args(limits)],
        )
        if not raw:
            return None, None
        if _s(raw[0]) == "limited":
            raise Limited(int(raw[1]))
        return _head(raw[0]), _fan(raw[1]) if len(raw) > 1 else None

    async def leave(self, sale_id: int, user_id: int) -> bool:
        return bool(await LEAVE(self.redis, self.keys(sale_id), [user_id]))

    async def release(self, sale_id: int, user_id: int) -> bool:
        return bool(await RELEASE(self.redis, self.keys(sale_id), [user_id]))

    async def verify(self, sale_id: int, user_id: int, token: str) -> bool:
        return bool(await VERIFY(self.redis, self.keys(sale_id), [user_id, token]))

    async def set_rate(self, sale_id: int, rate: float, mode: str) -> str:
        return _s(await SET_RATE(self.redis, self.keys(sale_id), [repr(rate), mode]))

    async def rate(self, sale_id: int) -> float:
        return _f(await self.redis.get(self.keys(sale_id)[8])) or 0.0

    async def stats(self, sale_id: int) -> RedisStats | None:
        raw = await STATS(self.redis, self.keys(sale_id), [])
        if not raw:
            return None
        meta, queue_length, pre_queue, active, counters, rate, lease = raw
        flat = [_s(v) for v in counters]
        return RedisStats(
            status=_s(meta[0]),
            reason=_s(meta[1]),
            control=_s(meta[2]) or "auto",
            stock_state=_s(meta[3]) or "unknown",
            free_units=int(float(_s(meta[4]))) if _s(meta[4]) else None,
            max_active=int(_s(meta[5]) or 0),
            queue_length=int(queue_length),
            pre_queue=int(pre_queue),
            admitted_active=int(active),
            counters={flat[i]: float(flat[i + 1]) for i in range(0, len(flat), 2)},
            rate=_f(rate) or 0.0,
            leader=_s(lease) or None,
        )

    # --- admission worker ---------------------------------------------------------------------

    async def acquire(self, sale_id: int, worker_id: str, *, ttl_ms: int) -> str | None:
        owner = await ACQUIRE(self.redis, self.keys(sale_id), [worker_id, ttl_ms])
        return _s(owner) or None

    async def unlease(self, sale_id: int, owner: str) -> None:
        await UNLEASE(self.redis, self.keys(sale_id), [owner])

    async def seal(self, sale_id: int, owner: str, *, chunk: int) -> tuple[int, int] | None:
        """Draw one chunk: (moved, left); None if the lease is lost; (0, 0) if not open."""
        raw = await SEAL(self.redis, self.keys(sale_id), [owner, chunk])
        if int(raw[0]) == -1:
            return None
        if int(raw[0]) == -2:
            return 0, 0
        return int(raw[0]), int(raw[1])

    async def prepare(
        self,
        sale_id: int,
        owner: str,
        *,
        lease_ttl_ms: int,
        grace_ms: int,
        stock_cap: int,
        burst_s: float,
        tau_ms: int,
        stock_state: str,
        free_units: int | None,
        idle_ms: int = 0,
    ) -> Prepared:
        raw = await PREPARE(
            self.redis,
            self.keys(sale_id),
            [
                owner,
                lease_ttl_ms,
                grace_ms,
                SWEEP_LIMIT,
                stock_cap,
                repr(burst_s),
                tau_ms,
                stock_state,
                "" if free_units is None else free_units,
                idle_ms,
            ],
        )
        kind = _s(raw[0])
        if kind == "status":
            return Prepared(kind, status=_s(raw[1]))
        if kind == "wait":
            return Prepared(kind, now_ms=int(raw[1]), status=_s(raw[2]))
        if kind != "admit":
            return Prepared(kind, now_ms=int(raw[1]) if len(raw) > 1 else 0)
        flat = raw[3]
        heads = tuple(
            (int(_s(flat[i])), int(float(_s(flat[i + 1])))) for i in range(0, len(flat), 2)
        )
        return Prepared(kind, now_ms=int(raw[1]), budget=int(raw[2]), heads=heads)

    async def commit(
        self,
        sale_id: int,
        owner: str,
        *,
        grace_ms: int,
        tau_ms: int,
        budget: int,
        expires_ms: int,
        arrival_ms: int,
        tokens: Sequence[tuple[int, str]],
    ) -> list[int] | None:
        """Admit the given heads; None when the lease was lost or the sale is no longer open."""
        args: list[Any] = [owner, grace_ms, tau_ms, budget, expires_ms, arrival_ms]
        for user_id, token in tokens:
            args += [user_id, token]
        raw = await COMMIT(self.redis, self.keys(sale_id), args)
        if raw and isinstance(raw[0], int) and raw[0] < 0:
            return None
        return [int(_s(u)) for u in raw]

    async def control(self, sale_id: int, owner: str, rate: float) -> int:
        return int(await CONTROL(self.redis, self.keys(sale_id), [owner, repr(rate)]))
