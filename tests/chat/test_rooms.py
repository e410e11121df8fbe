"""Presence across processes (including a killed one), the `post_system_event` service
function, and the rooms REST routes' problem+json answers."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import httpx
import pytest

from app.chat.errors import RoomNotFound
from app.chat.service import post_system_event
from tests.chat.conftest import Room, connect_frame, raw_stomp, recv_frame, start_api, ws_url

PROBLEM = "application/problem+json"


async def _online(http: httpx.AsyncClient, room: Room, headers: dict[str, str]) -> int:
    r = await http.get(f"/rooms/{room.name}", headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["online_users"])


async def _until(check: Any, expected: int, timeout: float = 10) -> float:
    started = time.monotonic()
    while (got := await check()) != expected:
        assert time.monotonic() - started < timeout, f"online_users stayed {got}, not {expected}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_presence_counts_users_across_processes_and_forgets_a_killed_one(
    chat_apis: Any, room: Room, users: Any, settings: Any, tmp_path: Any, stompjs: Any, stomppy: Any
) -> None:
    a, b = chat_apis
    alice, bob, carol = await users(3)
    async with httpx.AsyncClient(base_url=a.url) as http:

        def online() -> Any:
            return _online(http, room, alice.headers)

        assert await online() == 0
        js = await stompjs(ws_url(a), connectHeaders={"passcode": alice.token})
        await js.next("connected")
        for sub in ("s1", "s2"):  # one user twice in the room counts once
            await js.op(op="subscribe", destination=room.destination, id=sub, receipt=sub)
            await js.next("receipt", lambda e, s=sub: e["id"] == s)
        py = await stomppy(b, bob.token)
        await py.next("connected")
        await py.call(
            py.conn.subscribe, room.destination, id="p", ack="auto", headers={"receipt": "p"}
        )
        await py.next("receipt")
        assert await online() == 2

        await py.call(py.conn.unsubscribe, id="p", headers={"receipt": "u"})
        await py.next("receipt")
        assert await online() == 1
        await js.op(op="unsubscribe", id="s1")
        await asyncio.sleep(0.3)
        assert await online() == 1  # still subscribed once

        # A third process with carol in the room, then SIGKILL: no goodbye reaches Redis.
        c = start_api(settings, tmp_path / "c.log")
        try:
            async with raw_stomp(ws_url(c)) as ws:
                await ws.send(connect_frame(carol.token))
                await recv_frame(ws)
                await ws.send(f"SUBSCRIBE\nid:1\ndestination:{room.destination}\nreceipt:r\n\n\x00")
                await recv_frame(ws)
                assert await online() == 2
                c.proc.send_signal(signal.SIGKILL)
                c.proc.wait(10)
            waited = await _until(online, 1)
            assert waited <= 3 + 3  # TR_CHAT_PRESENCE_TTL_S=3 in the test settings
        finally:
            if c.proc.poll() is None:
                c.proc.kill()
        # The live processes keep refreshing their entries past the TTL.
        await asyncio.sleep(3.5)
        assert await online() == 1


async def test_post_system_event_is_stored_and_broadcast(
    app: Any, chat_apis: Any, room: Room, users: Any, stompjs: Any, stomppy: Any
) -> None:
    a, b = chat_apis
    alice, bob = await users(2)
    js = await stompjs(ws_url(a), connectHeaders={"passcode": alice.token})
    await js.next("connected")
    await js.op(op="subscribe", destination="/topic/" + room.artist_room, id="s", receipt="s")
    await js.next("receipt")

    state = app.state.tr  # in-process, sharing Redis with the API processes
    event = await post_system_event(
        state, room=room.artist_room, event="live_now", data={"channel_id": 7, "title": "Live!"}
    )
    assert event.event == "live_now" and event.user_id is None
    got = await js.next("message")
    assert got["headers"]["event"] == "live_now"
    assert got["headers"]["content-type"] == "application/json"
    assert json.loads(got["body"]) == event.model_dump(mode="json")

    py = await stomppy(b, bob.token)  # a later subscriber gets it from history
    await py.next("connected")
    await py.call(py.conn.subscribe, "/topic/" + room.artist_room, id="p", ack="auto")
    replayed = await py.next("message")
    assert replayed.headers["event"] == "live_now" and replayed.headers["history"] == "true"
    assert json.loads(replayed.body)["data"] == {"channel_id": 7, "title": "Live!"}
    with pytest.raises(RoomNotFound):
        await post_system_event(state, room="artist.999999999", event="live_now", data={})


async def test_rooms_routes_answer_problems(
    client: httpx.AsyncClient, room: Room, users: Any, admin_headers: dict[str, str]
) -> None:
    (fan,) = await users(1)
    cases = [
        ("GET", f"/rooms/{room.name}", None, {}, 401, "invalid-token"),
        ("GET", "/rooms/concert.999999999", None, fan.headers, 404, "chat-room-not-found"),
        ("GET", "/rooms/venue.1/messages", None, fan.headers, 422, "validation-error"),
        ("GET", f"/rooms/{room.name}/messages?limit=0", None, fan.headers, 422, "validation-error"),
        (
            "GET",
            f"/rooms/{room.name}/messages?before=x",
            None,
            fan.headers,
            422,
            "validation-error",
        ),
        ("PUT", f"/rooms/{room.name}/settings", {"slow_mode_s": 5}, fan.headers, 403, "forbidden"),
        (
            "PUT",
            f"/rooms/{room.name}/settings",
            {"slow_mode_s": -1},
            admin_headers,
            422,
            "validation-error",
        ),
        ("PUT", f"/rooms/{room.name}/mutes/1", {}, fan.headers, 403, "forbidden"),
        ("PUT", f"/rooms/{room.name}/kicks/1", {}, admin_headers, 422, "validation-error"),
        (
            "PUT",
            f"/rooms/{room.name}/bans/1",
            {"duration_s": 0},
            admin_headers,
            422,
            "validation-error",
        ),
        ("PUT", "/rooms/artist.999999999/bans/1", {}, admin_headers, 404, "chat-room-not-found"),
        (
            "DELETE",
            f"/rooms/{room.name}/messages/1-0",
            None,
            admin_headers,
            404,
            "chat-message-not-found",
        ),
    ]
    for method, path, body, headers, status, slug in cases:
        r = await client.request(method, path, json=body, headers=headers)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("/" + slug), (path, r.json())
    # Odd but valid stream ids (found by schemathesis): nothing is older than 0-0.
    r = await client.get(f"/rooms/{room.name}/messages?before=0-0000", headers=fan.headers)
    assert r.status_code == 200 and r.json() == {"items": [], "next_before": None}
    # A rejected request changed nothing.
    r = await client.get(f"/rooms/{room.name}", headers=fan.headers)
    assert r.json() == {
        "room": room.name,
        "destination": room.destination,
        "slow_mode_s": 0,
        "online_users": 0,
    }


async def test_subscribing_during_a_burst_gives_history_then_live_without_gap_or_duplicate(
    app: Any, chat_apis: Any, room: Room, users: Any
) -> None:
    """Entries are posted back to back while clients subscribe on both processes at staggered
    times: each sees one contiguous run (its replay of 5, then live) up to the last entry."""
    a, b = chat_apis
    subscribers = await users(8)
    state = app.state.tr
    total = 150
    received: dict[int, list[int]] = {}

    async def post_all() -> None:
        for seq in range(total):
            await post_system_event(state, room=room.name, event="tick", data={"seq": seq})
            await asyncio.sleep(0.004)

    async def subscriber(i: int, user: Any) -> None:
        await asyncio.sleep(0.05 * i)
        seqs = received.setdefault(i, [])
        async with raw_stomp(ws_url(a if i % 2 else b)) as ws:
            await ws.send(connect_frame(user.token))
            await recv_frame(ws)
            await ws.send(f"SUBSCRIBE\nid:1\ndestination:{room.destination}\n\n\x00")
            while not seqs or seqs[-1] != total - 1:
                frame = await recv_frame(ws, timeout=10)
                if frame.startswith("MESSAGE"):
                    body = json.loads(frame.split("\n\n", 1)[1].rstrip("\x00"))
                    seqs.append(body["data"]["seq"])

    await asyncio.gather(post_all(), *(subscriber(i, u) for i, u in enumerate(subscribers)))
    for seqs in received.values():
        assert seqs == list(range(seqs[0], total)), seqs
    # Some joined mid-burst (a replay, not the whole history): the race was really exercised.
    assert any(0 < seqs[0] < total - 5 for seqs in received.values()), received
