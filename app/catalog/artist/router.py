from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.auth.deps import AdminUser
from app.catalog.artist import service
from app.catalog.artist.models import ArtistKind
from app.catalog.artist.schemas import ArtistCreate, ArtistRead, ArtistUpdate
from app.core.deps import CacheDep, DbSession
from app.core.http import model_response
from app.core.openapi import problem_responses
from app.core.pagination import Page
from app.core.types import Id, Limit

router = APIRouter(prefix="/artists", tags=["catalog"])


@router.get("", response_model=Page[ArtistRead], responses=problem_responses(304, 400, 422))
async def list_artists(
    request: Request,
    db: DbSession,
    agency_id: Annotated[Id | None, Query()] = None,
    parent_id: Annotated[Id | None, Query(description="Members and sub-units of a group")] = None,
    kind: Annotated[ArtistKind | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Limit = 50,
) -> Response:
    rows, next_cursor = await service.list_artists(
        db, agency_id=agency_id, parent_id=parent_id, kind=kind, cursor=cursor, limit=limit
    )
    page = Page[ArtistRead](
        items=[ArtistRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )
    return model_response(request, page)


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=problem_responses(401, 403, 404, 409, 422)
)
async def create_artist(body: ArtistCreate, db: DbSession, _: AdminUser) -> ArtistRead:
    return ArtistRead.model_validate(await service.create_artist(db, data=body))


@router.get("/{artist_id}", response_model=ArtistRead, responses=problem_responses(304, 404, 422))
async def get_artist(artist_id: Id, request: Request, db: DbSession) -> Response:
    artist = await service.get_artist(db, artist_id=artist_id)
    return model_response(request, ArtistRead.model_validate(artist))


@router.patch("/{artist_id}", responses=problem_responses(401, 403, 404, 409, 422))
async def update_artist(
    artist_id: Id, body: ArtistUpdate, db: DbSession, cache: CacheDep, _: AdminUser
) -> ArtistRead:
    artist = await service.update_artist(db, cache, artist_id=artist_id, data=body)
    return ArtistRead.model_validate(artist)


@router.delete(
    "/{artist_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_artist(artist_id: Id, db: DbSession, _: AdminUser) -> Response:
    await service.delete_artist(db, artist_id=artist_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
