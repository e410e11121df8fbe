"""streaming_channel: the `channel` table behind live streaming and the nginx-rtmp callbacks.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        # No foreign key to artist on purpose: streaming may get its own database (DESIGN §1).
        sa.Column("artist_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=8), server_default="off", nullable=False),
        sa.Column("live_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_live_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stream_key_hash", sa.String(length=64), nullable=False),
        sa.Column("stream_key_hint", sa.String(length=4), nullable=False),
        sa.Column("stream_key_rotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("live_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("live_key_hash", sa.String(length=64), nullable=True),
        sa.Column("live_client_id", sa.String(length=32), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("state IN ('off', 'live')", name=op.f("ck_channel_state")),
        sa.CheckConstraint(
            "(state = 'live') = (live_since IS NOT NULL AND live_seen_at IS NOT NULL"
            " AND live_key_hash IS NOT NULL AND live_client_id IS NOT NULL)",
            name=op.f("ck_channel_live_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel")),
        sa.UniqueConstraint("stream_key_hash", name=op.f("uq_channel_stream_key_hash")),
    )
    op.create_index(op.f("ix_channel_artist_id"), "channel", ["artist_id"])
    op.create_index("ix_channel_live", "channel", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_channel_live", table_name="channel")
    op.drop_index(op.f("ix_channel_artist_id"), table_name="channel")
    op.drop_table("channel")
