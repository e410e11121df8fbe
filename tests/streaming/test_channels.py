"""Channel management and reads against the live API: admin-only writes, fans never see a key,
filters and pages, and viewer counts from player heartbeats."""

from __future__ import annotations

import asyncio
import hashlib
import re

import httpx
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import create_engine
from tests.conftest import signup_and_login
from tests.streaming.conftest import (
    VIEWER_WINDOW_S,
    StreamingEnv,
    channel_state,
    new_artist,
    new_channel,
)
from tests.streaming.test_callbacks import callback, nginx_form, problem

ADMIN_ONLY_FIELDS = {"stream_key", "stream_key_hint", "stream_key_rotated_at", "ingest_url"}


async def test_only_admins_create_change_rotate_and_delete(
    api: httpx.AsyncClient, admin_headers: dict[str, str], fan_headers: dict[str, str]
) -> None:
    artist_id = await new_artist(api, admin_headers)
    body = {"artist_id": artist_id, "title": "Fan meeting"}
    problem(await api.post("/channels", json=body), 401, "invalid-token")
    problem(await api.post("/channels", json=body, headers=fan_headers), 403, "forbidden")
    channel = await new_channel(api, admin_headers, artist_id=artist_id)
    cid, key = channel["id"], channel["stream_key"]
    for method, path, payload in (
        ("PATCH", f"/channels/{cid}", {"title": "Mine now"}),
        ("DELETE", f"/channels/{cid}", None),
        ("POST", f"/channels/{cid}/stream-key:rotate", None),
    ):
        problem(await api.request(method, path, json=payload), 401, "invalid-token")
        r = await api.request(method, path, json=payload, headers=fan_headers)
        problem(r, 403, "forbidden")
    # Nothing changed: same title, same key, still there.
    assert (await channel_state(api, cid))["title"] == channel["title"]
    r = await api.get(f"/channels/{cid}", headers=admin_headers)
    assert r.json()["stream_key_hint"] == key[-4:]


async def test_stream_keys_are_secret_high_entropy_and_stored_hashed(
    api: httpx.AsyncClient,
    settings: Settings,
    admin_headers: dict[str, str],
    fan_headers: dict[str, str],
) -> None:
    channel = await new_channel(api, admin_headers)
    cid, key = channel["id"], channel["stream_key"]
    assert re.fullmatch(r"trsk_[A-Za-z0-9_-]{43}", key)  # 256 random bits
    rotated = (await api.post(f"/channels/{cid}/stream-key:rotate", headers=admin_headers)).json()
    assert rotated["stream_key"] != key
    assert rotated["stream_key_rotated_at"] > channel["stream_key_rotated_at"]
    key = rotated["stream_key"]

    reads = [
        await api.get(f"/channels/{cid}"),
        await api.get(f"/channels/{cid}", headers=fan_headers),
        await api.get("/channels", params={"artist_id": channel["artist_id"]}),
        await api.get("/channels", params={"artist_id": channel["artist_id"]}, headers=fan_headers),
    ]
    for r in reads:
        assert r.status_code == 200, r.text
        assert key not in r.text and key[-4:] not in r.text
        items = r.json()["items"] if "items" in r.json() else [r.json()]
        assert items and all(not (ADMIN_ONLY_FIELDS & item.keys()) for item in items)
    admin_view = (await api.get(f"/channels/{cid}", headers=admin_headers)).json()
    assert "stream_key" not in admin_view
    assert admin_view["ingest_url"].startswith("rtmp://")
    assert admin_view["stream_key_hint"] == key[-4:]

    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(text("SELECT * FROM channel WHERE id = :id"), {"id": cid})
            ).one()
    finally:
        await engine.dispose()
    assert key not in repr(tuple(row))
    assert row.stream_key_hash == hashlib.sha256(key.encode()).hexdigest()


