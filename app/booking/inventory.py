"""Redis inventory of strategy F `redis_claim`: seats and general-admission stock per concert.

Keys (all carry the concert hash tag, so every script stays in one Redis Cluster slot):
- `<p>:{concert:<id>}:inv:meta`   hash: loaded, version (load generation), epoch (bumped by every
  change), seats (count), ga (0/1), loaded_at, paused (set while a repair waits for quiet)
- `<p>:{concert:<id>}:inv:seats`  hash: seat id -> "1" available / "0" claimed, held or sold
- `<p>:{concert:<id>}:inv:ga`     string: general-admission tickets left
- `<p>:{concert:<id>}:inv:claims` hash: request id -> `s:<ts>:<seat,ids>` | `g:<ts>:<n>` |
  `x:<ts>:` (tombstone: withdrawn because the broker did not acknowledge the request)
- `<p>:{concert:<id>}:inv:lock`   loader lock (SET NX PX)
- `<p>:booking-request:<id>`      status record of an accepted request for its owner's polls

PostgreSQL stays the authority. Redis is rebuilt from a REPEATABLE READ snapshot minus the claims
that are not yet reflected in it; the `epoch` check makes the rebuild atomic with respect to
concurrent claims and settlements (it retries, and pauses claims if it cannot get a quiet moment).
What is lost with Redis: claims of requests still in Kafka (their seats look free until the
consumer writes them; a fan racing for them gets 202 and then "rejected") and the pending-status
records (polls answer 404 until the consumer has processed the request).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import NoScriptError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.redis import Keys

ClaimStatus = Literal[
    "claimed", "duplicate", "not_loaded", "busy", "taken", "sold_out", "no_ga", "foreign"
]
ClaimState = Literal["present", "withdrawn", "absent"]
# a: accepted (drop the claim; re-take if it was withdrawn meanwhile or lost with Redis),
# r: rejected (give the payload back), d: drop the claim record only.
SettleAction = Literal["a", "r", "d"]

LOCK_TTL_MS = 30_000
# Tombstones of requests whose produce failed are dropped by a rebuild after this long: by then
# the broker has either delivered the message (and the consumer removed the tombstone) or lost it.
TOMBSTONE_MAX_AGE_S = 3600

_LIB = """
local function apply(payload, value)
  local kind, rest = string.match(payload, '^(%a):(.*)$')
  if kind == 's' then
    for id in string.gmatch(rest, '%d+') do
      if redis.call('HEXISTS', KEYS[2], id) == 1 then redis.call('HSET', KEYS[2], id, value) end
    end
  elseif kind == 'g' and rest ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
    local n = tonumber(rest)
    if value == '1' then
      redis.call('INCRBY', KEYS[3], n)
    else
      redis.call('SET', KEYS[3], math.max(0, tonumber(redis.call('GET', KEYS[3])) - n))
    end
  end
end
local function payload_of(claim)
  local kind, rest = string.match(claim, '^(%a):%d+:(.*)$')
  return kind .. ':' .. rest
end
"""

# KEYS: meta, seats, ga, claims. ARGV: request id, now, quantity, seat ids (none = GA).
_CLAIM = """
local meta = KEYS[1]
if redis.call('HGET', meta, 'loaded') ~= '1' then return {0} end
if redis.call('HGET', meta, 'paused') == '1' then return {5} end
local version = tonumber(redis.call('HGET', meta, 'version'))
local prev = redis.call('HGET', KEYS[4], ARGV[1])
if prev and string.sub(prev, 1, 1) ~= 'x' then return {2, version} end
local claim
if #ARGV == 3 then
  if redis.call('HGET', meta, 'ga') ~= '1' then return {-3} end
  local stock = redis.call('GET', KEYS[3])
  if not stock then redis.call('HDEL', meta, 'loaded') return {0} end
  local n = tonumber(ARGV[3])
  if tonumber(stock) < n then return {-2, tonumber(stock)} end
  redis.call('DECRBY', KEYS[3], n)
  claim = 'g:' .. ARGV[2] .. ':' .. n
else
  if tonumber(redis.call('HGET', meta, 'seats') or '0') > 0
     and redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('HDEL', meta, 'loaded')
    return {0}
  end
  local foreign, taken = {-4}, {-1}
  for i = 4, #ARGV do
    local s = redis.call('HGET', KEYS[2], ARGV[i])
    if not s then foreign[#foreign + 1] = tonumber(ARGV[i])
    elseif s ~= '1' then taken[#taken + 1] = tonumber(ARGV[i]) end
  end
  if #foreign > 1 then return foreign end
  if #taken > 1 then return taken end
  for i = 4, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], '0') end
  claim = 's:' .. ARGV[2] .. ':' .. table.concat(ARGV, ',', 4)
