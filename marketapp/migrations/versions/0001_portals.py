"""portals

Revision ID: 0001
Revises:
Create Date: 2026-11-22 17:18:29.358764
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("client_endpoint", sa.String(length=512), nullable=False),
        sa.Column("server_endpoint", sa.String(length=512), nullable=False),
        sa.Column("access_token", sa.String(length=1024), nullable=True),
        sa.Column("refresh_token", sa.String(length=1024), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_user_id", sa.Integer(), nullable=True),
        sa.Column("application_token", sa.String(length=1024), nullable=True),
        sa.Column("scope", sa.String(length=512), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "needs_reauth",
                "suspended",
                "uninstalled",
                name="portalstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("installed", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("rate_burst", sa.Integer(), nullable=False),
        sa.Column("rate_per_second", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("portals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_portals_member_id"), ["member_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("portals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_portals_member_id"))

    op.drop_table("portals")
