from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.catalog.seat.models import SeatStatus
from app.core.types import Id, Text30, Text60

MAX_SEATS_PER_CONCERT = 200_000


class SectionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text60
    rows: Annotated[int, Field(ge=1, le=702)]  # row labels A..ZZ
    seats_per_row: Annotated[int, Field(ge=1, le=1000)]
    price: Annotated[int, Field(ge=0, le=100_000_000, description="Minor units (e.g. KRW won)")]
    price_tier: Text30 | None = None


class SeatMapGenerate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sections: Annotated[list[SectionSpec], Field(min_length=1, max_length=200)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "KRW"

    @model_validator(mode="after")
    def _check(self) -> SeatMapGenerate:
        names = [s.name.lower() for s in self.sections]
        if len(set(names)) != len(names):
            raise ValueError("section names must be unique")
        total = sum(s.rows * s.seats_per_row for s in self.sections)
        if total > MAX_SEATS_PER_CONCERT:
            raise ValueError(f"{total} seats exceed the limit of {MAX_SEATS_PER_CONCERT}")
        return self


class SectionAvailability(BaseModel):
    section_id: Id
    name: str
    price_tier: str
    price_minor: int
    currency: str
    total: int
    available: int
    held: int
    sold: int


class SeatMapSummary(BaseModel):
    concert_id: Id
    total: int
    available: int
    sections: list[SectionAvailability]


class SeatRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    section_id: Id
    row_label: str
    number: int
    status: SeatStatus
