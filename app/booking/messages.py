"""Kafka messages of the booking pipeline (strategy F `redis_claim`).

`booking-requests` (key = concert id): a hold accepted by the API after its Redis claim.
`booking-results` (key = concert id): the outcome the booking consumer committed to PostgreSQL.
`booking-requests.dlq`: requests that cannot be parsed, with the reason in the `error` header.
Both JSON bodies carry a schema version `v`; consumers reject versions they do not know.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # the strategies package imports this module
    from app.booking.strategies.base import HoldRequest

REQUESTS_TOPIC = "booking-requests"
RESULTS_TOPIC = "booking-results"
DLQ_TOPIC = "booking-requests.dlq"
SCHEMA_VERSION: Literal[1] = 1


class BookingRequestMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = SCHEMA_VERSION
    request_id: uuid.UUID
    user_id: Annotated[int, Field(gt=0)]
    concert_id: Annotated[int, Field(gt=0)]
    seat_ids: Annotated[list[Annotated[int, Field(gt=0)]], Field(max_length=100)]
    quantity: Annotated[int, Field(ge=1, le=100)]
    max_per_user: Annotated[int, Field(ge=1)]
    idempotency_key: Annotated[str, Field(max_length=100)] | None = None
    request_hash: Annotated[str, Field(max_length=64)] | None = None
    strategy: Literal["redis_claim"] = "redis_claim"
    hold_ttl_s: Annotated[int, Field(ge=1)]
    # Load generation of the Redis inventory the claim was made against (diagnostics).
    inventory_version: int = 0
    created_at: datetime

    @model_validator(mode="after")
    def _consistent(self) -> BookingRequestMessage:
        if self.seat_ids and len(self.seat_ids) != self.quantity:
            raise ValueError("quantity must equal the number of seat_ids")
        if len(set(self.seat_ids)) != len(self.seat_ids):
            raise ValueError("seat_ids must be unique")
        return self

    @classmethod
    def of(
        cls,
        req: HoldRequest,
        *,
        request_id: uuid.UUID,
        hold_ttl_s: int,
        inventory_version: int,
        created_at: datetime,
    ) -> BookingRequestMessage:
        return cls(
            request_id=request_id,
            user_id=req.user_id,
            concert_id=req.concert_id,
            seat_ids=list(req.seat_ids),
            quantity=req.quantity,
            max_per_user=req.max_per_user,
            idempotency_key=req.idempotency_key,
            request_hash=req.request_hash,
            hold_ttl_s=hold_ttl_s,
            inventory_version=inventory_version,
            created_at=created_at,
        )

    def key(self) -> bytes:
        return str(self.concert_id).encode()


class BookingResultMessage(BaseModel):
    v: Literal[1] = SCHEMA_VERSION
    request_id: uuid.UUID
    user_id: int
    concert_id: int
    status: Literal["held", "rejected"]
    booking_id: int | None = None
    reason: str | None = None
    processed_at: datetime
