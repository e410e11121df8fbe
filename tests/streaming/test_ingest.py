"""The whole path with real processes: ffmpeg publishes over RTMP to nginx-rtmp, whose callbacks
reach the live API (2 workers); HLS is fetched over nginx's HTTP."""

from __future__ import annotations

import secrets

import httpx
import pytest

from app.streaming.ingest import Ingest
from tests.conftest import LiveServer
from tests.streaming.conftest import (
    UPDATE_INTERVAL_S,
    StreamingEnv,
    channel_state,
    eventually,
    new_channel,
    publish,
    wait_exit,
)

pytestmark = pytest.mark.usefixtures("ingest")


async def test_broadcast_goes_live_serves_hls_and_ends_off(
    api: httpx.AsyncClient,
    ingest: Ingest,
    streaming_env: StreamingEnv,
    streaming_api: LiveServer,
    admin_headers: dict[str, str],
) -> None:
    channel = await new_channel(api, admin_headers)
    channel_id, key = channel["id"], channel["stream_key"]
    playlist = f"{streaming_env.hls_base_url}/ch-{channel_id}/index.m3u8"
    assert channel["playback_url"] == playlist
    assert key not in playlist

    publisher = publish(ingest, key, seconds=5)

    async def live() -> bool:
        return (await channel_state(api, channel_id))["state"] == "live"

    await eventually(live, timeout=10)
    seen = await channel_state(api, channel_id)
    assert seen["live_since"] is not None
    r = await api.get("/channels", params={"live": "true", "artist_id": channel["artist_id"]})
    assert [c["id"] for c in r.json()["items"]] == [channel_id]

    # The artist's chat room got the "LIVE now" event with the playback URL.
    async def announced() -> bool:
        r = await api.get(f"/rooms/artist.{channel['artist_id']}/messages", headers=admin_headers)
        return any(
            m["event"] == "live_now"
            and m["data"]["channel_id"] == channel_id
            and m["data"]["playback_url"] == playlist
            for m in r.json()["items"]
        )

    await eventually(announced, timeout=10)

    async with httpx.AsyncClient(timeout=5) as hls:

        async def playlist_lists_segments() -> bool:
            r = await hls.get(playlist)
            return r.status_code == 200 and ".ts" in r.text

        await eventually(playlist_lists_segments, timeout=10)
        r = await hls.get(playlist)
        assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert r.text.startswith("#EXTM3U")
        segment = next(line for line in r.text.splitlines() if line.endswith(".ts"))
        r = await hls.get(playlist.rsplit("/", 1)[0] + "/" + segment)
        assert r.status_code == 200
        assert r.headers["content-type"] == "video/mp2t"
        assert r.content[0] == 0x47  # MPEG-TS sync byte

        # The key never names a file: the stream was renamed to the channel's public name.
        assert (streaming_env.hls_dir / f"ch-{channel_id}" / "index.m3u8").is_file()
        assert not any(key in str(p) for p in streaming_env.hls_dir.rglob("*"))

        # A second encoder with the same key is refused while the first one is on air.
        intruder = publish(ingest, key, seconds=2)
        assert await wait_exit(intruder, timeout=10) != 0
        assert (await channel_state(api, channel_id))["live_since"] == seen["live_since"]

        assert await wait_exit(publisher, timeout=15) == 0, publisher.stderr

        async def off() -> bool:
            return (await channel_state(api, channel_id))["state"] == "off"

        await eventually(off, timeout=10)
        ended = await channel_state(api, channel_id)
        assert ended["live_since"] is None
        assert ended["last_live_at"] > seen["live_since"]

        async def cleaned_up() -> bool:
            gone = not (streaming_env.hls_dir / f"ch-{channel_id}").exists()
            return gone and (await hls.get(playlist)).status_code == 404

        await eventually(cleaned_up, timeout=10)
    # Neither nginx's logs nor the API's carry the key.
    logs = [ingest.error_log(), (ingest.config.run_dir / "access.log").read_text()]
    assert not any(key in log for log in [*logs, streaming_api.log_path.read_text()])
    r = await api.get("/channels", params={"live": "true", "artist_id": channel["artist_id"]})
    assert r.json()["items"] == []


async def test_wrong_and_rotated_away_keys_are_refused(
    api: httpx.AsyncClient,
    ingest: Ingest,
    streaming_env: StreamingEnv,
    admin_headers: dict[str, str],
) -> None:
    channel = await new_channel(api, admin_headers)
    old_key = channel["stream_key"]
    r = await api.post(f"/channels/{channel['id']}/stream-key:rotate", headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["stream_key"] != old_key

    for key in ("trsk_" + secrets.token_urlsafe(32), old_key):
        publisher = publish(ingest, key, seconds=3)
        assert await wait_exit(publisher, timeout=10) != 0
    assert (await channel_state(api, channel["id"]))["state"] == "off"
    assert not (streaming_env.hls_dir / f"ch-{channel['id']}").exists()


async def test_publishing_straight_into_the_hls_application_is_refused(
    api: httpx.AsyncClient,
    ingest: Ingest,
    streaming_env: StreamingEnv,
    admin_headers: dict[str, str],
) -> None:
    # From 127.0.0.1, so nginx's `allow publish` lets it through to the API's check.
    channel = await new_channel(api, admin_headers)
    hls_app = ingest.config.rtmp_url.rsplit("/", 1)[0] + "/hls"
    for name in (f"ch-{channel['id']}", channel["stream_key"], "anything"):
        publisher = publish(ingest, name, seconds=3, url=hls_app)
        assert await wait_exit(publisher, timeout=10) != 0
    assert not any(streaming_env.hls_dir.glob(f"ch-{channel['id']}*"))
    assert (await channel_state(api, channel["id"]))["state"] == "off"


async def test_rotating_the_key_cuts_the_broadcast_and_the_new_key_works(
    api: httpx.AsyncClient, ingest: Ingest, admin_headers: dict[str, str]
) -> None:
    channel = await new_channel(api, admin_headers)
    channel_id = channel["id"]
    publisher = publish(ingest, channel["stream_key"], seconds=30)

    async def is_(state: str) -> bool:
        return (await channel_state(api, channel_id))["state"] == state

    await eventually(lambda: is_("live"), timeout=10)
    r = await api.post(f"/channels/{channel_id}/stream-key:rotate", headers=admin_headers)
    assert r.status_code == 200, r.text
    # nginx's next update is refused and it drops the publisher long before its 30 s.
    await wait_exit(publisher, timeout=UPDATE_INTERVAL_S + 10)
    await eventually(lambda: is_("off"), timeout=10)

    successor = publish(ingest, r.json()["stream_key"], seconds=2)
    await eventually(lambda: is_("live"), timeout=10)
    assert await wait_exit(successor, timeout=10) == 0
    await eventually(lambda: is_("off"), timeout=10)
