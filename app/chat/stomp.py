"""One STOMP 1.2 session over one WebSocket: CONNECT with the access token, heart-beats both
ways, SUBSCRIBE (history, then live), UNSUBSCRIBE, SEND, RECEIPT, ERROR and DISCONNECT.

Any protocol violation or refused frame is answered with an ERROR frame and the connection is
closed, as the spec requires (a STOMP server cannot refuse a single SEND and carry on)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.auth.errors import InvalidToken
from app.auth.service import authenticate
from app.chat import service
from app.chat.frames import HEARTBEAT, Frame, FrameError, FrameParser, encode, escape
from app.chat.hub import ChatHub, Delivery
from app.chat.metrics import CHAT_CONNECTIONS, CHAT_ERRORS
from app.chat.rooms import Room
from app.core.problems import ProblemError, RateLimited
from app.core.security import AccessClaims
from app.core.state import AppState

log = structlog.get_logger(__name__)

SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")
SERVER = "ticket-rush/0.1"
CONNECT_TIMEOUT_S = 10.0
_COALESCE_CHARS = 64 * 1024
_session_ids = itertools.count(1)


class ProtocolError(ProblemError):
    slug = "stomp-protocol-error"
    title = "STOMP protocol error"


class InternalError(ProblemError):
    status = 500
    slug = "chat-internal-error"
    title = "Internal server error"


def pick_subprotocol(offered: list[str]) -> str | None:
    # stomp-py offers none (accepted without one); stompjs offers v12/v11/v10 and needs one
    # chosen. Version negotiation itself happens in CONNECT (we speak 1.2 only).
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    return None


def _stream_order(message_id: str) -> tuple[int, int] | None:
    ms, dash, seq = message_id.partition("-")
    if dash and ms.isdigit() and seq.isdigit():
        return int(ms), int(seq)
    return None


@dataclass(eq=False)
class _Subscription:
    id: str
    room: Room
    ready: bool = False
    pending: list[Delivery] = field(default_factory=list)
    replayed_up_to: tuple[int, int] | None = None

    def fresh(self, delivery: Delivery) -> bool:
        """False for a live copy of an entry the replay already sent. Such copies arrive while
        history is read or just after (still in the pub/sub socket buffer): the channel is
        subscribed first, so the replay and the live stream overlap."""
        if self.replayed_up_to is None:
            return True
        order = _stream_order(delivery.message.id)
        if order is None:  # an event that is not stored (message_deleted)
            return True
        if order <= self.replayed_up_to:
            return False
        self.replayed_up_to = None  # entries arrive in stream order: no duplicate after this
        return True


def _message_tail(room: Room, delivery: Delivery, *, history: bool) -> str:
    message = delivery.message
    headers = {
        "destination": room.destination,
        "content-type": "application/json",
        "chat-id": message.id,
        "event": message.event,
        "sent-at": message.sent_at.isoformat(),
        "content-length": str(len(delivery.body)),
    }
    if history:
        headers["history"] = "true"
    lines = "".join(f"{escape(k)}:{escape(v)}\n" for k, v in headers.items())
    return f"{lines}\n{delivery.body.decode()}\x00"


def _heartbeats(value: str) -> tuple[int, int]:
    try:
        cx, cy = (int(v) for v in value.split(","))
    except ValueError:
        raise ProtocolError(f"heart-beat {value[:40]!r} is not two integers `cx,cy`.") from None
    if cx < 0 or cy < 0:
        raise ProtocolError("heart-beat values must not be negative.")
    return cx, cy


class StompSession:
    def __init__(self, websocket: WebSocket, state: AppState, hub: ChatHub) -> None:
        self.ws = websocket
        self.state = state
        self.hub = hub
        self.settings = state.settings
        self.session_id = f"{hub.instance}-{next(_session_ids)}"
        self.parser = FrameParser(max_frame_bytes=self.settings.chat_max_frame_bytes)
        self.user: AccessClaims | None = None
        self.user_id = 0
        self.subscriptions: dict[str, _Subscription] = {}
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.send_every_s = 0.0
        self.expect_every_s = 0.0
        self._message_seq = itertools.count(1)
        self._closing = False

    # Outgoing ---------------------------------------------------------------------------

    def _queue(self, frame: Frame) -> None:
        if not self._closing:
            self.outbox.put_nowait(encode(frame).decode())

    def _fail(self, error: ProblemError, *, receipt: str | None = None) -> None:
        """Queue an ERROR frame and the close after it."""
        if self._closing:
            return
        headers = {
            "message": error.title,
            "type": error.type_uri(),
            "status": str(error.status),
            "content-type": "text/plain",
        }
        if isinstance(error, RateLimited):
            headers["retry-after"] = str(error.extra["retry_after"])
        if receipt is not None:
            headers["receipt-id"] = receipt
        self._queue(Frame("ERROR", headers, error.detail.encode()))
        CHAT_ERRORS.labels(error.slug).inc()
        self._closing = True
        self.outbox.put_nowait(None)

    def deliver(self, subscription_id: str, delivery: Delivery) -> None:
        sub = self.subscriptions.get(subscription_id)
        if sub is None or self._closing:
            return
        if not sub.ready:
            sub.pending.append(delivery)
        elif sub.fresh(delivery):
            self._message(sub, delivery, history=False)

    def kick(self, error: ProblemError) -> None:
        self._fail(error)

    def _message(self, sub: _Subscription, delivery: Delivery, *, history: bool) -> None:
        if self.outbox.qsize() >= self.settings.chat_outbox_frames:
            self._fail(ProtocolError("You are not reading fast enough; reconnect."))
            return
        if history:
            tail = _message_tail(sub.room, delivery, history=True)
        elif delivery.tail is None:
            tail = delivery.tail = _message_tail(sub.room, delivery, history=False)
        else:
            tail = delivery.tail
        if not self._closing:
            message_id = f"{self.session_id}-{next(self._message_seq)}"
            self.outbox.put_nowait(
                f"MESSAGE\nsubscription:{escape(sub.id)}\nmessage-id:{message_id}\n{tail}"
            )

    async def _write(self) -> None:
        while True:
            try:
                if self.send_every_s:
                    data = await asyncio.wait_for(self.outbox.get(), timeout=self.send_every_s)
                else:
                    data = await self.outbox.get()
            except TimeoutError:
                data = HEARTBEAT
            if data is None:
                return
            # Whatever queued up meanwhile goes in the same WebSocket message (STOMP frames are
            # self-delimiting; stompjs and stomp-py split them): under load one write carries
            # many frames, which is what keeps a busy process from falling behind.
            parts, size, last = [data], len(data), False
            while size < _COALESCE_CHARS and not self.outbox.empty():
                more = self.outbox.get_nowait()
                if more is None:
                    last = True
                    break
                parts.append(more)
                size += len(more)
            await self.ws.send_text(parts[0] if len(parts) == 1 else "".join(parts))
            if last:
                return

    # Incoming ---------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            if self.user is None:
                timeout: float | None = CONNECT_TIMEOUT_S
            else:
                timeout = 2 * self.expect_every_s if self.expect_every_s else None
            try:
                msg = await asyncio.wait_for(self.ws.receive(), timeout=timeout)
            except TimeoutError:
                what = "CONNECT" if self.user is None else "frame or heart-beat"
                self._fail(ProtocolError(f"No {what} received in time."))
                return
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            data = msg.get("bytes") or (msg.get("text") or "").encode()
            try:
                items = self.parser.feed(data)
            except FrameError as exc:
                self._fail(ProtocolError(f"Malformed frame: {exc}."))
                return
            for frame in items:
                if frame is None:
                    continue  # heart-beat: receiving anything resets the timeout
                receipt = frame.headers.get("receipt")
                try:
                    await self._handle(frame)
                except ProblemError as exc:
                    self._fail(exc, receipt=receipt)
                    return
                except Exception:
                    log.exception("stomp_frame_failed", command=frame.command)
                    self._fail(
                        InternalError("The frame failed; it has been logged."), receipt=receipt
                    )
                    return
                if receipt is not None and frame.command not in {"CONNECT", "STOMP"}:
                    self._queue(Frame("RECEIPT", {"receipt-id": receipt}))
                if frame.command == "DISCONNECT":
                    self._closing = True
                    self.outbox.put_nowait(None)
                    return

    async def _handle(self, frame: Frame) -> None:
        if self.user is None:
            if frame.command not in {"CONNECT", "STOMP"}:
                raise ProtocolError(f"Expected CONNECT, got {frame.command}.")
            await self._connect(frame)
            return
        handler = {
            "SEND": self._send,
            "SUBSCRIBE": self._subscribe,
            "UNSUBSCRIBE": self._unsubscribe,
        }.get(frame.command)
        if handler is not None:
            await handler(frame)
        elif frame.command == "DISCONNECT":
            return  # the receipt is sent and the connection closed by the read loop
        elif frame.command in {"CONNECT", "STOMP"}:
            raise ProtocolError("Already connected.")
        elif frame.command in {"ACK", "NACK"}:
            return  # every subscription is ack:auto; acknowledging is harmless
        else:
            raise ProtocolError(f"{frame.command}: transactions are not supported.")

    async def _connect(self, frame: Frame) -> None:
        versions = frame.headers.get("accept-version", "1.0").split(",")
        if "1.2" not in versions:
            raise ProtocolError("This server speaks STOMP 1.2 only (accept-version:1.2).")
        token = frame.headers.get("passcode") or self.ws.query_params.get("access_token")
        authorization = frame.headers.get("Authorization") or frame.headers.get("authorization")
        if not token and authorization:
            token = authorization.removeprefix("Bearer ").strip()
        if not token:
            raise InvalidToken(
                "Send the access token as the `passcode` or `Authorization: Bearer` header of "
                "CONNECT, or as the `access_token` query parameter."
            )
        self.user = await authenticate(self.state, token=token)
        self.user_id = self.user.user_id
        cx, cy = _heartbeats(frame.headers.get("heart-beat", "0,0"))
        sx, sy = self.settings.chat_heartbeat_send_ms, self.settings.chat_heartbeat_receive_ms
        self.send_every_s = max(sx, cy) / 1000 if sx and cy else 0.0
        self.expect_every_s = max(cx, sy) / 1000 if cx and sy else 0.0
        self._queue(
            Frame(
                "CONNECTED",
                {
                    "version": "1.2",
                    "heart-beat": f"{sx},{sy}",
                    "server": SERVER,
                    "session": self.session_id,
                    "user-name": str(self.user_id),
                },
            )
        )

    def _required(self, frame: Frame, name: str) -> str:
        value = frame.headers.get(name)
        if not value:
            raise ProtocolError(f"{frame.command} needs a `{name}` header.")
        return value

    async def _subscribe(self, frame: Frame) -> None:
        sub_id = self._required(frame, "id")
        room = Room.from_destination(self._required(frame, "destination"))
        if frame.headers.get("ack", "auto") != "auto":
            raise ProtocolError("Only ack:auto is supported.")
        if sub_id in self.subscriptions:
            raise ProtocolError(f"Subscription id {sub_id!r} is already in use.")
        if len(self.subscriptions) >= self.settings.chat_max_subscriptions:
            raise ProtocolError(
                f"At most {self.settings.chat_max_subscriptions} subscriptions per connection."
            )
        await service.get_room(self.state, name=room.name)
        await service.check_can_read(self.state, room=room, user_id=self.user_id)
        sub = _Subscription(sub_id, room)
        self.subscriptions[sub_id] = sub
        await self.hub.join(room.name, self, sub_id)
        replay = await service.history(
            self.state, room=room, limit=self.settings.chat_history_on_subscribe
        )
        for message in replay:
            self._message(sub, Delivery(message, message.model_dump_json().encode()), history=True)
        if replay:
            sub.replayed_up_to = _stream_order(replay[-1].id)
        for delivery in sub.pending:
            if sub.fresh(delivery):
                self._message(sub, delivery, history=False)
        sub.pending.clear()
        sub.ready = True

    async def _unsubscribe(self, frame: Frame) -> None:
        sub_id = self._required(frame, "id")
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            raise ProtocolError(f"No subscription with id {sub_id!r}.")
        await self.hub.leave(sub.room.name, self, sub_id)

    async def _send(self, frame: Frame) -> None:
        room = Room.from_destination(self._required(frame, "destination"))
        await service.get_room(self.state, name=room.name)
        assert self.user is not None
        await service.post_message(self.state, room=room, user=self.user, body=frame.body)

    # Lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        offered = list(self.ws.scope.get("subprotocols") or [])
        await self.ws.accept(subprotocol=pick_subprotocol(offered))
        CHAT_CONNECTIONS.inc()
        started = time.monotonic()
        reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self._write())
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and not writer.done():
                # Let the ERROR or RECEIPT reach the client before closing.
                self._closing = True
                self.outbox.put_nowait(None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(writer), timeout=5)
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, WebSocketDisconnect):
                    # Mostly a peer that went away mid-send; nothing to tell it any more.
                    log.info("stomp_session_ended", error=repr(exc))
        finally:
            for task in (reader, writer):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            for sub in list(self.subscriptions.values()):
                with contextlib.suppress(Exception):
                    await self.hub.leave(sub.room.name, self, sub.id)
            self.subscriptions.clear()
            with contextlib.suppress(Exception):
                await self.ws.close()
            CHAT_CONNECTIONS.dec()
            log.debug("stomp_session_closed", seconds=round(time.monotonic() - started, 3))
