from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import Field

from app.auth.deps import AdminUser
from app.catalog.seat import service
from app.catalog.seat.models import SeatStatus
from app.catalog.seat.schemas import SeatMapGenerate, SeatMapSummary, SeatRead
from app.core.deps import CacheDep, DbSession, State
from app.core.http import body_response, model_response
from app.core.openapi import problem_responses
from app.core.pagination import Page
from app.core.types import Id

router = APIRouter(prefix="/concerts/{concert_id}", tags=["seats"])


@router.post(
    "/seats:generate",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def generate_seats(
    concert_id: Id, body: SeatMapGenerate, db: DbSession, cache: CacheDep, _: AdminUser
) -> SeatMapSummary:
    return await service.generate_seat_map(db, cache, concert_id=concert_id, spec=body)


@router.get(
    "/seats", response_model=Page[SeatRead], responses=problem_responses(304, 400, 404, 422)
)
async def list_seats(
    concert_id: Id,
    request: Request,
    db: DbSession,
    status: Annotated[SeatStatus | None, Query()] = None,
    section_id: Annotated[Id | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Field(ge=1, le=1000)] = 500,
) -> Response:
    rows, next_cursor = await service.list_seats(
        db, concert_id=concert_id, status=status, section_id=section_id, cursor=cursor, limit=limit
    )
    page = Page[SeatRead](items=[SeatRead.model_validate(r) for r in rows], next_cursor=next_cursor)
    return model_response(request, page)


@router.get(
    "/availability", response_model=SeatMapSummary, responses=problem_responses(304, 404, 422)
)
async def availability(concert_id: Id, request: Request, state: State) -> Response:
    cached = await service.availability_cached(
        state.sessionmaker, state.cache, concert_id=concert_id
    )
    assert cached.body is not None
    return body_response(request, cached.body, cached.etag)
