from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints

from app.catalog.artist.models import ArtistKind
from app.catalog.concert.models import ConcertStatus
from app.catalog.schemas import Id

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ConcertCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    artist_id: Id
    venue_id: Id
    starts_at: AwareDatetime


class ConcertUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    artist_id: Id | None = None
    venue_id: Id | None = None
    starts_at: AwareDatetime | None = None
    status: ConcertStatus | None = None


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
    artist: ArtistSummary
    venue: VenueSummary | None
    created_at: datetime
    updated_at: datetime
