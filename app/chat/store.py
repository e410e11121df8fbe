"""The chat domain's Redis store: history streams, room channels, moderation and presence.

Redis is this domain's only store (docs/decisions.md): production Redis runs with AOF, so
sanctions and settings survive a restart; history is bounded per room.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from app.core.redis import Keys

# XADD and PUBLISH in one script: every process sees messages in exactly the stream's order,
# and the published copy carries the id the stream assigned.
_APPEND = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2])
redis.call('PUBLISH', ARGV[3], '{"type":"message","id":"' .. id .. '","message":' .. ARGV[2] .. '}')
return id
"""
_DELETE = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""
_SANCTIONS = ("mute", "ban")


class ChatStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def channel(self, room: str) -> str:
        return self.keys("chat", "room", room)

    def _history(self, room: str) -> str:
        return self.keys("chat", "history", room)

    async def append(self, room: str, entry: dict[str, Any], *, keep: int) -> str:
        """Store an entry in the room's history and publish it; return its stream id."""
        raw = await self.redis.eval(
            _APPEND, 1, self._history(room), keep, json.dumps(entry), self.channel(room)
        )
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def publish(self, room: str, payload: dict[str, Any]) -> None:
        await self.redis.publish(self.channel(room), json.dumps(payload))

    async def delete(self, room: str, message_id: str, payload: dict[str, Any]) -> bool:
        """Remove a stored entry and, if it existed, publish `payload` to the room."""
        done = await self.redis.eval(
            _DELETE, 1, self._history(room), message_id, self.channel(room), json.dumps(payload)
        )
        return bool(done)

    async def history(
        self, room: str, *, count: int, before: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """The newest `count` entries older than `before`, oldest first."""
        top = "+"
        if before is not None:
            ms, _, seq = before.partition("-")
            if int(ms) == 0 and int(seq) == 0:
                return []  # nothing is older than the first possible id
            top = f"({int(ms)}-{int(seq)}"
        if count <= 0:
            return []
        rows: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrevrange(
            self._history(room), max=top, min="-", count=count
        )  # type: ignore[assignment]
        return [(rid.decode(), json.loads(fields[b"m"])) for rid, fields in reversed(rows)]

    # Moderation: one key per (room, user) and sanction kind, expiring with the sanction.
    def _sanction(self, kind: str, room: str, user_id: int) -> str:
        return self.keys("chat", kind, room, user_id)

    async def set_sanction(
        self, kind: str, room: str, user_id: int, record: dict[str, Any], ttl_s: int | None
    ) -> None:
        await self.redis.set(self._sanction(kind, room, user_id), json.dumps(record), ex=ttl_s)

    async def clear_sanction(self, kind: str, room: str, user_id: int) -> bool:
        return bool(await self.redis.delete(self._sanction(kind, room, user_id)))

    async def sanctions(self, room: str, user_id: int) -> dict[str, dict[str, Any]]:
        raws = await self.redis.mget([self._sanction(k, room, user_id) for k in _SANCTIONS])
        return {k: json.loads(raw) for k, raw in zip(_SANCTIONS, raws, strict=True) if raw}

    def _settings(self, room: str) -> str:
        return self.keys("chat", "settings", room)

    async def slow_mode_s(self, room: str) -> int:
        raw = await self.redis.hget(self._settings(room), "slow_mode_s")
        return int(raw) if raw else 0

    async def set_slow_mode_s(self, room: str, seconds: int) -> None:
        await self.redis.hset(self._settings(room), "slow_mode_s", seconds)

    async def take_slow_slot(self, room: str, user_id: int, seconds: int) -> int | None:
        """Claim the user's next message in a slow room; return the ms to wait if too soon."""
        key = self.keys("chat", "slow", room, user_id)
        if await self.redis.set(key, 1, nx=True, px=seconds * 1000):
            return None
        return max(1, int(await self.redis.pttl(key)))

    async def room_known(self, room: str) -> bool:
        return bool(await self.redis.exists(self.keys("chat", "known", room)))

    async def remember_room(self, room: str, ttl_s: float) -> None:
        await self.redis.set(self.keys("chat", "known", room), 1, px=max(1, int(ttl_s * 1000)))

    # Presence: a sorted set per room of `<user>:<process>` scored by expiry time. Each process
    # refreshes its own entries; a dead process's entries run out instead of counting forever.
    def _presence(self, room: str) -> str:
        return self.keys("chat", "presence", room)

    async def presence_refresh(self, room: str, members: list[str], ttl_s: float) -> None:
        if not members:
            return
        expires = time.time() + ttl_s
        key = self._presence(room)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, dict.fromkeys(members, expires))
            pipe.expire(key, int(ttl_s) + 60)
            await pipe.execute()

    async def presence_remove(self, room: str, member: str) -> None:
        await self.redis.zrem(self._presence(room), member)

    async def online_users(self, room: str) -> int:
        key = self._presence(room)
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zrangebyscore(key, now, "+inf")
            _, members = await pipe.execute()
        return len({m.split(b":", 1)[0] for m in members})
