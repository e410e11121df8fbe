"""Push channel: `GET /sales/{id}/queue/me/events` as Server-Sent Events.

Redis cost does not grow with connections one call each: every API process runs one ticker per
sale with local subscribers, which asks Redis about all of them in one script call per tick
(chunked at `STATUS_BATCH`) and fans the answers out in memory. That call also counts as the
subscribers' status check, so a fan with an open stream keeps the place without polling.
A stream ends after its terminal event (admitted with the token, expired, closed, sold out),
when the fan no longer has a place, or after `queue_push_max_s` (the client reconnects; this
keeps connections spread over processes and load balancers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI

from app.core import sse
from app.core.state import AppState
from app.queue import service
from app.queue.metrics import PUSH_SUBSCRIBERS, PUSH_TICKS
from app.queue.schemas import QueueStatus
from app.queue.store import STATUS_BATCH, QueueStore

log = structlog.get_logger(__name__)

TERMINAL = frozenset({"admitted", "expired", "closed", "sold_out"})
# An update of None tells a subscriber it has no place any more (left from another tab).
Inbox = asyncio.Queue[QueueStatus | None]


@dataclass
class _Ticker:
    subscribers: dict[int, set[Inbox]] = field(default_factory=dict)
    # When each subscriber's state is next read (loop time): fans far back are read less often.
    due: dict[int, float] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


def _offer(inbox: Inbox, update: QueueStatus | None) -> None:
    # Only the latest state matters: a slow reader skips stale ones instead of queueing them.
    if inbox.full():
        inbox.get_nowait()
    inbox.put_nowait(update)


class PushHub:
    """Per-process fan-out of queue states to push subscribers."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._tickers: dict[int, _Ticker] = {}

    @contextlib.asynccontextmanager
    async def subscribe(self, sale_id: int, user_id: int) -> AsyncIterator[Inbox]:
        inbox: Inbox = asyncio.Queue(maxsize=1)
        ticker = self._tickers.get(sale_id)
        if ticker is None:
            ticker = self._tickers[sale_id] = _Ticker()
            ticker.task = asyncio.create_task(self._run(sale_id, ticker))
        ticker.subscribers.setdefault(user_id, set()).add(inbox)
        PUSH_SUBSCRIBERS.inc()
        try:
            yield inbox
        finally:
            PUSH_SUBSCRIBERS.dec()
            mine = ticker.subscribers.get(user_id, set())
            mine.discard(inbox)
            if not mine:
                ticker.subscribers.pop(user_id, None)
                ticker.due.pop(user_id, None)

    async def _run(self, sale_id: int, ticker: _Ticker) -> None:
        settings = self.state.settings
        store = service.store_of(self.state)
        grace_ms = int(settings.queue_grace_s * 1000)
        try:
            while True:
                await asyncio.sleep(settings.queue_push_tick_s)
                if not ticker.subscribers:
                    return
                try:
                    await self._tick(sale_id, ticker, store, grace_ms)
                except Exception:
                    # A Redis blip: subscribers keep their heartbeats and get the next tick.
                    log.warning("queue_push_tick_failed", sale_id=sale_id, exc_info=True)
        finally:
            if self._tickers.get(sale_id) is ticker:
                del self._tickers[sale_id]

    async def _tick(self, sale_id: int, ticker: _Ticker, store: QueueStore, grace_ms: int) -> None:
        now = asyncio.get_running_loop().time()
        settings = self.state.settings
        due = [u for u in ticker.subscribers if ticker.due.get(u, 0.0) <= now]
        # With nobody due, the head alone is still read: a sale that closes is told to all.
        for start in range(0, max(1, len(due)), STATUS_BATCH):
            chunk = due[start : start + STATUS_BATCH]
            head, fans = await store.status(sale_id, chunk, grace_ms=grace_ms)
            PUSH_TICKS.inc()
            if head is None:  # Redis lost the sale: rebuild it, answer next tick
                await service.sync_sale(
                    self.state, await service.get_sale(self.state, sale_id=sale_id)
                )
                return
            if head.status == "closed":
                closed = service.build_status(self.state, sale_id, head, None, push=True)
                for inboxes in list(ticker.subscribers.values()):
                    for inbox in list(inboxes):
                        _offer(inbox, closed)
                return
            for index, user_id in enumerate(chunk):
                fan = fans[index] if fans else None
                update = (
                    None
                    if fan is not None and fan.state == "none"
                    else service.build_status(self.state, sale_id, head, fan, push=True)
                )
                ticker.due[user_id] = now + read_every(
                    update, tick_s=settings.queue_push_tick_s, slow_s=settings.queue_push_slow_s
                )
                for inbox in list(ticker.subscribers.get(user_id, ())):
                    _offer(inbox, update)


def read_every(update: QueueStatus | None, *, tick_s: float, slow_s: float) -> float:
    """How long until a subscriber's state is read again: every tick near the head and in the
    pre-queue (the draw at open), up to `slow_s` for a fan whose turn is far off. The place is
    kept meanwhile (the grace period is minutes); a sale's close reaches everyone at once."""
    if update is None or update.state != "waiting" or update.eta_seconds is None:
        return tick_s
    return min(slow_s, max(tick_s, update.eta_seconds / 8))


def worth_sending(
    last: QueueStatus, update: QueueStatus, *, quiet_s: float, every_s: float
) -> bool:
    """Whether a stream sends `update`, `quiet_s` after it sent `last`. Far back in a long
    line the place moves a little every tick: such moves are sent every `every_s`, so a
    hundred thousand open streams cost a fraction of the writes (and of the fans' batteries).
    Near the head, and on any change of state, every move is sent at once."""
    if update.state != last.state or update.state in TERMINAL:
        return True
    if update == last:
        return False
    ahead, before = update.people_ahead, last.people_ahead
    if ahead is None or before is None or ahead < 100:
        return True
    return abs(before - ahead) >= 0.02 * before or quiet_s >= every_s


def hub_for(app: FastAPI, state: AppState) -> PushHub:
    """The process's hub, created on first use (it needs no lifespan: idle tickers stop)."""
    hub: PushHub | None = getattr(app.state, "queue_push", None)
    if hub is None:
        hub = PushHub(state)
        app.state.queue_push = hub
    return hub


def _event(status: QueueStatus, seq: int) -> bytes:
    return sse.event(status.model_dump_json(), name="status", event_id=str(seq))


async def event_stream(
    hub: PushHub, *, sale_id: int, user_id: int, first: QueueStatus
) -> AsyncIterator[bytes]:
    """The frames of one fan's stream (see the module docstring for when it ends)."""
    settings = hub.state.settings
    seq = itertools.count(1)
    # Reconnect delay with jitter, so a dropped load balancer does not bring everyone back at once.
    yield sse.retry(random.randint(2000, 5000))  # noqa: S311 - not security
    yield _event(first, next(seq))
    if first.state in TERMINAL:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.queue_push_max_s
    last, sent_at = first, loop.time()
    async with hub.subscribe(sale_id, user_id) as inbox:
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(min(settings.queue_push_heartbeat_s, remaining)):
                    update = await inbox.get()
            except TimeoutError:
                yield sse.comment("ping")
                continue
            if update is None:
                yield sse.event(
                    '{"detail": "You no longer have a place in this queue."}', name="not_in_queue"
                )
                return
            if worth_sending(
                last,
                update,
                quiet_s=loop.time() - sent_at,
                every_s=settings.queue_push_slow_s,
            ):
                yield _event(update, next(seq))
                last, sent_at = update, loop.time()
            if update.state in TERMINAL:
                return
        yield sse.comment("stream lifetime reached; reconnect")
