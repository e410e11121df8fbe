from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.auth.deps import AdminUser
from app.catalog.agency import service
from app.catalog.agency.schemas import AgencyCreate, AgencyRead, AgencyUpdate
from app.core.deps import CacheDep, DbSession
from app.core.http import model_response
from app.core.openapi import problem_responses
from app.core.pagination import Page
from app.core.types import CountryCode, Id, Limit

router = APIRouter(prefix="/agencies", tags=["catalog"])


@router.get("", response_model=Page[AgencyRead], responses=problem_responses(304, 400, 422))
async def list_agencies(
    request: Request,
    db: DbSession,
    country: Annotated[CountryCode | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Limit = 50,
) -> Response:
    rows, next_cursor = await service.list_agencies(db, country=country, cursor=cursor, limit=limit)
    page = Page[AgencyRead](
        items=[AgencyRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )
    return model_response(request, page)


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=problem_responses(401, 403, 409, 422)
)
async def create_agency(body: AgencyCreate, db: DbSession, _: AdminUser) -> AgencyRead:
    return AgencyRead.model_validate(await service.create_agency(db, data=body))


@router.get("/{agency_id}", response_model=AgencyRead, responses=problem_responses(304, 404, 422))
async def get_agency(agency_id: Id, request: Request, db: DbSession) -> Response:
    agency = await service.get_agency(db, agency_id=agency_id)
    return model_response(request, AgencyRead.model_validate(agency))


@router.patch("/{agency_id}", responses=problem_responses(401, 403, 404, 409, 422))
async def update_agency(
    agency_id: Id, body: AgencyUpdate, db: DbSession, cache: CacheDep, _: AdminUser
) -> AgencyRead:
    agency = await service.update_agency(db, cache, agency_id=agency_id, data=body)
    return AgencyRead.model_validate(agency)


@router.delete(
    "/{agency_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_agency(agency_id: Id, db: DbSession, _: AdminUser) -> Response:
    await service.delete_agency(db, agency_id=agency_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
