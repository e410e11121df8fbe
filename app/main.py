"""The FastAPI application factory; resources live in the lifespan, nothing opens at import."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.auth.router import router as auth_router
from app.booking.router import router as booking_router
from app.booking.service import sweep_forever
from app.catalog.agency.router import router as agency_router
from app.catalog.artist.router import router as artist_router
from app.catalog.concert.router import router as concert_router
from app.catalog.seat.router import router as seat_router
from app.catalog.venue.router import router as venue_router
from app.chat.hub import ChatHub
from app.chat.router import router as chat_router
from app.core.cache import ResponseCache
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.kafka import KafkaProducerResource
from app.core.logging import configure_logging
from app.core.middleware import (
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
    StrictCORSMiddleware,
    default_csp,
)
from app.core.openapi import problem_responses
from app.core.problems import install_problem_handlers
from app.core.redis import Keys, create_redis
from app.core.revocations import RevocationList
from app.core.security import AccessTokenVerifier
from app.core.state import AppState
from app.core.tasks import stop_task
from app.health import router as health_router
from app.queue.edge import QueueEdgeMiddleware
from app.queue.router import router as queue_router
from app.streaming.router import router as channel_router
from app.streaming.router import rtmp_router
from app.web.router import router as web_router
from app.web.router import static_files


def build_state(settings: Settings) -> AppState:
    # Domain objects are imported here, not at module import, to keep the core free of cycles.
    from app.booking.strategies import build_registry
    from app.payments.registry import create_provider

    engine = create_engine(settings)
    redis = create_redis(settings)
    keys = Keys(settings.redis_prefix)
    return AppState(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        redis=redis,
        keys=keys,
        kafka=KafkaProducerResource(settings),
        cache=ResponseCache(
            redis,
            prefix=settings.redis_prefix,
            ttl_s=settings.cache_ttl_s,
            jitter=settings.cache_ttl_jitter,
            negative_ttl_s=settings.cache_negative_ttl_s,
            lock_ttl_ms=settings.cache_lock_ttl_ms,
        ),
        payments=create_provider(settings),
        tokens=AccessTokenVerifier(settings),
        revocations=RevocationList(redis, keys, horizon_s=settings.access_token_ttl_s),
        strategies=build_registry(),
    )


def _add_http_middleware(app: FastAPI, settings: Settings) -> None:
    # Added innermost first: request context (id, metrics) sees every answer, security headers
    # go on CORS refusals and 413s too, and a too-large body never reaches a route.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        StrictCORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Idempotency-Key", "X-Admission-Token", "X-Request-ID"],
        expose_headers=["Location", "Retry-After", "ETag", "X-Request-ID"],
        # Bearer tokens travel in a header, never in cookies: no credentialed CORS.
        allow_credentials=False,
        max_age=settings.cors_max_age_s,
    )
    app.add_middleware(
        SecurityHeadersMiddleware,
        csp=default_csp(settings.streaming_hls_base_url) if settings.csp is None else settings.csp,
        hsts_max_age_s=settings.hsts_max_age_s if settings.behind_https else None,
    )
    app.add_middleware(RequestContextMiddleware)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, json=settings.log_json)
        state = build_state(settings)
        await state.kafka.start()
        state.revocations.start()
        sweeper = asyncio.create_task(sweep_forever(state))
        app.state.tr = state
        app.state.chat_hub = ChatHub(state)
        try:
            yield
        finally:
            await app.state.chat_hub.close()
            await stop_task(sweeper, name="hold_sweeper")
            await state.payments.aclose()
            await state.kafka.stop()
            await state.revocations.close()
            await state.redis.aclose()
            await state.engine.dispose()

    app = FastAPI(
        title="Ticket-Rush API",
        version="0.1.0",
        description="First-come-first-served concert ticket sales.",
        lifespan=lifespan,
        # Any route can get a malformed body or query (400) or fail validation (422).
        responses=problem_responses(400, 413, 422),
    )
    install_problem_handlers(app)
    # Innermost: the app's own middleware below wraps its answers too.
    app.add_middleware(QueueEdgeMiddleware)
    _add_http_middleware(app, settings)
    for router in (
        health_router,
        auth_router,
        agency_router,
        artist_router,
        venue_router,
        concert_router,
        seat_router,
        booking_router,
        queue_router,
        channel_router,
        rtmp_router,
        chat_router,
        web_router,
    ):
        app.include_router(router)
    app.mount("/static", static_files(), name="static")
    return app
