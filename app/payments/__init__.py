"""Payments: the provider protocol, its HTTP client behind a circuit breaker, the registry."""

from app.payments.client import Charge, ChargeStatus, HttpPaymentProvider, PaymentProvider
from app.payments.errors import (
    PaymentConflict,
    PaymentDeclined,
    PaymentError,
    PaymentNotFound,
    PaymentProviderError,
    PaymentUnavailable,
)
from app.payments.registry import PROVIDERS, create_provider

__all__ = [
    "PROVIDERS",
    "Charge",
    "ChargeStatus",
    "HttpPaymentProvider",
    "PaymentConflict",
    "PaymentDeclined",
    "PaymentError",
    "PaymentNotFound",
    "PaymentProvider",
    "PaymentProviderError",
    "PaymentUnavailable",
    "create_provider",
]
