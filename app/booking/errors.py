from __future__ import annotations

from app.core.problems import Conflict, Forbidden, NotFound, ProblemError


class BookingNotFound(NotFound):
    slug = "booking-not-found"
    title = "Booking not found"


class SeatTaken(Conflict):
    slug = "seat-taken"
    title = "One or more seats are already taken"


class SoldOut(Conflict):
    slug = "sold-out"
    title = "Not enough tickets left"


class BookingContention(Conflict):
    """The strategy gave up under contention (lock timeout, retries exhausted, lock lost)."""

    slug = "booking-contention"
    title = "Too much contention for these seats; try again"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class LockLost(Conflict):
    slug = "lock-lost"
    title = "The booking lock expired before the write; nothing was booked"


class TicketLimitExceeded(Conflict):
    slug = "ticket-limit-exceeded"
    title = "Per-fan ticket limit for this concert reached"


class NotOnSale(Conflict):
    slug = "not-on-sale"
    title = "The concert is not on sale"


class HoldExpired(Conflict):
    slug = "hold-expired"
    title = "The hold expired; the seats were released"


class InvalidBookingState(Conflict):
    slug = "invalid-booking-state"
    title = "The booking cannot do that in its current state"


class IdempotencyKeyReused(ProblemError):
    status = 422
    slug = "idempotency-key-reused"
    title = "The Idempotency-Key was already used with a different request"


class InvalidSeats(ProblemError):
    status = 422
    slug = "invalid-seats"
    title = "Some seats do not belong to this concert"


class NoGeneralAdmission(ProblemError):
    status = 422
    slug = "no-general-admission"
    title = "This concert has no general-admission stock"


class NotYourBooking(Forbidden):
    slug = "not-your-booking"
    title = "This booking belongs to another fan"