end
redis.call('HSET', KEYS[4], ARGV[1], claim)
redis.call('HINCRBY', meta, 'epoch', 1)
return {1, version}
"""

# KEYS: meta, seats, ga, claims. ARGV: request id, now, tombstone (1/0).
_WITHDRAW = (
    _LIB
    + """
local claim = redis.call('HGET', KEYS[4], ARGV[1])
if not claim or string.sub(claim, 1, 1) == 'x' then return 0 end
apply(payload_of(claim), '1')
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[4], ARGV[1], 'x:' .. ARGV[2] .. ':')
else
  redis.call('HDEL', KEYS[4], ARGV[1])
end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return 1
"""
)

# KEYS: meta, seats, ga, claims. ARGV: (request id, action, payload) triples.
_SETTLE = (
    _LIB
    + """
for i = 1, #ARGV, 3 do
  local rid, action, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local claim = redis.call('HGET', KEYS[4], rid)
  local withdrawn = claim and string.sub(claim, 1, 1) == 'x'
  if action == 'a' then
    -- GA is not re-taken for a lost claim: a rebuild may already count it (safe direction).
    if withdrawn or (not claim and string.sub(payload, 1, 1) == 's') then apply(payload, '0') end
  elseif action == 'r' and claim and not withdrawn then
    apply(payload, '1')
  end
  if claim then redis.call('HDEL', KEYS[4], rid) end
