"""booking_inbox_owner: who sent each Kafka booking request and for which concert.

Owner-only polls of `GET /bookings/requests/{id}` need the user; reconciliation of the Redis
inventory needs the concert. Nothing wrote the inbox before this revision (strategy F arrives
with it), so the columns are added NOT NULL without a backfill.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("booking_inbox", sa.Column("user_id", sa.BigInteger(), nullable=False))
    op.add_column("booking_inbox", sa.Column("concert_id", sa.BigInteger(), nullable=False))
    op.create_index("ix_booking_inbox_concert_id", "booking_inbox", ["concert_id"])


def downgrade() -> None:
    op.drop_index("ix_booking_inbox_concert_id", table_name="booking_inbox")
    op.drop_column("booking_inbox", "concert_id")
    op.drop_column("booking_inbox", "user_id")
