"""The nginx-rtmp callbacks, called the way nginx calls them (form posts with the secret in
the callback URL), against the live API: who may flip a channel LIVE, and which session ends it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.streaming.conftest import (
    UPDATE_INTERVAL_S,
    StreamingEnv,
    channel_state,
    new_channel,
)

PROBLEMS = "https://ticketrush.io/problems/"


def nginx_form(key: str, client_id: str, call: str = "publish", **extra: str) -> dict[str, str]:
    return {
        "app": "live",
        "flashver": "FMLE/3.0 (compatible; Lavf59.27",
        "tcurl": "rtmp://127.0.0.1:1935/live",
        "addr": "127.0.0.1",
        "clientid": client_id,
        "call": call,
        "name": key,
        "type": "live",
        **extra,
    }


async def callback(
    api: httpx.AsyncClient, hook: str, form: dict[str, str] | str, *, secret: str | None
) -> httpx.Response:
    params = {} if secret is None else {"secret": secret}
    content = form if isinstance(form, str) else httpx.QueryParams(form).__str__()
    return await api.post(
        f"/rtmp/{hook}",
        params=params,
        content=content,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


async def metric(api: httpx.AsyncClient, name: str, **labels: str) -> float:
    """A counter's value summed over the API's worker processes (0 before its first use)."""
    text = (await api.get("/metrics")).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEMS + slug
    return body


async def test_callbacks_need_the_shared_secret(
    api: httpx.AsyncClient, streaming_env: StreamingEnv, admin_headers: dict[str, str]
) -> None:
    channel = await new_channel(api, admin_headers)
    form = nginx_form(channel["stream_key"], "1")
    for secret in (None, "", "not-the-secret", streaming_env.secret + "x"):
        for hook in ("on_publish", "on_update", "on_publish_done"):
            r = await callback(api, hook, form, secret=secret)
            problem(r, 403, "rtmp-callback-forbidden")
    # Nothing changed: the channel is still off, and the real secret still works.
    assert (await channel_state(api, channel["id"]))["state"] == "off"
    r = await callback(api, "on_publish", form, secret=streaming_env.secret)
    assert r.status_code == 302, r.text
    assert (await channel_state(api, channel["id"]))["state"] == "live"
    await callback(api, "on_publish_done", form, secret=streaming_env.secret)


async def test_publish_renames_to_the_public_name_and_refuses_bad_keys(
    api: httpx.AsyncClient, streaming_env: StreamingEnv, admin_headers: dict[str, str]
) -> None:
    channel = await new_channel(api, admin_headers)
    key, secret = channel["stream_key"], streaming_env.secret
    publishes = "tr_streaming_publishes_total"
    before = [await metric(api, publishes, result=r) for r in ("unknown_key", "live")]
    problem(
        await callback(api, "on_publish", nginx_form(key[:-1], "7"), secret=secret),
        403,
        "stream-key-invalid",
    )
    problem(
        await callback(api, "on_publish", "app=live&call=publish", secret=secret),
        400,
        "rtmp-callback-invalid",
    )
    # The publisher's URL arguments come after nginx's own fields and cannot replace them.
    spoofed = httpx.QueryParams(nginx_form(key, "7")).__str__() + "&name=ch-1&clientid=99"
    r = await callback(api, "on_publish", spoofed, secret=secret)
    assert r.status_code == 302, r.text
    assert r.headers["location"] == f"ch-{channel['id']}"
    assert key not in r.text
    live = await channel_state(api, channel["id"])
    assert live["state"] == "live"
    after = [await metric(api, publishes, result=r) for r in ("unknown_key", "live")]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]
    # The session is client 7 (not the spoofed 99): only its publish_done ends it.
    await callback(api, "on_publish_done", nginx_form(key, "99", "publish_done"), secret=secret)
    assert (await channel_state(api, channel["id"]))["state"] == "live"
    await callback(api, "on_publish_done", nginx_form(key, "7", "publish_done"), secret=secret)
    off = await channel_state(api, channel["id"])
    assert off["state"] == "off"
    assert off["live_since"] is None
    assert off["last_live_at"] > live["live_since"]


async def test_a_second_publisher_waits_until_the_live_session_goes_silent(
    api: httpx.AsyncClient, streaming_env: StreamingEnv, admin_headers: dict[str, str]
) -> None:
    channel = await new_channel(api, admin_headers)
    key, secret = channel["stream_key"], streaming_env.secret
    assert (
        await callback(api, "on_publish", nginx_form(key, "1"), secret=secret)
    ).status_code == 302
    first = nginx_form(key, "1", "update_publish", time="1", timestamp="1000")
    # While nginx keeps updating the first session, a second publisher is refused.
    for _ in range(2):
        assert (await callback(api, "on_update", first, secret=secret)).status_code == 204
        r = await callback(api, "on_publish", nginx_form(key, "2"), secret=secret)
        problem(r, 409, "channel-already-live")
        await asyncio.sleep(UPDATE_INTERVAL_S)
    # nginx died with the first session (no publish_done, no updates): after three update
    # intervals of silence the next publisher takes the channel over.
    await asyncio.sleep(3 * UPDATE_INTERVAL_S + 0.5)
    assert (
        await callback(api, "on_publish", nginx_form(key, "2"), secret=secret)
    ).status_code == 302
    problem(await callback(api, "on_update", first, secret=secret), 403, "stream-session-ended")
    # A late publish_done of the dead session does not end the new one.
    await callback(api, "on_publish_done", nginx_form(key, "1", "publish_done"), secret=secret)
    live = await channel_state(api, channel["id"])
    assert live["state"] == "live"

    # The second session goes silent too, and nobody publishes: the next read ends it.
    await asyncio.sleep(3 * UPDATE_INTERVAL_S + 0.5)
    ended = await channel_state(api, channel["id"])
    assert ended["state"] == "off"
    assert ended["live_since"] is None
    assert ended["last_live_at"] > live["live_since"]
    second = nginx_form(key, "2", "update_publish", time="5", timestamp="5000")
    problem(await callback(api, "on_update", second, secret=secret), 403, "stream-session-ended")


async def test_updates_of_other_calls_are_accepted(
    api: httpx.AsyncClient, streaming_env: StreamingEnv
) -> None:
    # nginx also updates the local push to the hls application (call=update_play): never drop it.
    form = {"flashver": "ngx-local-relay", "clientid": "3", "call": "update_play", "time": "2"}
    r = await callback(api, "on_update", form, secret=streaming_env.secret)
    assert r.status_code == 204


async def test_concurrent_publishes_of_one_key_admit_exactly_one(
    api: httpx.AsyncClient, streaming_env: StreamingEnv, admin_headers: dict[str, str]
) -> None:
    channel = await new_channel(api, admin_headers)
    key, secret = channel["stream_key"], streaming_env.secret
    # Spread over the API's two worker processes, all at once.
    answers = await asyncio.gather(
        *(
            callback(api, "on_publish", nginx_form(key, str(100 + i)), secret=secret)
            for i in range(12)
        )
    )
    statuses = [r.status_code for r in answers]
    assert statuses.count(302) == 1, statuses
    assert statuses.count(409) == 11, statuses
    winner = str(100 + statuses.index(302))
    for loser in {str(100 + i) for i in range(12)} - {winner}:
        await callback(
            api, "on_publish_done", nginx_form(key, loser, "publish_done"), secret=secret
        )
    assert (await channel_state(api, channel["id"]))["state"] == "live"
    await callback(api, "on_publish_done", nginx_form(key, winner, "publish_done"), secret=secret)
    assert (await channel_state(api, channel["id"]))["state"] == "off"


async def test_the_hls_application_takes_only_live_channels(
    api: httpx.AsyncClient, streaming_env: StreamingEnv, admin_headers: dict[str, str]
) -> None:
    channel = await new_channel(api, admin_headers)
    key, secret = channel["stream_key"], streaming_env.secret
    relay = {"app": "hls", "addr": "127.0.0.1", "clientid": "9", "call": "publish"}
    name = f"ch-{channel['id']}"
    problem(
        await callback(api, "on_relay_publish", relay | {"name": name}, secret=None),
        403,
        "rtmp-callback-forbidden",
    )
    for refused in (name, key, "ch-0", "ch-99999999999999999999", "ch-1x"):
        r = await callback(api, "on_relay_publish", relay | {"name": refused}, secret=secret)
        problem(r, 403, "stream-session-ended")
    await callback(api, "on_publish", nginx_form(key, "8"), secret=secret)
    r = await callback(api, "on_relay_publish", relay | {"name": name}, secret=secret)
    assert r.status_code == 204, r.text
    await callback(api, "on_publish_done", nginx_form(key, "8", "publish_done"), secret=secret)
    r = await callback(api, "on_relay_publish", relay | {"name": name}, secret=secret)
    problem(r, 403, "stream-session-ended")
