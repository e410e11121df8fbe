"""The server side of the STOMP 1.2 protocol, probed with a raw WebSocket peer for what real
clients never send: malformed frames, silence, heart-beat negotiation, unknown rooms."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.chat.conftest import (
    Room,
    connect_frame,
    headers_of,
    raw_stomp,
    recv_frame,
    ws_url,
)


async def _closed(ws: Any, timeout: float = 5) -> None:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), timeout=timeout)


MALFORMED = [
    ("HELLO\n\n\x00", "unknown command"),
    ("CONNECT\naccept-version:1.2\npasscode\n\n\x00", "no name:value form"),
    ("SEND\ndestination:/topic/a\\qb\n\n\x00", "undefined escape sequence"),
    ("SEND\ncontent-length:3\n\nabcdef\x00", "not followed by a NUL"),
    ("SEND\ncontent-length:ten\n\nabc\x00", "is not a byte count"),
    ("SEND\ndestination:x\x00\n\n\x00", "NUL byte inside"),
    ("SEND\n\n" + "x" * 70_000 + "\x00", "frame larger than 65536 bytes"),
    ("SUBSCRIBE\nid:1\ndestination:/topic/concert.1\n\n\x00", "Expected CONNECT, got SUBSCRIBE"),
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
async def test_malformed_frame_gets_error_then_close_and_server_survives(
    chat_apis: Any, users: Any, raw: str, reason: str
) -> None:
    a, _ = chat_apis
    (alice,) = await users(1)
    async with raw_stomp(ws_url(a)) as ws:
        await ws.send(raw)
        error = await recv_frame(ws)
        assert error.startswith("ERROR\n")
        assert reason in error
        await _closed(ws)
    # The same process still serves STOMP (and HTTP).
    async with raw_stomp(ws_url(a)) as ws:
        await ws.send(connect_frame(alice.token))
        assert (await recv_frame(ws)).startswith("CONNECTED\n")
    async with httpx.AsyncClient(base_url=a.url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_malformed_frame_after_connect_and_split_frames(
    chat_apis: Any, users: Any, room: Room
) -> None:
    """Frames split across WebSocket messages and several per message parse; a bad one later
    on an established session is still an ERROR and a close."""
    a, _ = chat_apis
    (alice,) = await users(1)
    async with raw_stomp(ws_url(a)) as ws:
        frame = connect_frame(alice.token)
        await ws.send(frame[:7])
        await ws.send(frame[7:])
        assert (await recv_frame(ws)).startswith("CONNECTED\n")
        body = "a\x00b"  # a NUL inside the body is fine with content-length
        await ws.send(
            f"\n\r\nSEND\ndestination:{room.destination}\ncontent-length:3\nreceipt:r1\n\n{body}\x00"
            f"SUBSCRIBE\nid:s\ndestination:{room.destination}\nreceipt:r2\n\n\x00"
        )
        assert headers_of(await recv_frame(ws))["receipt-id"] == "r1"
        message = await recv_frame(ws)  # the SEND, replayed from history before the receipt
        assert message.startswith("MESSAGE\n")
        assert headers_of(message)["history"] == "true"
        assert '"text":"a\\u0000b"' in message
        assert ws.pending  # the receipt came in the same WebSocket message (coalesced)
        assert headers_of(await recv_frame(ws))["receipt-id"] == "r2"
        await ws.send("UNSUBSCRIBE\nid\\x:1\n\n\x00")
        assert "undefined escape sequence" in await recv_frame(ws)
        await _closed(ws)


async def test_unknown_room_bad_destination_and_protocol_misuse_are_errors(
    chat_apis: Any, users: Any, room: Room
) -> None:
    a, b = chat_apis
    (alice,) = await users(1)
    cases = [
        ("SUBSCRIBE\nid:1\ndestination:/topic/concert.999999999\n\n\x00", "Chat room not found"),
        ("SUBSCRIBE\nid:1\ndestination:/topic/artist.999999999\n\n\x00", "Chat room not found"),
        ("SEND\ndestination:/topic/concert.999999999\n\nhi\x00", "Chat room not found"),
        ("SUBSCRIBE\nid:1\ndestination:/queue/orders\n\n\x00", "Not a chat destination"),
        ("SUBSCRIBE\nid:1\ndestination:/topic/venue.1\n\n\x00", "Not a chat destination"),
        (f"SUBSCRIBE\ndestination:{room.destination}\n\n\x00", "needs a `id` header"),
        (f"SUBSCRIBE\nid:1\nack:client\ndestination:{room.destination}\n\n\x00", "ack:auto"),
        ("UNSUBSCRIBE\nid:nope\n\n\x00", "No subscription with id"),
        ("BEGIN\ntransaction:t\n\n\x00", "transactions are not supported"),
        (connect_frame(alice.token), "Already connected"),
    ]
    for i, (raw, reason) in enumerate(cases):
        async with raw_stomp(ws_url(a if i % 2 else b)) as ws:
            await ws.send(connect_frame(alice.token))
            assert (await recv_frame(ws)).startswith("CONNECTED\n")
            await ws.send(raw.replace("\n\n", "\nreceipt:bad\n\n", 1))
            error = await recv_frame(ws)
            assert error.startswith("ERROR\n"), error
            assert reason in error, error
            assert headers_of(error)["receipt-id"] == "bad"
            await _closed(ws)


async def test_version_negotiation_and_subprotocols(chat_apis: Any, users: Any) -> None:
    a, _ = chat_apis
    (alice,) = await users(1)
    async with raw_stomp(ws_url(a), ["v10.stomp", "v12.stomp"]) as ws:
        assert ws.subprotocol == "v12.stomp"
        await ws.send(f"STOMP\naccept-version:1.1,1.2\nhost:x\npasscode:{alice.token}\n\n\x00")
        assert headers_of(await recv_frame(ws))["version"] == "1.2"
    async with raw_stomp(ws_url(a)) as ws:
        assert ws.subprotocol is None
        await ws.send(f"CONNECT\naccept-version:1.0,1.1\npasscode:{alice.token}\n\n\x00")
        error = await recv_frame(ws)
        assert "speaks STOMP 1.2 only" in error
        await _closed(ws)


async def test_heart_beats_negotiated_sent_and_required(chat_apis: Any, users: Any) -> None:
    """Server offers 500,500 (test settings). Asking 0,300 gets a heart-beat every
    max(500, 300) ms; promising 400,0 and staying silent gets the connection dropped."""
    a, _ = chat_apis
    (alice,) = await users(1)
    async with raw_stomp(ws_url(a)) as ws:
        await ws.send(connect_frame(alice.token, "0,300"))
        assert headers_of(await recv_frame(ws))["heart-beat"] == "500,500"
        started = time.monotonic()
        beats = [await recv_frame(ws, timeout=3) for _ in range(3)]
        assert beats == ["\n"] * 3
        elapsed = time.monotonic() - started
        assert 1.2 < elapsed < 5.0, elapsed  # 3 x 500 ms, generous on a loaded machine
        # We declared we send nothing (cx=0): the server must not drop us for silence.
        await asyncio.sleep(1.5)
        await ws.send("\n")
    async with raw_stomp(ws_url(a)) as ws:
        await ws.send(connect_frame(alice.token, "400,0"))
        assert (await recv_frame(ws)).startswith("CONNECTED\n")
        started = time.monotonic()
        error = await recv_frame(ws, timeout=6)
        assert "No frame or heart-beat received in time" in error
        assert 0.9 < time.monotonic() - started < 5.0  # 2 x max(400, 500) ms, not before
        await _closed(ws)
    async with raw_stomp(ws_url(a)) as ws:
        await ws.send(connect_frame(alice.token, "400,0"))
        assert (await recv_frame(ws)).startswith("CONNECTED\n")
        for _ in range(6):  # heart-beats (both EOL forms) keep it alive past 2 x 500 ms
            await asyncio.sleep(0.3)
            await ws.send("\r\n")
        await ws.send("DISCONNECT\nreceipt:bye\n\n\x00")
        assert headers_of(await recv_frame(ws))["receipt-id"] == "bye"
        await _closed(ws)


async def test_stompjs_heart_beats_keep_an_idle_session_open(
    chat_apis: Any, users: Any, room: Room, stompjs: Any
) -> None:
    a, _ = chat_apis
    (alice,) = await users(1)
    js = await stompjs(
        ws_url(a),
        connectHeaders={"passcode": alice.token},
        heartbeatIncoming=500,
        heartbeatOutgoing=500,
    )
    await js.next("connected")
    await asyncio.sleep(2.5)  # idle for 5 x the negotiated interval
    await js.op(op="send", destination=room.destination, body="still here", receipt="alive")
    await js.next("receipt", lambda e: e["id"] == "alive")
    assert not [e for e in js.log if e["type"] in {"close", "error"}]
