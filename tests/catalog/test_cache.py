"""Concert cache: real concurrency against real Redis and PostgreSQL; queries are counted."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.main import create_app
from tests.catalog.test_catalog import make_concert
from tests.conftest import LiveServer

CONCERT_SELECT = re.compile(r"\bFROM concert\b", re.IGNORECASE)


@contextmanager
def count_concert_queries(*engines: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(conn: object, cursor: object, statement: str, *args: object) -> None:
        if CONCERT_SELECT.search(statement):
            seen.append(statement)

    for engine in engines:
        event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine.sync_engine, "before_cursor_execute", before)


async def test_200_concurrent_cold_gets_cause_one_query_across_two_app_instances(
    app: object, settings: Settings, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    concert = await make_concert(client, admin_headers)
    url = f"/concerts/{concert['id']}"
    other = create_app(settings)  # a second "process": own engine, own in-process single-flight
    async with other.router.lifespan_context(other):
        engines = (app.state.tr.engine, other.state.tr.engine)  # type: ignore[attr-defined]
        # Creating the concert left the key cold: make sure no earlier GET warmed it.
        await app.state.tr.cache.invalidate(f"concert:{concert['id']}")  # type: ignore[attr-defined]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other), base_url="http://t"
        ) as c2:
            with count_concert_queries(*engines) as queries:
                responses = await asyncio.gather(
                    *(c.get(url) for _ in range(100) for c in (client, c2))
                )
    assert [r.status_code for r in responses] == [200] * 200
    assert {r.content for r in responses} == {responses[0].content}
    assert len(queries) == 1, queries


async def test_update_visible_on_next_get_and_list(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    concert = await make_concert(client, admin_headers)
    url = f"/concerts/{concert['id']}"
    listing = {"artist_id": concert["artist"]["id"]}
    assert (await client.get(url)).json()["title"] == concert["title"]
    assert (await client.get("/concerts", params=listing)).json()["items"][0]["title"] == concert[
        "title"
    ]
    r = await client.patch(url, json={"title": "Encore Night"}, headers=admin_headers)
    assert r.status_code == 200
    assert (await client.get(url)).json()["title"] == "Encore Night"
    assert (await client.get("/concerts", params=listing)).json()["items"][0][
        "title"
    ] == "Encore Night"
    # Renaming the artist shows on the concert page too (pages embed the artist's name).
    artist_url = f"/artists/{concert['artist']['id']}"
    await client.patch(artist_url, json={"name": f"Renamed {concert['id']}"}, headers=admin_headers)
    assert (await client.get(url)).json()["artist"]["name"] == f"Renamed {concert['id']}"


async def test_negative_cache_for_missing_concert(app: object, client: httpx.AsyncClient) -> None:
    engine = app.state.tr.engine  # type: ignore[attr-defined]
    with count_concert_queries(engine) as queries:
        codes = [(await client.get("/concerts/987654321")).status_code for _ in range(20)]
    assert codes == [404] * 20
    assert len(queries) == 1


async def test_hits_served_from_cache_and_counted(
    app: object, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    concert = await make_concert(client, admin_headers)
    url = f"/concerts/{concert['id']}"
    await client.get(url)
    engine = app.state.tr.engine  # type: ignore[attr-defined]
    with count_concert_queries(engine) as queries:
        for _ in range(30):
            assert (await client.get(url)).status_code == 200
    assert queries == []


async def test_cross_process_single_flight_and_metrics(
    live_server: LiveServer, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """Two uvicorn workers, 200 concurrent connections, one cold key: one load in total."""

    def value(text: str, series: str) -> float:
        m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    loads = 'tr_cache_loads_total{cache="concert_detail"}'
    served = 'tr_http_requests_total{method="GET",route="/concerts/{concert_id}",status="200"}'
    concert = await make_concert(client, admin_headers)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=live_server.url, limits=limits, timeout=30) as c:
        before = (await c.get("/metrics")).text
        responses = await asyncio.gather(*(c.get(f"/concerts/{concert['id']}") for _ in range(200)))
        after = (await c.get("/metrics")).text
    assert [r.status_code for r in responses] == [200] * 200
    assert value(after, loads) - value(before, loads) == 1
    # Metrics are aggregated over both workers (multiprocess mode): all 200 are counted.
    assert value(after, served) - value(before, served) == 200
