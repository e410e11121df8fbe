"""booking: holds, tickets, payments, general-admission stock, quotas and the Kafka inbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:14:51.865770
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "booking_inbox",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("booking_id", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_booking_inbox")),
    )
    op.create_table(
        "booking",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("concert_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("general_admission", sa.Boolean(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=False),
        sa.Column("hold_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("payment_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
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
            "status IN ('held', 'paid', 'confirmed', 'expired', 'cancelled')",
            name=op.f("ck_booking_status"),
        ),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_booking_amount_minor")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_booking_quantity")),
        sa.ForeignKeyConstraint(
            ["concert_id"],
            ["concert.id"],
            name=op.f("fk_booking_concert_id_concert"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_booking_user_id_app_user"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking")),
        sa.UniqueConstraint(
            "user_id", "idempotency_key", name=op.f("uq_booking_user_id_idempotency_key")
        ),
    )
    op.create_index(op.f("ix_booking_concert_id"), "booking", ["concert_id"], unique=False)
    op.create_index(
        "ix_booking_held_expiry",
        "booking",
        ["hold_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'held'"),
    )
    op.create_index("ix_booking_user_id_id", "booking", ["user_id", "id"], unique=False)
    op.create_table(
        "ga_inventory",
        sa.Column("concert_id", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("fence", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("stock >= 0 AND stock <= total", name=op.f("ck_ga_inventory_stock")),
        sa.ForeignKeyConstraint(
            ["concert_id"],
            ["concert.id"],
            name=op.f("fk_ga_inventory_concert_id_concert"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("concert_id", name=op.f("pk_ga_inventory")),
    )
    op.create_table(
        "ticket_quota",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("concert_id", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("max_allowed", sa.Integer(), nullable=False),
        sa.CheckConstraint("used >= 0 AND used <= max_allowed", name=op.f("ck_ticket_quota_used")),
        sa.ForeignKeyConstraint(
            ["concert_id"],
            ["concert.id"],
            name=op.f("fk_ticket_quota_concert_id_concert"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_ticket_quota_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "concert_id", name=op.f("pk_ticket_quota")),
    )
    op.create_table(
        "payment",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("booking_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_key", sa.String(length=100), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("charge_id", sa.String(length=100), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
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
            "status IN ('pending', 'succeeded', 'declined', 'refunded')",
            name=op.f("ck_payment_status"),
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["booking.id"],
            name=op.f("fk_payment_booking_id_booking"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment")),
        sa.UniqueConstraint("provider_key", name=op.f("uq_payment_provider_key")),
    )
    op.create_index(op.f("ix_payment_booking_id"), "payment", ["booking_id"])
    op.create_index(
        "uq_payment_booking_succeeded",
        "payment",
        ["booking_id"],
        unique=True,
        postgresql_where=sa.text("status = 'succeeded'"),
    )
    op.create_table(
        "booking_seat",
        sa.Column("booking_id", sa.BigInteger(), nullable=False),
        sa.Column("seat_id", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["booking.id"],
            name=op.f("fk_booking_seat_booking_id_booking"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["seat_id"], ["seat.id"], name=op.f("fk_booking_seat_seat_id_seat"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("booking_id", "seat_id", name=op.f("pk_booking_seat")),
    )
    op.create_index(
        "uq_booking_seat_active_seat",
        "booking_seat",
        ["seat_id"],
        unique=True,
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "ticket",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("booking_id", sa.BigInteger(), nullable=False),
        sa.Column("concert_id", sa.BigInteger(), nullable=False),
        sa.Column("seat_id", sa.BigInteger(), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column(
            "issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["booking.id"],
            name=op.f("fk_ticket_booking_id_booking"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["concert_id"],
            ["concert.id"],
            name=op.f("fk_ticket_concert_id_concert"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["seat_id"], ["seat.id"], name=op.f("fk_ticket_seat_id_seat"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket")),
        sa.UniqueConstraint("code", name=op.f("uq_ticket_code")),
    )
    op.create_index(op.f("ix_ticket_booking_id"), "ticket", ["booking_id"], unique=False)
    op.add_column(
        "concert",
        sa.Column("max_tickets_per_user", sa.Integer(), server_default="4", nullable=False),
    )
    op.add_column("seat", sa.Column("fence", sa.BigInteger(), server_default="0", nullable=False))
    op.create_check_constraint(
        op.f("ck_concert_max_tickets_per_user"), "concert", "max_tickets_per_user BETWEEN 1 AND 20"
    )


def downgrade() -> None:
    op.drop_column("seat", "fence")
    op.drop_constraint(op.f("ck_concert_max_tickets_per_user"), "concert", type_="check")
    op.drop_column("concert", "max_tickets_per_user")
    op.drop_index(op.f("ix_ticket_booking_id"), table_name="ticket")
    op.drop_table("ticket")
    op.drop_index(
        "uq_booking_seat_active_seat", table_name="booking_seat", postgresql_where=sa.text("active")
    )
    op.drop_table("booking_seat")
    op.drop_table("payment")
    op.drop_table("ticket_quota")
    op.drop_table("ga_inventory")
    op.drop_index("ix_booking_user_id_id", table_name="booking")
    op.drop_index(
        "ix_booking_held_expiry", table_name="booking", postgresql_where=sa.text("status = 'held'")
    )
    op.drop_index(op.f("ix_booking_concert_id"), table_name="booking")
    op.drop_table("booking")
    op.drop_table("booking_inbox")