async def test_create_and_change_validate_input(
    api: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    problem(
        await api.post("/channels", json={"artist_id": 2**62, "title": "x"}, headers=admin_headers),
        404,
        "artist-not-found",
    )
    for bad in (
        {"artist_id": 1},
        {"artist_id": 1, "title": " padded "},
        {"artist_id": 0, "title": "x"},
    ):
        problem(
            await api.post("/channels", json=bad, headers=admin_headers), 422, "validation-error"
        )
    channel = await new_channel(api, admin_headers)
    path = f"/channels/{channel['id']}"
    problem(
        await api.patch(path, json={"title": None}, headers=admin_headers), 422, "validation-error"
    )
    problem(
        await api.patch(path, json={"artist_id": 2**62}, headers=admin_headers),
        404,
        "artist-not-found",
    )
    r = await api.patch(path, json={"title": "Renamed"}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Renamed"
    assert (await channel_state(api, channel["id"]))["title"] == "Renamed"
    problem(await api.get("/channels/999999999"), 404, "channel-not-found")
    problem(await api.get("/channels", params={"cursor": "bogus"}), 400, "invalid-cursor")


async def test_a_live_channel_is_not_deleted(
    api: httpx.AsyncClient, streaming_env: StreamingEnv, admin_headers: dict[str, str]
) -> None:
    channel = await new_channel(api, admin_headers)
    form = nginx_form(channel["stream_key"], "5")
    await callback(api, "on_publish", form, secret=streaming_env.secret)
    path = f"/channels/{channel['id']}"
    problem(await api.delete(path, headers=admin_headers), 409, "channel-live")
    assert (await channel_state(api, channel["id"]))["state"] == "live"
    await callback(api, "on_publish_done", form, secret=streaming_env.secret)
    assert (await api.delete(path, headers=admin_headers)).status_code == 204
    problem(await api.get(path), 404, "channel-not-found")


async def test_list_filters_by_live_and_artist_in_pages(
    api: httpx.AsyncClient, streaming_env: StreamingEnv, admin_headers: dict[str, str]
) -> None:
    artist_id = await new_artist(api, admin_headers)
    channels = [await new_channel(api, admin_headers, artist_id=artist_id) for _ in range(3)]
    form = nginx_form(channels[1]["stream_key"], "11")
    await callback(api, "on_publish", form, secret=streaming_env.secret)
    try:
        r = await api.get("/channels", params={"live": "true", "artist_id": artist_id})
        assert [c["id"] for c in r.json()["items"]] == [channels[1]["id"]]
        r = await api.get("/channels", params={"live": "false", "artist_id": artist_id})
        assert [c["id"] for c in r.json()["items"]] == [channels[0]["id"], channels[2]["id"]]
        seen, cursor = [], None
        while True:
            params = {"artist_id": artist_id, "limit": 1} | ({"cursor": cursor} if cursor else {})
            page = (await api.get("/channels", params=params)).json()
            seen += [c["id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [c["id"] for c in channels]
        # Every live channel of every artist is listed with live=true.
        r = await api.get("/channels", params={"live": "true", "limit": 200})
        assert channels[1]["id"] in {c["id"] for c in r.json()["items"]}
        assert all(c["state"] == "live" for c in r.json()["items"])
    finally:
        await callback(api, "on_publish_done", form, secret=streaming_env.secret)


async def test_viewers_are_fans_with_a_recent_heartbeat(
    api: httpx.AsyncClient, streaming_env: StreamingEnv, admin_headers: dict[str, str]
) -> None:
    channel = await new_channel(api, admin_headers)
    cid = channel["id"]
    fans = [
        {"Authorization": f"Bearer {(await signup_and_login(api))['access_token']}"}
        for _ in range(3)
    ]
    path = f"/channels/{cid}/heartbeat"
    problem(await api.post(path), 401, "invalid-token")
    problem(await api.post(path, headers=fans[0]), 409, "channel-not-live")
    problem(
        await api.post("/channels/999999999/heartbeat", headers=fans[0]), 404, "channel-not-found"
    )

    form = nginx_form(channel["stream_key"], "21")
    await callback(api, "on_publish", form, secret=streaming_env.secret)
    counts = [(await api.post(path, headers=fan)).json()["viewer_count"] for fan in fans]
    assert counts == [1, 2, 3]
    # The same fan in a second tab is one viewer.
    assert (await api.post(path, headers=fans[0])).json()["viewer_count"] == 3
    assert (await channel_state(api, cid))["viewer_count"] == 3
    # Only fans[0] keeps its player reporting: the others drop out after the window (while
    # nginx keeps updating the session).
    update = nginx_form(channel["stream_key"], "21", "update_publish")
    for _ in range(2):
        await asyncio.sleep(VIEWER_WINDOW_S / 2 + 0.2)
        assert (
            await callback(api, "on_update", update, secret=streaming_env.secret)
        ).status_code == 204
        assert (await api.post(path, headers=fans[0])).status_code == 200
    assert (await channel_state(api, cid))["viewer_count"] == 1

    await callback(api, "on_publish_done", form, secret=streaming_env.secret)
    assert (await channel_state(api, cid))["viewer_count"] == 0
    problem(await api.post(path, headers=fans[0]), 409, "channel-not-live")
