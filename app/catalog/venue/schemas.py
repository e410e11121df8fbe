from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.core.types import CountryCode, Id, Text200

Capacity = Annotated[int, Field(ge=1, le=1_000_000, strict=True)]


class VenueCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text200
    city: Text200
    country: CountryCode
    capacity: Capacity | None = None


class VenueUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text200 | None = None
    city: Text200 | None = None
    country: CountryCode | None = None
    capacity: Capacity | None = None


class VenueRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    name: str
    city: str
    country: str
    capacity: int | None
    created_at: datetime
    updated_at: datetime