end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return 1
"""
)

# KEYS: meta, seats, ga. ARGV: payload. A released hold gives its seats or stock back.
_GIVE_BACK = (
    _LIB
    + """
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
if redis.call('HGET', KEYS[1], 'loaded') ~= '1' then return 0 end
apply(ARGV[1], '1')
return 1
"""
)

# KEYS: meta, seats, ga, claims. ARGV: JSON spec computed from a DB snapshot at `epoch`.
_REBUILD = """
local spec = cjson.decode(ARGV[1])
if (redis.call('HGET', KEYS[1], 'epoch') or '0') ~= spec.epoch then return -1 end
redis.call('DEL', KEYS[2], KEYS[3])
local function put(ids, value)
  local args = {}
  for _, id in ipairs(ids) do
    args[#args + 1] = id
    args[#args + 1] = value
    if #args >= 1000 then redis.call('HSET', KEYS[2], unpack(args)) args = {} end
  end
  if #args > 0 then redis.call('HSET', KEYS[2], unpack(args)) end
end
put(spec.available, '1')
put(spec.taken, '0')
if spec.ga ~= '' then redis.call('SET', KEYS[3], spec.ga) end
for _, rid in ipairs(spec.drop) do redis.call('HDEL', KEYS[4], rid) end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'loaded', '1', 'seats', #spec.available + #spec.taken,
  'ga', spec.ga ~= '' and '1' or '0', 'loaded_at', spec.now)
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return version
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Script:
    """EVALSHA with a load on NOSCRIPT; no client bound, so one instance serves every process."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis script id

    async def __call__(self, redis: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)


CLAIM = _Script(_CLAIM)
WITHDRAW = _Script(_WITHDRAW)
SETTLE = _Script(_SETTLE)
GIVE_BACK = _Script(_GIVE_BACK)
REBUILD = _Script(_REBUILD)
UNLOCK = _Script(_UNLOCK)


class InventoryUnavailable(Exception):
    """The inventory could not be loaded or rebuilt in time."""


@dataclass(frozen=True, slots=True)
class ClaimResult:
    status: ClaimStatus
    version: int = 0
    seat_ids: tuple[int, ...] = ()  # taken or foreign seats
    stock: int = 0  # tickets left when sold out


@dataclass(frozen=True, slots=True)
class Claim:
    request_id: str
    kind: Literal["s", "g", "x"]
    at: int
    seat_ids: tuple[int, ...] = ()
    quantity: int = 0

    @classmethod
    def parse(cls, request_id: str, raw: str) -> Claim:
        kind, at, rest = raw.split(":", 2)
        if kind == "s":
            return cls(request_id, "s", int(at), tuple(int(s) for s in rest.split(",")))
        if kind == "g":
            return cls(request_id, "g", int(at), quantity=int(rest))
        return cls(request_id, "x", int(at))


@dataclass(frozen=True, slots=True)
class Settlement:
    request_id: uuid.UUID
    action: SettleAction
    general_admission: bool
    seat_ids: tuple[int, ...] = ()
    quantity: int = 0

    @property
    def payload(self) -> str:
        if self.general_admission:
            return f"g:{self.quantity}"
        return "s:" + ",".join(str(s) for s in self.seat_ids)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The database's view (one REPEATABLE READ snapshot) plus the claims read after it."""

    seats: dict[int, bool]  # seat id -> available
    ga_stock: int | None
    claims: list[Claim]
    outcomes: dict[str, str]  # request id -> inbox outcome, for claim ids already processed

    def outstanding(self) -> list[Claim]:
        """Claims Redis still subtracts: not processed yet, or rejected and not yet given back."""
        return [
            c for c in self.claims if c.kind != "x" and self.outcomes.get(c.request_id) != "held"
        ]

    def expected(self) -> tuple[set[int], int | None]:
        """Available seats and GA stock Redis must show."""
        outstanding = self.outstanding()
        claimed = {s for c in outstanding for s in c.seat_ids}
        available = {s for s, free in self.seats.items() if free} - claimed
        if self.ga_stock is None:
            return available, None
        return available, max(0, self.ga_stock - sum(c.quantity for c in outstanding))


@dataclass(slots=True)
class Drift:
    """Redis inventory vs. the database for one concert."""

    concert_id: int
    loaded: bool
    version: int | None = None
    redis_available: int = 0
    expected_available: int = 0
    only_in_redis: list[int] = field(default_factory=list)  # Redis free, database not
    missing_in_redis: list[int] = field(default_factory=list)  # database free, Redis not
    redis_ga: int | None = None
    expected_ga: int | None = None
    outstanding_claims: int = 0
    oldest_claim_age_s: float | None = None
    stable: bool = True  # no change in Redis while it was compared
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return (
            self.loaded
            and not self.only_in_redis
            and not self.missing_in_redis
            and self.redis_ga == self.expected_ga
        )


@dataclass(frozen=True, slots=True)
class RequestStatus:
    """What a fan's poll of an accepted request answers (authoritative copy: booking_inbox)."""

    request_id: uuid.UUID
    user_id: int
    concert_id: int
    status: Literal["pending", "held", "rejected"]
    booking_id: int | None = None
    reason: str | None = None


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Inventory:
    """Redis inventory operations; every method touches one concert's keys (one slot)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.k = keys

    def keys(self, concert_id: int) -> list[str]:
        tag = f"{{concert:{concert_id}}}"
        return [self.k(tag, "inv", part) for part in ("meta", "seats", "ga", "claims")]

    def lock_key(self, concert_id: int) -> str:
        return self.k(f"{{concert:{concert_id}}}", "inv", "lock")

    def request_key(self, request_id: uuid.UUID) -> str:
        return self.k("booking-request", request_id)

    # --- API side ------------------------------------------------------------------------

    async def claim(
        self, concert_id: int, request_id: uuid.UUID, seat_ids: Sequence[int], quantity: int
    ) -> ClaimResult:
        """Atomically take all `seat_ids` (or `quantity` GA tickets) under `request_id`."""
        raw = await CLAIM(
            self.redis,
            self.keys(concert_id),
            [str(request_id), int(time.time()), quantity, *seat_ids],
        )
        code = int(raw[0])
        rest = [int(x) for x in raw[1:]]
        if code == 1:
            return ClaimResult("claimed", version=rest[0])
        if code == 2:
            return ClaimResult("duplicate", version=rest[0])
        if code == 0:
            return ClaimResult("not_loaded")
        if code == 5:
            return ClaimResult("busy")
        if code == -1:
            return ClaimResult("taken", seat_ids=tuple(rest))
        if code == -2:
            return ClaimResult("sold_out", stock=rest[0])
        if code == -3:
            return ClaimResult("no_ga")
        return ClaimResult("foreign", seat_ids=tuple(rest))

    async def withdraw(self, concert_id: int, request_id: uuid.UUID, *, tombstone: bool) -> bool:
        """Undo a claim whose request the broker did not acknowledge.

        The message may still arrive (an ack timeout is ambiguous): a tombstone makes the consumer
        reject it. Without one (an idempotent retry will resend it) it is applied normally."""
        done = await WITHDRAW(
            self.redis,
            self.keys(concert_id),
            [str(request_id), int(time.time()), "1" if tombstone else "0"],
        )
        return bool(done)

    async def give_back(
        self,
        concert_id: int,
        *,
        general_admission: bool,
        seat_ids: Sequence[int] = (),
        quantity: int = 0,
    ) -> None:
        """Return a released (expired or cancelled) hold to the inventory, if it is loaded."""
        settlement = Settlement(uuid.UUID(int=0), "r", general_admission, tuple(seat_ids), quantity)
        await GIVE_BACK(self.redis, self.keys(concert_id)[:3], [settlement.payload])

    async def loaded(self, concert_id: int) -> bool:
        return await self.redis.hget(self.keys(concert_id)[0], "loaded") == b"1"

    async def ensure_loaded(
        self, engine: AsyncEngine, concert_id: int, *, timeout_s: float
    ) -> None:
        """Load the concert's inventory from PostgreSQL once; concurrent callers wait for it."""
        deadline = time.monotonic() + timeout_s
        token = secrets.token_hex(8)
        lock = self.lock_key(concert_id)
        while True:
            if await self.redis.set(lock, token, nx=True, px=LOCK_TTL_MS):
                try:
                    if not await self.loaded(concert_id):
                        await self.rebuild(engine, concert_id, timeout_s=timeout_s)
                finally:
                    await UNLOCK(self.redis, [lock], [token])
                return
            if await self.loaded(concert_id):
                return
            if time.monotonic() >= deadline:
                raise InventoryUnavailable(f"inventory of concert {concert_id} is still loading")
            await asyncio.sleep(0.02)

    # --- consumer side ------------------------------------------------------------------

    async def claim_states(
        self, concert_id: int, request_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ClaimState]:
        raw = await self.redis.hmget(self.keys(concert_id)[3], [str(r) for r in request_ids])
        states: dict[uuid.UUID, ClaimState] = {}
        for rid, value in zip(request_ids, raw, strict=True):
            if value is None:
                states[rid] = "absent"
            else:
                states[rid] = "withdrawn" if (_s(value) or "").startswith("x:") else "present"
        return states

    async def settle(self, concert_id: int, settlements: Sequence[Settlement]) -> None:
        """After the database commit: drop accepted claims, give rejected ones back."""
        args: list[str] = []
        for s in settlements:
            args += [str(s.request_id), s.action, s.payload]
        await SETTLE(self.redis, self.keys(concert_id), args)

    async def save_statuses(self, statuses: Iterable[RequestStatus], ttl_s: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for st in statuses:
                body = {
                    "user_id": st.user_id,
                    "concert_id": st.concert_id,
                    "status": st.status,
                    "booking_id": st.booking_id,
                    "reason": st.reason,
                }
                pipe.set(self.request_key(st.request_id), json.dumps(body), ex=ttl_s)
            await pipe.execute()

    async def load_status(self, request_id: uuid.UUID) -> RequestStatus | None:
        raw = await self.redis.get(self.request_key(request_id))
        if raw is None:
            return None
        body = json.loads(raw)
        return RequestStatus(
            request_id,
            body["user_id"],
            body["concert_id"],
            body["status"],
            body.get("booking_id"),
            body.get("reason"),
        )

    async def delete_status(self, request_id: uuid.UUID) -> None:
        await self.redis.delete(self.request_key(request_id))

    # --- rebuild and reconciliation ------------------------------------------------------

    async def _epoch(self, concert_id: int) -> str:
        return _s(await self.redis.hget(self.keys(concert_id)[0], "epoch")) or "0"

    async def snapshot(self, engine: AsyncEngine, concert_id: int) -> Snapshot:
        """Seats and stock from one database snapshot, the claims, and which claims the
        snapshot already reflects (their inbox rows are visible in it)."""
        async with engine.connect() as raw_conn:
            conn = await raw_conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                seats = (
                    await conn.execute(
                        text("SELECT id, status = 'available' FROM seat WHERE concert_id = :c"),
                        {"c": concert_id},
                    )
                ).all()
                ga = await conn.scalar(
                    text("SELECT stock FROM ga_inventory WHERE concert_id = :c"), {"c": concert_id}
                )
                # Read after the snapshot began: a claim settled before it is reflected in it.
                raw_claims = await self.redis.hgetall(self.keys(concert_id)[3])
                claims = [Claim.parse(_s(k) or "", _s(v) or "") for k, v in raw_claims.items()]
                ids = [uuid.UUID(c.request_id) for c in claims if c.kind != "x"]
                outcomes = (
                    await conn.execute(
                        text(
                            "SELECT request_id, outcome FROM booking_inbox"
                            " WHERE request_id = ANY(:ids)"
                        ),
                        {"ids": ids},
                    )
                ).all()
        return Snapshot(
            seats={r[0]: bool(r[1]) for r in seats},
            ga_stock=ga,
            claims=claims,
            outcomes={str(r[0]): r[1] for r in outcomes},
        )

    async def rebuild(self, engine: AsyncEngine, concert_id: int, *, timeout_s: float) -> int:
        """Write the inventory from the database; returns the new load version.

        Retries while claims or settlements change Redis under it; after a few tries it pauses
        new claims (they wait, then get 503) until a quiet moment lets it through."""
        deadline = time.monotonic() + timeout_s
        meta = self.keys(concert_id)[0]
        paused = False
        attempt = 0
        try:
            while True:
                epoch = await self._epoch(concert_id)
                snap = await self.snapshot(engine, concert_id)
                available, ga = snap.expected()
                cutoff = time.time() - TOMBSTONE_MAX_AGE_S
                spec = {
                    "epoch": epoch,
                    "now": str(int(time.time())),
                    "available": [str(s) for s in sorted(available)],
                    "taken": [str(s) for s in sorted(set(snap.seats) - available)],
                    "ga": "" if ga is None else str(ga),
                    "drop": [c.request_id for c in snap.claims if c.kind == "x" and c.at < cutoff],
                }
                version = int(await REBUILD(self.redis, self.keys(concert_id), [json.dumps(spec)]))
                if version >= 0:
                    return version
                attempt += 1
                if time.monotonic() >= deadline:
                    raise InventoryUnavailable(
                        f"inventory of concert {concert_id} kept changing; rebuild gave up"
                    )
                if attempt >= 3 and not paused:
                    await self.redis.hset(meta, "paused", "1")
                    paused = True
                await asyncio.sleep(min(0.2, 0.01 * attempt))
        finally:
            if paused:
                await self.redis.hdel(meta, "paused")

    async def compare(self, engine: AsyncEngine, concert_id: int, *, tries: int = 20) -> Drift:
        """Differences between Redis and the database (with outstanding claims accounted for)."""
        keys = self.keys(concert_id)
        for attempt in range(tries):
            epoch = await self._epoch(concert_id)
            snap = await self.snapshot(engine, concert_id)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys[0])
                pipe.hgetall(keys[1])
                pipe.get(keys[2])
                meta_raw, seats_raw, ga_raw = await pipe.execute()
            meta = {_s(k): _s(v) for k, v in meta_raw.items()}
            stable = (meta.get("epoch") or "0") == epoch
            if stable or attempt == tries - 1:
                break
            await asyncio.sleep(0.05)
        available, expected_ga = snap.expected()
        outstanding = snap.outstanding()
        now = time.time()
        drift = Drift(
            concert_id=concert_id,
            loaded=meta.get("loaded") == "1",
            version=int(meta.get("version") or 0) or None,
            expected_available=len(available),
            expected_ga=expected_ga,
            outstanding_claims=len(outstanding),
            oldest_claim_age_s=max((now - c.at for c in outstanding), default=None),
            stable=stable,
        )
        if not drift.loaded:
            return drift
        redis_free = {int(k) for k, v in seats_raw.items() if v == b"1"}
        drift.redis_available = len(redis_free)
        drift.only_in_redis = sorted(redis_free - available)
        drift.missing_in_redis = sorted(available - redis_free)
        drift.redis_ga = int(ga_raw) if ga_raw is not None else None
        return drift

    async def concerts_in_redis(self) -> set[int]:
        """Concerts with an inventory in Redis (SCAN; on a cluster, run it per node)."""
        found: set[int] = set()
        async for key in self.redis.scan_iter(match=self.k("{concert:*}", "inv", "meta")):
            tag = (_s(key) or "").split("{concert:", 1)[1].split("}", 1)[0]
            if tag.isdigit():
                found.add(int(tag))
        return found


async def reconcile(
    inventory: Inventory,
    engine: AsyncEngine,
    concert_ids: Iterable[int],
    *,
    repair: bool,
    timeout_s: float = 10.0,
) -> list[Drift]:
    """Compare each concert's Redis inventory with the database; rebuild it where it drifted."""
    reports = []
    for concert_id in sorted(set(concert_ids)):
        drift = await inventory.compare(engine, concert_id)
        if repair and not drift.clean:
            await inventory.rebuild(engine, concert_id, timeout_s=timeout_s)
            drift = await inventory.compare(engine, concert_id)
            drift.repaired = True
        reports.append(drift)
    return reports


async def concerts_using_redis_claim(inventory: Inventory, engine: AsyncEngine) -> set[int]:
    """Concerts that strategy F touched: an inventory in Redis or requests in the inbox."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT DISTINCT concert_id FROM booking_inbox"
                    " UNION SELECT DISTINCT concert_id FROM booking WHERE strategy = 'redis_claim'"
                )
            )
        ).all()
    return {r[0] for r in rows} | await inventory.concerts_in_redis()
