from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.catalog.schemas import CountryCode, Id, Name

Capacity = Annotated[int, Field(ge=1, le=1_000_000)]


class VenueCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    city: Name
    country: CountryCode
    capacity: Capacity | None = None


class VenueUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    city: Name | None = None
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
