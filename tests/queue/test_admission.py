"""Real processes end to end: the API under uvicorn with 2 workers and `python -m app.admission`
replicas against the test database and Redis prefix.

500 fans join concurrently over both API processes (half in the pre-queue, one account 20 times
at once), the draw gives the pre-queue places 1..250 and later arrivals follow, the leader
admits the head of the line up to max_active, a kill -9 of the leader hands the sale to the
other replica, the push stream delivers the admission, and the backpressure controller moves
the rate with the downstream signals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from app.core.config import Settings
from app.core.redis import Keys, create_redis
from app.queue.signals import publish_signals, signal_keys
from tests.conftest import LiveServer
from tests.queue.conftest import Fan, WorkerProcess, bulk_fans, eventually, new_sale


async def _join_all(api: httpx.AsyncClient, sale_id: int, fans: list[Fan]) -> list[httpx.Response]:
    return await asyncio.gather(
        *(api.post(f"/sales/{sale_id}/queue", headers=f.headers) for f in fans)
    )


async def _statuses(api: httpx.AsyncClient, sale_id: int, fans: list[Fan]) -> list[dict[str, Any]]:
    replies = await asyncio.gather(
        *(api.get(f"/sales/{sale_id}/queue/me", headers=f.headers) for f in fans)
    )
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies][:3]
    return [r.json() for r in replies]


async def _stats(api: httpx.AsyncClient, sale_id: int, admin: dict[str, str]) -> dict[str, Any]:
    r = await api.get(f"/sales/{sale_id}/stats", headers=admin)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=200, max_keepalive_connections=200)


async def test_crowd_draw_admission_and_failover(
    queue_api: LiveServer,
    app: Any,
    settings: Settings,
    admin_headers: dict[str, str],
    admission_workers: Callable[..., WorkerProcess],
) -> None:
    state = app.state.tr
    fans = await bulk_fans(state, settings, 500)
    early, late = fans[:250], fans[250:]
    async with httpx.AsyncClient(base_url=queue_api.url, timeout=30, limits=_limits()) as api:
        sale = await new_sale(
            api, admin_headers, opens_in=3, closes_in=120, max_active=40, max_rate=1000
        )
        sid = sale["id"]
        # Paused until the places are checked; then the worker admits at 500 fans/s.
        r = await api.put(f"/sales/{sid}/rate", json={"rate": 0}, headers=admin_headers)
        assert r.status_code == 200

        repeated = [early[0]] * 20
        joins = await _join_all(api, sid, early + repeated)
        assert all(r.status_code in (200, 201) for r in joins), joins[0].text
        assert sum(r.status_code == 201 for r in joins) == 250  # the 20 repeats: one place
        assert {r.json()["state"] for r in joins} == {"pre_queue"}
        # Started now, so no join above can race the opening: the pre-queue is exactly `early`.
        workers = [admission_workers(), admission_workers()]

        async def opened_and_drawn() -> bool:
            stats = await _stats(api, sid, admin_headers)
            return stats["status"] == "open" and stats["pre_queue"] == 0

        await eventually(opened_and_drawn, timeout=15)
        joins = await _join_all(api, sid, late)
        assert all(r.status_code == 201 for r in joins)

        statuses = await _statuses(api, sid, fans)
        assert {s["state"] for s in statuses} == {"waiting"}
        early_places = [s["position"] for s in statuses[:250]]
        late_places = [s["position"] for s in statuses[250:]]
        assert sorted(early_places) == list(range(1, 251))  # the draw: 1..250, each once
        assert early_places != list(range(1, 251))
        assert sorted(late_places) == list(range(251, 501))  # FIFO after the draw, no gaps
        assert sorted(s["people_ahead"] for s in statuses) == list(range(500))
        by_place = {s["position"]: fan for s, fan in zip(statuses, fans, strict=True)}

        r = await api.put(f"/sales/{sid}/rate", json={"rate": 500}, headers=admin_headers)
        assert r.status_code == 200

        async def full() -> bool:
            return (await _stats(api, sid, admin_headers))["admitted_active"] == 40

        await eventually(full)
        await asyncio.sleep(0.5)
        stats = await _stats(api, sid, admin_headers)
        assert (stats["admitted_active"], stats["admitted_total"]) == (40, 40)  # max_active holds
        # Exactly the head of the line got in (and, by the counts above, nobody else).
        head = [by_place[p] for p in range(1, 41)]
        assert {s["state"] for s in await _statuses(api, sid, head)} == {"admitted"}
        assert (await _statuses(api, sid, [by_place[41]]))[0]["people_ahead"] == 0

        # kill -9 the leader: the other replica takes the sale once the lease runs out.
        leader = stats["leader"]
        pid = int(leader.split(":")[0].split("-")[-2])
        victim = next(w for w in workers if w.proc.pid == pid)
        victim.kill()
        for fan in head[:10]:  # ten fans leave: their slots free at once
            r = await api.delete(f"/sales/{sid}/queue/me", headers=fan.headers)
            assert r.status_code == 204

        async def refilled() -> bool:
            return (await _stats(api, sid, admin_headers))["admitted_total"] == 50

        await eventually(refilled, timeout=10)
        stats = await _stats(api, sid, admin_headers)
        assert stats["admitted_active"] == 40 and stats["left"] == 10
        new_leader = stats["leader"]
        assert new_leader and new_leader != leader
        assert int(new_leader.rsplit(":", 1)[1]) > int(leader.rsplit(":", 1)[1])  # fence grew
        newly = await _statuses(api, sid, [by_place[p] for p in range(41, 51)])
        assert {s["state"] for s in newly} == {"admitted"}  # still strictly in line order

        r = await api.post(f"/sales/{sid}:close", headers=admin_headers)
        assert r.status_code == 200
        after = await _statuses(api, sid, head[10:] + [by_place[p] for p in range(51, 501, 10)])
        assert {s["state"] for s in after} == {"closed"}  # admitted or waiting: same answer
        assert all(w.alive() for w in workers if w is not victim)


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    """Parse `text/event-stream` lines into (event, data) pairs; comments are heartbeats."""
    event, data = "message", list[str]()
    async for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def test_push_stream_delivers_the_admission(
    queue_api: LiveServer,
    app: Any,
    settings: Settings,
    admin_headers: dict[str, str],
    admission_workers: Callable[..., WorkerProcess],
) -> None:
    state = app.state.tr
    first, second = await bulk_fans(state, settings, 2)
    async with httpx.AsyncClient(base_url=queue_api.url, timeout=30) as api:
        sale = await new_sale(api, admin_headers, opens_in=-1, closes_in=120, max_active=1)
        sid = sale["id"]
        await api.put(f"/sales/{sid}/rate", json={"rate": 0}, headers=admin_headers)
        await api.post(f"/sales/{sid}:open", headers=admin_headers)
        for fan in (first, second):
            assert (await api.post(f"/sales/{sid}/queue", headers=fan.headers)).status_code == 201
        url = f"/sales/{sid}/queue/me/events"
        plain = await api.get(url, headers=first.headers)
        assert plain.status_code == 406 and plain.headers["content-type"].startswith(
            "application/problem+json"
        )
        admission_workers()
        seen: list[dict[str, Any]] = []
        sse = first.headers | {"Accept": "text/event-stream"}
        async with api.stream("GET", url, headers=sse) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for event, data in _events(stream.aiter_lines()):
                assert event == "status"
                seen.append(data)
                if len(seen) == 1:
                    assert (data["state"], data["people_ahead"]) == ("waiting", 0)
                    assert data["poll_after_seconds"] is None  # pushed: no need to poll
                    r = await api.put(f"/sales/{sid}/rate", json={"rate": 5}, headers=admin_headers)
                    assert r.status_code == 200
        # The stream ended by itself after the terminal event.
        assert seen[-1]["state"] == "admitted" and seen[-1]["admission_token"]
        polled = (await api.get(f"/sales/{sid}/queue/me", headers=first.headers)).json()
        assert polled["admission_token"] == seen[-1]["admission_token"]
        # A client that goes away mid-stream is unsubscribed (no leaked ticker subscription).
        sse = second.headers | {"Accept": "text/event-stream"}
        async with api.stream("GET", url, headers=sse) as stream:
            async for event, data in _events(stream.aiter_lines()):
                assert (event, data["state"]) == ("status", "waiting")
                break

        async def no_subscribers() -> bool:
            metrics = (await api.get("/metrics")).text
            return "tr_queue_push_subscribers 0.0" in metrics

        await eventually(no_subscribers, timeout=5)
        await api.post(f"/sales/{sid}:close", headers=admin_headers)


async def test_backpressure_moves_the_rate_within_bounds(
    queue_api: LiveServer,
    settings: Settings,
    admin_headers: dict[str, str],
    admission_workers: Callable[..., WorkerProcess],
) -> None:
    redis = create_redis(settings)
    keys = Keys(settings.redis_prefix)
    try:
        async with httpx.AsyncClient(base_url=queue_api.url, timeout=30) as api:
            sale = await new_sale(
                api,
                admin_headers,
                opens_in=-1,
                closes_in=120,
                initial_rate=50,
                min_rate=5,
                max_rate=60,
            )
            sid = sale["id"]
            await publish_signals(redis, keys, consumer_lag=1e6, ttl_s=30)  # drowning consumers
            # +25% of max_rate per healthy step, so the recovery takes a few steps here.
            admission_workers(TR_ADMISSION_RATE_INCREASE="0.25")

            async def rate_is(value: float) -> bool:
                return (await _stats(api, sid, admin_headers))["current_rate"] == value

            await eventually(lambda: rate_is(5), timeout=10)
            await redis.delete(*signal_keys(keys))  # recovered (absent = healthy)
            await eventually(lambda: rate_is(60), timeout=10)
            # An operator's manual rate is left alone by the controller.
            await publish_signals(redis, keys, p95_ms=1e5, ttl_s=30)
            r = await api.put(f"/sales/{sid}/rate", json={"rate": 42}, headers=admin_headers)
            assert r.status_code == 200
            await asyncio.sleep(0.6)  # three control intervals
            stats = await _stats(api, sid, admin_headers)
            assert (stats["current_rate"], stats["rate_mode"]) == (42, "manual")
            await api.post(f"/sales/{sid}:close", headers=admin_headers)
    finally:
        await redis.delete(*signal_keys(keys))
        await redis.aclose()
