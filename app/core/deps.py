"""`Annotated` dependency aliases for routes; resources come from the lifespan state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cache import ResponseCache
from app.core.state import AppState


# async on purpose: a plain `def` dependency runs in the threadpool (~50 µs each per request).
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.tr
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_db(state: State) -> AsyncIterator[AsyncSession]:
    async with state.sessionmaker() as session:
        yield session


async def get_cache(state: State) -> ResponseCache:
    return state.cache


async def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


DbSession = Annotated[AsyncSession, Depends(get_db)]
CacheDep = Annotated[ResponseCache, Depends(get_cache)]
ClientIp = Annotated[str, Depends(client_ip)]
