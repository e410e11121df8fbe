"""Payment providers by name (`TR_PAYMENTS_PROVIDER`): one mapping, one factory function."""

from __future__ import annotations

from collections.abc import Callable

from app.core.config import Settings
from app.payments.client import HttpPaymentProvider, PaymentProvider

PROVIDERS: dict[str, Callable[[Settings], PaymentProvider]] = {
    "http": HttpPaymentProvider,
}


def create_provider(settings: Settings) -> PaymentProvider:
    """The provider named by `settings.payments_provider`; the caller must `aclose()` it."""
    try:
        factory = PROVIDERS[settings.payments_provider]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(
            f"unknown payments provider {settings.payments_provider!r} (known: {known})"
        ) from None
    return factory(settings)
