from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.catalog.artist.models import ArtistKind
from app.core.types import BodyId, Id, Slug, Text200


class ArtistCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency_id: BodyId
    name: Text200
    slug: Slug | None = None
    kind: ArtistKind = ArtistKind.group
    parent_id: BodyId | None = None


class ArtistUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency_id: BodyId | None = None
    name: Text200 | None = None
    slug: Slug | None = None
    kind: ArtistKind | None = None
    parent_id: BodyId | None = None


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
