from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.catalog.artist.models import ArtistKind
from app.core.types import Id, Slug, Text200


class ArtistCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency_id: Id
    name: Text200
    slug: Slug | None = None
    kind: ArtistKind = ArtistKind.group
    parent_id: Id | None = None


class ArtistUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency_id: Id | None = None
    name: Text200 | None = None
    slug: Slug | None = None
    kind: ArtistKind | None = None
    parent_id: Id | None = None


class ArtistRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    agency_id: Id
    parent_id: Id | None
    name: str
    slug: str
    kind: ArtistKind
    created_at: datetime
    updated_at: datetime
