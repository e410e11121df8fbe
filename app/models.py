"""Imports every model module so `Base.metadata` is complete (Alembic, tests)."""

from app.auth import models as auth_models
from app.booking import models as booking_models
from app.catalog.agency import models as agency_models
from app.catalog.artist import models as artist_models
from app.catalog.concert import models as concert_models
from app.catalog.seat import models as seat_models
from app.catalog.venue import models as venue_models
from app.core.db import Base
from app.queue import models as queue_models
from app.streaming import models as streaming_models

__all__ = [
    "Base",
    "agency_models",
    "artist_models",
    "auth_models",
    "booking_models",
    "concert_models",
    "queue_models",
    "seat_models",
    "streaming_models",
    "venue_models",
]
