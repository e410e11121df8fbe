"""Booking strategies, looked up by name (the registry the API, tests and benchmarks share)."""

from __future__ import annotations

from app.booking.strategies.atomic import AtomicStrategy
from app.booking.strategies.base import BookingStrategy, HoldRequest
from app.booking.strategies.inprocess import InProcessStrategy
from app.booking.strategies.optimistic import OptimisticStrategy
from app.booking.strategies.pessimistic import PessimisticStrategy
from app.booking.strategies.redis_claim import RedisClaimStrategy
from app.booking.strategies.redis_lock import RedisLockStrategy


def build_registry() -> dict[str, BookingStrategy]:
    """One instance per process (the in-process strategy keeps its locks in the instance)."""
    strategies: list[BookingStrategy] = [
        InProcessStrategy(),
        PessimisticStrategy(),
        OptimisticStrategy(),
        RedisLockStrategy(),
        AtomicStrategy(),
        RedisClaimStrategy(),
    ]
    return {s.name: s for s in strategies}


__all__ = ["BookingStrategy", "HoldRequest", "build_registry"]
