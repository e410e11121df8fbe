"""Liveness, readiness (PostgreSQL, Redis, Kafka) and the Prometheus endpoint."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from sqlalchemy import text

from app.core.deps import State
from app.core.metrics import render_metrics

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is down"}})
async def readyz(state: State, response: Response) -> dict[str, object]:
    async def postgres() -> bool:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def redis() -> bool:
        return bool(await state.redis.ping())

    async def check(probe: object) -> bool:
        try:
            return bool(await asyncio.wait_for(probe, timeout=2.0))  # type: ignore[arg-type]
        except Exception:
            return False

    pg, rd, kf = await asyncio.gather(check(postgres()), check(redis()), check(state.kafka.ping()))
    checks = {"postgres": pg, "redis": rd, "kafka": kf}
    ok = all(checks.values())
    response.status_code = 200 if ok else 503
    return {"status": "ready" if ok else "not_ready", "checks": checks}


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
