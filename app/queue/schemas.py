from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.types import BodyId, Id, IsoDatetime
from app.queue.models import CloseReason, SaleStatus

Rate = Annotated[
    float, Field(gt=0, le=100_000, allow_inf_nan=False, strict=True, description="Fans/second")
]
QueueState = Literal["pre_queue", "waiting", "admitted", "expired", "sold_out", "closed"]
RateMode = Literal["manual", "auto"]


class SaleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concert_id: BodyId
    opens_at: IsoDatetime
    closes_at: IsoDatetime
    max_active: Annotated[
        int,
        Field(
            ge=1, le=1_000_000, strict=True, description="Admitted fans shopping at once, at most"
        ),
    ] = 1000
    initial_rate: Rate = 50.0
    min_rate: Rate = 5.0
    max_rate: Rate = 500.0

    @model_validator(mode="after")
    def _consistent(self) -> SaleCreate:
        if self.opens_at >= self.closes_at:
            raise ValueError("opens_at must be before closes_at")
        if self.closes_at <= datetime.now(UTC):
            raise ValueError("closes_at must be in the future")
        if not self.min_rate <= self.initial_rate <= self.max_rate:
            raise ValueError("rates must satisfy min_rate <= initial_rate <= max_rate")
        return self


class SaleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    concert_id: Id
    status: SaleStatus
    opens_at: datetime
    closes_at: datetime
    max_active: int
    initial_rate: float
    min_rate: float
    max_rate: float
    close_reason: CloseReason | None
    opened_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class RateSet(BaseModel):
    """`manual` pins the rate (0 pauses admission) until set again; `auto` starts the
    backpressure controller from this rate, within [min_rate, max_rate]."""

    model_config = ConfigDict(extra="forbid")

    rate: Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False, strict=True)]
    mode: RateMode = "manual"


class RateRead(BaseModel):
    sale_id: Id
    rate: float
    mode: RateMode


class QueueStatus(BaseModel):
    """A fan's place in a sale's waiting room."""

    sale_id: Id
    state: QueueState
    position: Annotated[
        int | None,
        Field(
            description="Your number in line, fixed once given (drawn at open for the pre-queue)"
        ),
    ] = None
    people_ahead: Annotated[
        int | None, Field(description="Fans still waiting ahead of you, live")
    ] = None
    eta_seconds: Annotated[
        int | None,
        Field(
            description="Estimated wait from the measured admission rate (pre-queue: until the "
            "draw at open); null when unknown"
        ),
    ] = None
    poll_after_seconds: Annotated[
        float | None,
        Field(description="When to check again; null when there is nothing to wait for"),
    ] = None
    admission_token: Annotated[
        str | None, Field(description="Send as X-Admission-Token when booking")
    ] = None
    admission_expires_at: datetime | None = None
    reason: Annotated[
        str | None,
        Field(
            description="expired: abandoned | admission_expired | admission_unclaimed | "
            "admission_idle; closed: time | manual"
        ),
    ] = None
    message: str
    opens_at: datetime
    closes_at: datetime
    rejoin_url: Annotated[
        str | None, Field(description="POST here to get a new place at the back of the line")
    ] = None
    events_url: str


class SaleStats(BaseModel):
    sale_id: Id
    status: SaleStatus
    close_reason: CloseReason | None
    queue_length: int
    pre_queue: int
    admitted_active: int
    admitted_total: int
    joined: int
    abandoned: int
    admission_expired: int
    admission_unclaimed: int
    admission_idle: int
    left: int
    completed: int
    queued_at_close: int | None
    current_rate: float
    rate_mode: RateMode
    measured_rate: float | None
    eta_last_seconds: int | None
    max_active: int
    stock_state: Literal["ok", "in_carts", "unknown"]
    free_units: int | None
    leader: str | None
    consumer_lag: Annotated[
        float | None,
        Field(
            description="Booking-consumer lag (messages) as the admission controller sees it, "
            "for the whole pipeline; null when no consumer reports"
        ),
    ] = None
