from __future__ import annotations

from typing import Any

from app.core.problems import Conflict, Forbidden, NotFound, ProblemError


class SaleNotFound(NotFound):
    slug = "sale-not-found"
    title = "Sale not found"


class SaleExists(Conflict):
    slug = "sale-exists"
    title = "The concert already has a sale that is not closed"


class InvalidSaleState(Conflict):
    slug = "invalid-sale-state"
    title = "The sale cannot do that in its current state"


class ConcertNotSellable(Conflict):
    slug = "concert-not-sellable"
    title = "The concert cannot get a sale in its current status"


class RateOutOfBounds(ProblemError):
    status = 422
    slug = "rate-out-of-bounds"
    title = "The admission rate is outside the sale's bounds"


class SaleClosed(Conflict):
    """Joining a sale that is over: `state` says closed or sold_out."""

    slug = "sale-closed"
    title = "The sale is over"


class PreQueueNotOpen(Conflict):
    slug = "pre-queue-not-open"
    title = "The waiting room of this sale does not accept fans yet"


class NotInQueue(NotFound):
    slug = "not-in-queue"
    title = "You are not in this sale's queue"


class NotAcceptable(ProblemError):
    status = 406
    slug = "not-acceptable"
    title = "Not acceptable"


class _AdmissionUnauthorized(ProblemError):
    status = 401

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        # 401 needs a challenge; the credential is the X-Admission-Token header, not Bearer.
        super().__init__(
            detail, headers={"WWW-Authenticate": 'AdmissionToken realm="waiting-room"'}, **extra
        )


class AdmissionRequired(_AdmissionUnauthorized):
    slug = "admission-required"
    title = "Booking this concert needs an admission token from its waiting room"


class AdmissionInvalid(_AdmissionUnauthorized):
    slug = "admission-invalid"
    title = "The admission token is not valid"


class AdmissionExpired(_AdmissionUnauthorized):
    slug = "admission-expired"
    title = "The admission token has expired"


class AdmissionOtherSale(Forbidden):
    slug = "admission-other-sale"
    title = "The admission token is for another sale"


class AdmissionOtherFan(Forbidden):
    slug = "admission-other-fan"
    title = "The admission token belongs to another fan"


class AdmissionRevoked(Forbidden):
    slug = "admission-revoked"
    title = "The admission has ended"
