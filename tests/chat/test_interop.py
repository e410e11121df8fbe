"""Real clients against two real API processes: stompjs (Node, ws) on one, stomp-py on the
other, fan-out through Redis between them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from pydantic import SecretStr

from app.core.config import Settings
from app.core.security import issue_access_token
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


async def test_history_replayed_on_subscribe_then_live(
    chat_apis: Any, room: Room, users: Any, stompjs: Any, stomppy: Any
) -> None:
    """The last N (5 here) entries arrive first, oldest first and flagged, then live ones."""
    a, b = chat_apis
    alice, bob, carol = await users(3)
    for user in (alice, bob):
        js = await stompjs(ws_url(a), connectHeaders={"passcode": user.token})
        await js.next("connected")
        for i in range(3):
            await js.op(
                op="send", destination=room.destination, body=f"{user.user_id}-{i}", receipt=f"r{i}"
            )
            await js.next("receipt", lambda e, i=i: e["id"] == f"r{i}")
        await js.op(op="disconnect")
    sent = [f"{u.user_id}-{i}" for u in (alice, bob) for i in range(3)]

    py = await stomppy(b, carol.token)
    await py.next("connected")
    await py.call(py.conn.subscribe, room.destination, id="h", ack="auto")
    replay = [await py.next("message") for _ in range(5)]
    assert [json.loads(f.body)["text"] for f in replay] == sent[-5:]
    assert all(f.headers["history"] == "true" for f in replay)
    ids = [json.loads(f.body)["id"] for f in replay]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

    # The replay and the receipt leave in one WebSocket message: stompjs splits it too.
    js = await stompjs(ws_url(a), connectHeaders={"passcode": carol.token})
    await js.next("connected")
    await js.op(op="subscribe", destination=room.destination, id="j", receipt="j")
    replay_js = [await js.next("message") for _ in range(5)]
    assert [json.loads(e["body"])["text"] for e in replay_js] == sent[-5:]
    await js.next("receipt", lambda e: e["id"] == "j")

    await py.call(py.conn.send, room.destination, "live one")
    live = await py.next("message")
    assert json.loads(live.body)["text"] == "live one"
    assert "history" not in live.headers


async def test_token_in_authorization_header_or_query(
    chat_apis: Any, room: Room, users: Any, stompjs: Any
) -> None:
    a, b = chat_apis
    (alice,) = await users(1)
    by_header = await stompjs(ws_url(a), connectHeaders={"Authorization": f"Bearer {alice.token}"})
    assert (await by_header.next("connected"))["headers"]["user-name"] == str(alice.user_id)
    by_query = await stompjs(ws_url(b, f"access_token={alice.token}"))
    assert (await by_query.next("connected"))["headers"]["user-name"] == str(alice.user_id)


def _token(settings: Settings, **changes: Any) -> str:
    now = datetime.now(UTC)
    payload = {
        "sub": "1",
        "role": "fan",
        "jti": "x",
        "iat": now - timedelta(hours=1),
        "exp": now - timedelta(minutes=1),
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "typ": "access",
    } | changes
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), settings.jwt_algorithm)


async def test_missing_expired_or_forged_token_is_an_error_frame_then_close(
    chat_apis: Any, settings: Settings, stompjs: Any, stomppy: Any
) -> None:
    a, b = chat_apis
    expired = _token(settings)
    forged = issue_access_token(
        settings.model_copy(update={"jwt_secret": SecretStr("not-the-server-secret-" * 3)}),
        user_id=1,
        role="admin",
    )[0]
    for token in (None, expired, forged):
        headers = {"passcode": token} if token else {}
        js = await stompjs(ws_url(a), connectHeaders=headers)
        error = await js.next("error")
        assert error["headers"]["message"] == "Invalid or expired token"
        assert error["headers"]["type"].endswith("/invalid-token")
        await js.next("close")
        assert not [e for e in js.log if e["type"] == "connected"]

        py = await stomppy(b, token)
        frame = await py.next("error")
        assert frame.headers["message"] == "Invalid or expired token"
        await py.next("disconnected")
    async with httpx.AsyncClient(base_url=a.url) as http:
        assert (await http.get("/healthz")).status_code == 200
