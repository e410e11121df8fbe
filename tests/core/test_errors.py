"""Failures of backing services become problem+json 503s, never a stack trace."""

from __future__ import annotations

import httpx

from app.core.config import Settings
from app.devstack.broker import free_port
from app.main import create_app


async def test_database_down_is_503_problem_without_trace(settings: Settings) -> None:
    dead = settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nope",
            "db_pool_timeout": 1.0,
        }
    )
    application = create_app(dead)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/agencies")
            ready = await c.get("/readyz")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "2"
    assert "Traceback" not in r.text and "asyncpg" not in r.text
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"postgres": False, "redis": True, "kafka": True}


async def test_redis_down_is_503_problem(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    application = create_app(dead)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/concerts/1")
    assert r.status_code == 503
    assert r.json()["type"].endswith("/service-unavailable")


async def test_request_id_echoed_and_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32
