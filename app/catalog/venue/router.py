from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.auth.deps import AdminUser
from app.catalog.venue import service
from app.catalog.venue.schemas import VenueCreate, VenueRead, VenueUpdate
from app.core.deps import CacheDep, DbSession
from app.core.http import model_response
from app.core.openapi import problem_responses
from app.core.pagination import Page
from app.core.types import CountryCode, Id, Limit

router = APIRouter(prefix="/venues", tags=["catalog"])


@router.get("", response_model=Page[VenueRead], responses=problem_responses(304, 400, 422))
async def list_venues(
    request: Request,
    db: DbSession,
    country: Annotated[CountryCode | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Limit = 50,
) -> Response:
    rows, next_cursor = await service.list_venues(db, country=country, cursor=cursor, limit=limit)
    page = Page[VenueRead](
        items=[VenueRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )
    return model_response(request, page)


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=problem_responses(401, 403, 409, 422)
)
async def create_venue(body: VenueCreate, db: DbSession, _: AdminUser) -> VenueRead:
    return VenueRead.model_validate(await service.create_venue(db, data=body))


@router.get("/{venue_id}", response_model=VenueRead, responses=problem_responses(304, 404, 422))
async def get_venue(venue_id: Id, request: Request, db: DbSession) -> Response:
    venue = await service.get_venue(db, venue_id=venue_id)
    return model_response(request, VenueRead.model_validate(venue))


@router.patch("/{venue_id}", responses=problem_responses(401, 403, 404, 409, 422))
async def update_venue(
    venue_id: Id, body: VenueUpdate, db: DbSession, cache: CacheDep, _: AdminUser
) -> VenueRead:
    venue = await service.update_venue(db, cache, venue_id=venue_id, data=body)
    return VenueRead.model_validate(venue)


@router.delete(
    "/{venue_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_venue(venue_id: Id, db: DbSession, _: AdminUser) -> Response:
    await service.delete_venue(db, venue_id=venue_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
