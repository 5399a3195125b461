"""rate limits: per-portal bucket and per-method operating-time state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 18:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["portal_id"], ["portals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("portal_id"),
    )
    op.create_table(
        "method_budgets",
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=128), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=False),
        sa.Column("operating", sa.Float(), nullable=False),
        sa.Column("operating_reset_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["portal_id"], ["portals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("portal_id", "method"),
    )


def downgrade() -> None:
    op.drop_table("method_budgets")
    op.drop_table("rate_buckets")
