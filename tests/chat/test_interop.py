"""Real clients against two real API processes: stompjs (Node, ws) on one, stomp-py on the
other, fan-out through Redis between them."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.chat.conftest import Room, ws_url


async def test_stompjs_and_stomppy_chat_across_two_processes(
    chat_apis: Any, room: Room, users: Any, stompjs: Any, stomppy: Any
) -> None:
    a, b = chat_apis
    alice, bob = await users(2)
    js = await stompjs(ws_url(a), connectHeaders={"passcode": alice.token})
    connected = await js.next("connected")
    assert connected["headers"]["version"] == "1.2"
    await js.op(op="subscribe", destination=room.destination, id="s1", receipt="sub-1")
    await js.next("receipt", lambda e: e["id"] == "sub-1")

    py = await stomppy(b, bob.token)
    await py.next("connected")
    await py.call(
        py.conn.subscribe, room.destination, id="p1", ack="auto", headers={"receipt": "psub"}
    )
    await py.next("receipt", lambda f: f.headers["receipt-id"] == "psub")

    await js.op(op="send", destination=room.destination, body="hello from node", receipt="js-send")
    await js.next("receipt", lambda e: e["id"] == "js-send")
    await py.call(
        py.conn.send, room.destination, "hello from python", headers={"receipt": "py-send"}
    )

    for text in ("hello from node", "hello from python"):
        got_js = await js.next("message", lambda e, t=text: json.loads(e["body"])["text"] == t)
        got_py = await py.next("message", lambda f, t=text: json.loads(f.body)["text"] == t)
        body_js, body_py = json.loads(got_js["body"]), json.loads(got_py.body)
        assert body_js == body_py  # same server id and timestamp on both processes
        assert got_js["headers"]["subscription"] == "s1"
        assert got_py.headers["subscription"] == "p1"
        assert got_js["headers"]["event"] == "message"
    async with httpx.AsyncClient(base_url=a.url, headers=alice.headers) as http:
        r = await http.get(f"/rooms/{room.name}/messages")
    assert r.status_code == 200, r.text
    texts = [m["text"] for m in r.json()["items"]]
    assert sorted(texts) == ["hello from node", "hello from python"]
    assert {m["user_id"] for m in r.json()["items"]} == {alice.user_id, bob.user_id}
