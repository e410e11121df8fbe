from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.catalog.artist.models import ArtistKind
from app.catalog.concert.models import ConcertStatus
from app.core.types import BodyId, Id, IsoDatetime, Text200

Title = Text200


MaxPerUser = Annotated[int, Field(ge=1, le=20, strict=True)]


class ConcertCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    artist_id: BodyId
    venue_id: BodyId
    starts_at: IsoDatetime
    max_tickets_per_user: MaxPerUser = 4


class ConcertUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    artist_id: BodyId | None = None
    venue_id: BodyId | None = None
    starts_at: IsoDatetime | None = None
    status: ConcertStatus | None = None
    max_tickets_per_user: MaxPerUser | None = None


class ArtistSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    name: str
    slug: str
    kind: ArtistKind
    agency_id: Id


class VenueSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    name: str
    city: str
    country: str


class ConcertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    title: str
    status: ConcertStatus
    starts_at: datetime
    max_tickets_per_user: int
    artist: ArtistSummary
    venue: VenueSummary | None
    created_at: datetime
    updated_at: datetime
