"""Payment problems: each maps to one problem `type` and labels the call's metric outcome."""

from __future__ import annotations

from app.core.problems import ProblemError


class PaymentError(ProblemError):
    """Base of the payment problems; `outcome` labels `tr_payment_requests_total`."""

    outcome: str = "error"


class PaymentDeclined(PaymentError):
    status = 402
    slug = "payment-declined"
    title = "Payment declined"
    outcome = "declined"

    def __init__(self, *, charge_id: str, detail: str | None = None) -> None:
        super().__init__(detail or "The payment provider declined the charge.")
        # Kept for the caller's records, not shown to the client.
        self.charge_id = charge_id


class PaymentUnavailable(PaymentError):
    status = 503
    slug = "payment-unavailable"
    title = "Payment provider unavailable"
    outcome = "unavailable"

    def __init__(
        self, *, retry_after: int, detail: str | None = None, breaker_open: bool = False
    ) -> None:
        super().__init__(
            detail or f"The payment provider is unavailable; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )
        self.retry_after = retry_after
        if breaker_open:
            self.outcome = "breaker_open"


class PaymentConflict(PaymentError):
    status = 409
    slug = "payment-conflict"
    title = "Payment conflicts with an earlier one"
    outcome = "conflict"


class PaymentNotFound(PaymentError):
    status = 404
    slug = "payment-not-found"
    title = "No payment under this idempotency key"
    outcome = "not_found"


class PaymentProviderError(PaymentError):
    status = 502
    slug = "payment-provider-error"
    title = "Unexpected answer from the payment provider"
