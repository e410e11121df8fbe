"""Process-wide resources, created by the app lifespan and handed out by dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.cache import ResponseCache
from app.core.config import Settings
from app.core.kafka import KafkaProducerResource
from app.core.redis import Keys
from app.core.revocations import RevocationList
from app.core.security import AccessTokenVerifier

if TYPE_CHECKING:
    from app.booking.strategies import BookingStrategy
    from app.payments.client import PaymentProvider


@dataclass(slots=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    kafka: KafkaProducerResource
    cache: ResponseCache
    payments: PaymentProvider
    tokens: AccessTokenVerifier
    revocations: RevocationList
    strategies: dict[str, BookingStrategy] = field(default_factory=dict)
