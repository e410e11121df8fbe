from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.core.types import CountryCode, Id, Slug, Text200


class AgencyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text200
    slug: Slug | None = None
    country: CountryCode | None = None


class AgencyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text200 | None = None
    slug: Slug | None = None
    country: CountryCode | None = None


class AgencyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    name: str
    slug: str
    country: str | None
    created_at: datetime
    updated_at: datetime
