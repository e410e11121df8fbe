"""accounts_venues_seats: users and refresh tokens, venues, concert status, seat maps.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
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
    ]


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(60), nullable=False),
        sa.Column("role", sa.String(8), server_default="fan", nullable=False),
        *_timestamps(),
        sa.CheckConstraint("role IN ('fan', 'admin')", name=op.f("ck_app_user_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("email", name=op.f("uq_app_user_email")),
    )
    op.create_table(
        "refresh_token",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_refresh_token_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token")),
    )
    op.create_index(op.f("ix_refresh_token_family_id"), "refresh_token", ["family_id"])
    op.create_index(op.f("ix_refresh_token_user_id"), "refresh_token", ["user_id"])

    op.create_table(
        "venue",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("city", sa.String(120), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint("capacity IS NULL OR capacity > 0", name=op.f("ck_venue_capacity")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_venue")),
    )

    # Legacy concerts keep venue_id NULL; they were sold before venues existed.
    op.add_column("concert", sa.Column("venue_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "concert", sa.Column("status", sa.String(16), server_default="draft", nullable=False)
    )
    op.add_column(
        "concert",
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_foreign_key(
        op.f("fk_concert_venue_id_venue"),
        "concert",
        "venue",
        ["venue_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_check_constraint(
        op.f("ck_concert_status"),
        "concert",
        "status IN ('draft', 'on_sale', 'sold_out', 'finished')",
    )
    op.create_index(op.f("ix_concert_venue_id"), "concert", ["venue_id"])
    op.create_index("ix_concert_starts_at_id", "concert", ["starts_at", "id"])

    op.create_table(
        "seat_section",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("concert_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("price_tier", sa.String(30), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_seat_section_price_minor")),
        sa.ForeignKeyConstraint(
            ["concert_id"],
            ["concert.id"],
            name=op.f("fk_seat_section_concert_id_concert"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seat_section")),
        sa.UniqueConstraint("concert_id", "name", name=op.f("uq_seat_section_concert_id_name")),
    )
    op.create_index(op.f("ix_seat_section_concert_id"), "seat_section", ["concert_id"])
    op.create_table(
        "seat",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("concert_id", sa.BigInteger(), nullable=False),
        sa.Column("section_id", sa.BigInteger(), nullable=False),
        sa.Column("row_label", sa.String(8), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(12), server_default="available", nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("status IN ('available', 'held', 'sold')", name=op.f("ck_seat_status")),
        sa.ForeignKeyConstraint(
            ["concert_id"],
            ["concert.id"],
            name=op.f("fk_seat_concert_id_concert"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["section_id"],
            ["seat_section.id"],
            name=op.f("fk_seat_section_id_seat_section"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seat")),
        sa.UniqueConstraint(
            "section_id", "row_label", "number", name=op.f("uq_seat_section_id_row_label_number")
        ),
    )
    op.create_index("ix_seat_concert_id_status", "seat", ["concert_id", "status"])


def downgrade() -> None:
    op.drop_table("seat")
    op.drop_table("seat_section")
    op.drop_index("ix_concert_starts_at_id", table_name="concert")
    op.drop_index(op.f("ix_concert_venue_id"), table_name="concert")
    op.drop_constraint(op.f("ck_concert_status"), "concert", type_="check")
    op.drop_constraint(op.f("fk_concert_venue_id_venue"), "concert", type_="foreignkey")
    op.drop_column("concert", "updated_at")
    op.drop_column("concert", "status")
    op.drop_column("concert", "venue_id")
    op.drop_table("venue")
    op.drop_table("refresh_token")
    op.drop_table("app_user")
