from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.core.types import Id

StrategyName = Literal[
    "inprocess", "pessimistic", "optimistic", "redis_lock", "atomic", "redis_claim"
]
IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]


class BookingCreate(BaseModel):
    """Either `seat_ids` (reserved seating) or `quantity` (general admission)."""

    model_config = ConfigDict(extra="forbid")

    seat_ids: Annotated[list[Id], Field(min_length=1, max_length=10)] | None = None
    quantity: Annotated[int, Field(ge=1, le=10, strict=True)] | None = None
    strategy: StrategyName | None = None

    @model_validator(mode="after")
    def _one_of(self) -> BookingCreate:
        if (self.seat_ids is None) == (self.quantity is None):
            raise ValueError("send exactly one of seat_ids or quantity")
        if self.seat_ids is not None and len(set(self.seat_ids)) != len(self.seat_ids):
            raise ValueError("seat_ids must be unique")
        return self


class TicketRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    code: str
    seat_id: Id | None
    issued_at: datetime


class BookingRead(BaseModel):
    id: Id
    concert_id: Id
    status: str
    general_admission: bool
    seat_ids: list[Id]
    quantity: int
    amount_minor: int
    currency: str
    strategy: str
    hold_expires_at: datetime
    created_at: datetime
    tickets: list[TicketRead] = []


class GeneralAdmissionSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # strict: JSON true is not a quantity of 1
    quantity: Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
    price: Annotated[int, Field(ge=0, le=100_000_000, strict=True, description="Minor units")]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "KRW"


class GeneralAdmissionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    concert_id: Id
    total: int
    stock: int
    price_minor: int
    currency: str


class BookingRequestRead(BaseModel):
    """An accepted asynchronous hold (strategy redis_claim) and, once processed, its outcome."""

    request_id: uuid.UUID
    concert_id: Id
    status: Literal["pending", "held", "rejected"]
    booking_id: Id | None = None
    reason: str | None = None
