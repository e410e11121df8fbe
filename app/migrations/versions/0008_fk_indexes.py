"""fk_indexes: index the foreign keys that deleting a concert's seats has to check.

Without them every deleted seat costs a sequential scan of booking_seat and ticket, so deleting
a draft concert with a large seat map ran past the statement timeout.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_booking_seat_seat_id", "booking_seat", "seat_id"),
    ("ix_ticket_concert_id", "ticket", "concert_id"),
    ("ix_ticket_seat_id", "ticket", "seat_id"),
)


def upgrade() -> None:
    for name, table, column in _INDEXES:
        op.create_index(name, table, [column], unique=False)


def downgrade() -> None:
    for name, table, _column in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
