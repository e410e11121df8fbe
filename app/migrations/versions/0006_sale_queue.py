"""sale_queue: the `sale` table behind the waiting room and the admission worker.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sale",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("concert_id", sa.BigInteger(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="scheduled", nullable=False),
        sa.Column("max_active", sa.Integer(), nullable=False),
        sa.Column("initial_rate", sa.Double(), nullable=False),
        sa.Column("min_rate", sa.Double(), nullable=False),
        sa.Column("max_rate", sa.Double(), nullable=False),
        sa.Column("close_reason", sa.String(length=12), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.CheckConstraint(
            "status IN ('scheduled', 'open', 'closed')", name=op.f("ck_sale_status")
        ),
        sa.CheckConstraint(
            "close_reason IS NULL OR close_reason IN ('time', 'sold_out', 'manual')",
            name=op.f("ck_sale_close_reason"),
        ),
        sa.CheckConstraint("opens_at < closes_at", name=op.f("ck_sale_window")),
        sa.CheckConstraint("max_active >= 1", name=op.f("ck_sale_max_active")),
        sa.CheckConstraint(
            "min_rate > 0 AND min_rate <= initial_rate AND initial_rate <= max_rate",
            name=op.f("ck_sale_rates"),
        ),
        sa.ForeignKeyConstraint(
            ["concert_id"],
            ["concert.id"],
            name=op.f("fk_sale_concert_id_concert"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sale")),
    )
    op.create_index(op.f("ix_sale_concert_id"), "sale", ["concert_id"])
    op.create_index("ix_sale_status_opens_at", "sale", ["status", "opens_at"])
    op.create_index(
        "uq_sale_live_concert",
        "sale",
        ["concert_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'closed'"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_sale_live_concert", table_name="sale", postgresql_where=sa.text("status <> 'closed'")
    )
    op.drop_index("ix_sale_status_opens_at", table_name="sale")
    op.drop_index(op.f("ix_sale_concert_id"), table_name="sale")
    op.drop_table("sale")
