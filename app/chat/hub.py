"""Per-process fan-out: one Redis pub/sub connection per API process, subscribed to the rooms
that have local subscribers, delivering each published entry to them in memory; and the
process's presence entries, refreshed so that a dead process's users stop counting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from redis.asyncio.client import PubSub

from app.chat import service
from app.chat.errors import Banned
from app.chat.metrics import CHAT_DELIVERIES
from app.chat.schemas import ChatMessage
from app.core.problems import ProblemError
from app.core.state import AppState
from app.core.tasks import stop_task

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Delivery:
    """One published entry, with its JSON body encoded once for all local subscribers."""

    message: ChatMessage
    body: bytes
    # The MESSAGE frame after its per-subscription headers, built by the first session that
    # sends it: 1,000 subscribers cost one encoding, not 1,000.
    tail: str | None = None


class Subscriber(Protocol):
    user_id: int

    def deliver(self, subscription_id: str, delivery: Delivery) -> None: ...

    def kick(self, error: ProblemError) -> None: ...


class ChatHub:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.store = service.store_of(state)
        self.instance = uuid.uuid4().hex[:12]
        self._rooms: dict[str, dict[tuple[Subscriber, str], None]] = {}
        self._users: dict[str, Counter[int]] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def _member(self, user_id: int) -> str:
        return f"{user_id}:{self.instance}"

    async def join(self, room: str, subscriber: Subscriber, subscription_id: str) -> None:
        """Register a subscription; returns once the room's channel is subscribed, so nothing
        published afterwards is missed (history read after this overlaps, never gaps)."""
        self._rooms.setdefault(room, {})[(subscriber, subscription_id)] = None
        users = self._users.setdefault(room, Counter())
        users[subscriber.user_id] += 1
        if users[subscriber.user_id] == 1:
            await self.store.presence_refresh(
                room, [self._member(subscriber.user_id)], self.state.settings.chat_presence_ttl_s
            )
        channel = self.store.channel(room)
        async with self._lock:
            if self._pubsub is None:
                self._pubsub = self.state.redis.pubsub()
            if channel not in self._confirmed:
                self._confirmed[channel] = asyncio.Event()
                await self._pubsub.subscribe(channel)
            if not self._tasks:
                self._tasks = [
                    asyncio.create_task(self._read()),
                    asyncio.create_task(self._refresh_presence()),
                ]
        await asyncio.wait_for(self._confirmed[channel].wait(), timeout=10)

    async def leave(self, room: str, subscriber: Subscriber, subscription_id: str) -> None:
        local = self._rooms.get(room, {})
        key = (subscriber, subscription_id)
        if key in local:
            del local[key]
            users = self._users[room]
            users[subscriber.user_id] -= 1
            if users[subscriber.user_id] <= 0:
                del users[subscriber.user_id]
                with contextlib.suppress(Exception):  # the entry runs out if Redis is away
                    await self.store.presence_remove(room, self._member(subscriber.user_id))
        if not local and room in self._rooms:
            del self._rooms[room]
            self._users.pop(room, None)
            channel = self.store.channel(room)
            async with self._lock:
                if room not in self._rooms and self._pubsub is not None:
                    self._confirmed.pop(channel, None)
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        assert self._pubsub is not None
        prefix = self.store.channel("")
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                # redis-py reconnects and resubscribes on the next call.
                log.warning("chat_pubsub_error", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if msg is None:
                continue
            channel = msg["channel"].decode()
            if msg["type"] == "subscribe":
                event = self._confirmed.get(channel)
                if event is not None:
                    event.set()
            elif msg["type"] == "message":
                try:
                    self._dispatch(channel.removeprefix(prefix), json.loads(msg["data"]))
                except Exception:
                    log.exception("chat_dispatch_failed", channel=channel)

    def _dispatch(self, room: str, payload: dict[str, Any]) -> None:
        local = self._rooms.get(room)
        if not local:
            return
        if payload["type"] == "ban":
            for subscriber, _ in list(local):
                if subscriber.user_id == payload["user_id"]:
                    subscriber.kick(Banned(f"You were banned from {room}."))
            return
        entry = payload["message"]
        if "id" in payload:
            message = service.message_of(payload["id"], entry)
        else:
            message = ChatMessage.model_validate(entry)
        delivery = Delivery(message, message.model_dump_json().encode())
        for subscriber, subscription_id in list(local):
            subscriber.deliver(subscription_id, delivery)
        CHAT_DELIVERIES.inc(len(local))

    async def _refresh_presence(self) -> None:
        ttl = self.state.settings.chat_presence_ttl_s
        while True:
            await asyncio.sleep(ttl / 3)
            for room, users in list(self._users.items()):
                try:
                    await self.store.presence_refresh(room, [self._member(u) for u in users], ttl)
                except Exception:
                    log.warning("chat_presence_refresh_failed", room=room, exc_info=True)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await stop_task(task, name="chat_hub")
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
