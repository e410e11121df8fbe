from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Identity, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TimestampMixin


class Venue(TimestampMixin, Base):
    __tablename__ = "venue"
    __table_args__ = (CheckConstraint("capacity IS NULL OR capacity > 0", name="capacity"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(120))
    country: Mapped[str] = mapped_column(String(2))
    capacity: Mapped[int | None] = mapped_column(Integer)
