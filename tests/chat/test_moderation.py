"""Moderation and limits through the admin REST routes, seen by real clients on two API
processes: mute, ban, delete (broadcast), slow mode, per-user rate and size limits."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.chat.conftest import Room, ws_url

PROBLEM = "application/problem+json"


async def _subscribed(stompjs: Any, server: Any, user: Any, room: Room) -> Any:
    js = await stompjs(ws_url(server), connectHeaders={"passcode": user.token})
    await js.next("connected")
    await js.op(op="subscribe", destination=room.destination, id="s", receipt="sub")
    await js.next("receipt", lambda e: e["id"] == "sub")
    return js


async def test_muted_user_reads_but_send_is_refused(
    chat_apis: Any, room: Room, users: Any, admin_headers: dict[str, str], stompjs: Any
) -> None:
    a, b = chat_apis
    fan, watcher = await users(2)
    seen = await _subscribed(stompjs, b, watcher, room)
    async with httpx.AsyncClient(base_url=b.url) as http:
        r = await http.put(
            f"/rooms/{room.name}/mutes/{fan.user_id}",
            json={"duration_s": 60, "reason": "spam"},
            headers=admin_headers,
        )
        assert r.status_code == 200, r.text
        assert r.json()["kind"] == "mute" and r.json()["until"] is not None

        muted = await _subscribed(stompjs, a, fan, room)  # a muted fan still reads
        await muted.op(op="send", destination=room.destination, body="let me talk", receipt="m1")
        error = await muted.next("error")
        assert error["headers"]["message"] == "You are muted in this room"
        assert error["headers"]["receipt-id"] == "m1"
        assert error["headers"]["status"] == "403"
        await muted.next("close")

        r = await http.delete(f"/rooms/{room.name}/mutes/{fan.user_id}", headers=admin_headers)
        assert r.status_code == 204
        again = await stompjs(ws_url(a), connectHeaders={"passcode": fan.token})
        await again.next("connected")
        await again.op(op="send", destination=room.destination, body="thanks", receipt="m2")
        await again.next("receipt", lambda e: e["id"] == "m2")
        r = await http.get(f"/rooms/{room.name}/messages", headers=watcher.headers)
    assert [m["text"] for m in r.json()["items"]] == ["thanks"]
    got = await seen.next("message")
    assert json.loads(got["body"])["text"] == "thanks"


async def test_ban_disconnects_the_user_on_every_process_and_refuses_resubscribe(
    chat_apis: Any,
    room: Room,
    users: Any,
    admin_headers: dict[str, str],
    stompjs: Any,
    stomppy: Any,
) -> None:
    a, b = chat_apis
    fan, other = await users(2)
    on_a = await _subscribed(stompjs, a, fan, room)
    py = await stomppy(b, fan.token)
    await py.next("connected")
    await py.call(
        py.conn.subscribe, room.destination, id="p", ack="auto", headers={"receipt": "ps"}
    )
    await py.next("receipt")
    bystander = await _subscribed(stompjs, b, other, room)

    async with httpx.AsyncClient(base_url=a.url) as http:
        r = await http.put(f"/rooms/{room.name}/bans/{fan.user_id}", json={}, headers=admin_headers)
        assert r.status_code == 200, r.text
        assert r.json()["until"] is None
        for error in (await on_a.next("error"), {"headers": (await py.next("error")).headers}):
            assert error["headers"]["message"] == "You are banned from this room"
        await on_a.next("close")

        retry = await stompjs(ws_url(b), connectHeaders={"passcode": fan.token})
        await retry.next("connected")
        await retry.op(op="subscribe", destination=room.destination, id="s")
        assert (await retry.next("error"))["headers"]["type"].endswith("/chat-banned")
        r = await http.get(f"/rooms/{room.name}/messages", headers=fan.headers)
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("/chat-banned")
    # Others are untouched.
    await bystander.op(op="send", destination=room.destination, body="still on", receipt="b")
    await bystander.next("receipt", lambda e: e["id"] == "b")
    assert not [e for e in bystander.log if e["type"] in {"error", "close"}]


async def test_delete_is_broadcast_to_both_processes_and_removed_from_history(
    chat_apis: Any, room: Room, users: Any, admin_headers: dict[str, str], stompjs: Any
) -> None:
    a, b = chat_apis
    fan, watcher = await users(2)
    on_a = await _subscribed(stompjs, a, fan, room)
    on_b = await _subscribed(stompjs, b, watcher, room)
    await on_a.op(op="send", destination=room.destination, body="oops", receipt="x")
    message = json.loads((await on_b.next("message"))["body"])
    await on_a.next("message")
    async with httpx.AsyncClient(base_url=b.url) as http:
        r = await http.delete(f"/rooms/{room.name}/messages/{message['id']}", headers=fan.headers)
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
        r = await http.delete(f"/rooms/{room.name}/messages/{message['id']}", headers=admin_headers)
        assert r.status_code == 204, r.text
        for client in (on_a, on_b):
            event = await client.next(
                "message", lambda e: e["headers"]["event"] == "message_deleted"
            )
            assert json.loads(event["body"])["data"]["id"] == message["id"]
        r = await http.get(f"/rooms/{room.name}/messages", headers=fan.headers)
        assert r.json()["items"] == []
        r = await http.delete(f"/rooms/{room.name}/messages/{message['id']}", headers=admin_headers)
        assert r.status_code == 404 and r.json()["type"].endswith("/chat-message-not-found")


async def test_slow_mode_refuses_the_second_message_with_retry_after(
    chat_apis: Any, room: Room, users: Any, admin_headers: dict[str, str], stompjs: Any
) -> None:
    a, b = chat_apis
    fan, other_fan = await users(2)
    async with httpx.AsyncClient(base_url=a.url) as http:
        r = await http.put(
            f"/rooms/{room.name}/settings", json={"slow_mode_s": 30}, headers=admin_headers
        )
        assert r.status_code == 200 and r.json()["slow_mode_s"] == 30
    js = await stompjs(ws_url(b), connectHeaders={"passcode": fan.token})
    await js.next("connected")
    await js.op(op="send", destination=room.destination, body="first", receipt="1")
    await js.next("receipt", lambda e: e["id"] == "1")
    await js.op(op="send", destination=room.destination, body="second", receipt="2")
    error = await js.next("error")
    assert error["headers"]["status"] == "429"
    assert error["headers"]["type"].endswith("/chat-slow-mode")
    assert 25 <= int(error["headers"]["retry-after"]) <= 30
    # Another fan has their own slot.
    other = await stompjs(ws_url(a), connectHeaders={"passcode": other_fan.token})
    await other.next("connected")
    await other.op(op="send", destination=room.destination, body="mine", receipt="3")
    await other.next("receipt", lambda e: e["id"] == "3")


async def test_per_user_rate_limit_and_message_size_limit(
    chat_apis: Any, room: Room, users: Any, stompjs: Any, stomppy: Any
) -> None:
    """Test settings: 5 messages per 30 s per user (across rooms and processes), 200 bytes."""
    a, b = chat_apis
    fan, other = await users(2)
    for i in range(5):
        js = await stompjs(ws_url(a if i % 2 else b), connectHeaders={"passcode": fan.token})
        await js.next("connected")
        destination = room.destination if i < 3 else "/topic/" + room.artist_room
        await js.op(op="send", destination=destination, body=f"m{i}", receipt="ok")
        await js.next("receipt")
        await js.op(op="disconnect")
    js = await stompjs(ws_url(a), connectHeaders={"passcode": fan.token})
    await js.next("connected")
    await js.op(op="send", destination=room.destination, body="one too many")
    error = await js.next("error")
    assert error["headers"]["type"].endswith("/chat-rate-limited")
    assert int(error["headers"]["retry-after"]) >= 1

    py = await stomppy(b, other.token)
    await py.next("connected")
    await py.call(py.conn.send, room.destination, "x" * 201)
    frame = await py.next("error")
    assert frame.headers["type"].endswith("/chat-message-too-large")
    assert frame.headers["status"] == "413"
    async with httpx.AsyncClient(base_url=a.url, headers=other.headers) as http:
        r = await http.get(f"/rooms/{room.name}/messages")
    assert [m["text"] for m in r.json()["items"]] == ["m0", "m1", "m2"]
