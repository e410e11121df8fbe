from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.catalog.artist.models import ArtistKind
from app.catalog.concert.models import ConcertStatus
from app.core.types import Id, IsoDatetime, Text200

Title = Text200


class ConcertCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    artist_id: Id
    venue_id: Id
    starts_at: IsoDatetime


class ConcertUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    artist_id: Id | None = None
    venue_id: Id | None = None
    starts_at: IsoDatetime | None = None
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
