from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.auth.deps import AdminUser
from app.catalog.concert import service
from app.catalog.concert.models import ConcertStatus
from app.catalog.concert.schemas import ConcertCreate, ConcertRead, ConcertUpdate
from app.core.deps import CacheDep, DbSession, State
from app.core.http import body_response
from app.core.openapi import problem_responses
from app.core.pagination import Page
from app.core.types import Id, IsoDatetime, Limit

router = APIRouter(prefix="/concerts", tags=["catalog"])


@router.get("", response_model=Page[ConcertRead], responses=problem_responses(304, 400, 422))
async def list_concerts(
    request: Request,
    state: State,
    agency_id: Annotated[Id | None, Query()] = None,
    artist_id: Annotated[Id | None, Query()] = None,
    venue_id: Annotated[Id | None, Query()] = None,
    status: Annotated[ConcertStatus | None, Query()] = None,
    starts_after: Annotated[IsoDatetime | None, Query()] = None,
    starts_before: Annotated[IsoDatetime | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Limit = 50,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Text in the title or artist name."),
    ] = None,
) -> Response:
    cached = await service.list_concerts_cached(
        state.sessionmaker,
        state.cache,
        agency_id=agency_id,
        artist_id=artist_id,
        venue_id=venue_id,
        status=status,
        starts_after=starts_after,
        starts_before=starts_before,
        cursor=cursor,
        limit=limit,
        q=(q or "").strip() or None,
    )
    assert cached.body is not None
    return body_response(request, cached.body, cached.etag)


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=problem_responses(401, 403, 404, 409, 422)
)
async def create_concert(
    body: ConcertCreate, db: DbSession, cache: CacheDep, _: AdminUser
) -> ConcertRead:
    return ConcertRead.model_validate(await service.create_concert(db, cache, data=body))


@router.get("/{concert_id}", response_model=ConcertRead, responses=problem_responses(304, 404, 422))
async def get_concert(concert_id: Id, request: Request, state: State) -> Response:
    cached = await service.get_concert_cached(
        state.sessionmaker, state.cache, concert_id=concert_id
    )
    assert cached.body is not None
    return body_response(request, cached.body, cached.etag)


@router.patch("/{concert_id}", responses=problem_responses(401, 403, 404, 409, 422))
async def update_concert(
    concert_id: Id, body: ConcertUpdate, db: DbSession, cache: CacheDep, _: AdminUser
) -> ConcertRead:
    concert = await service.update_concert(db, cache, concert_id=concert_id, data=body)
    return ConcertRead.model_validate(concert)


@router.delete(
    "/{concert_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_concert(concert_id: Id, db: DbSession, cache: CacheDep, _: AdminUser) -> Response:
    await service.delete_concert(db, cache, concert_id=concert_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
