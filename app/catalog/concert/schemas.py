from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.catalog.artist.models import ArtistKind
from app.catalog.concert.models import ConcertStatus
from app.core.types import Id, IsoDatetime, Text200

Title = Text200


MaxPerUser = Annotated[int, Field(ge=1, le=20)]


class ConcertCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    artist_id: Id
    venue_id: Id
    starts_at: IsoDatetime
    max_tickets_per_user: MaxPerUser = 4


class ConcertUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    artist_id: Id | None = None
    venue_id: Id | None = None
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
