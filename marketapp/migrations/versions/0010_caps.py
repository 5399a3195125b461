"""send windows and frequency caps

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "touches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["portal_id"], ["portals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("portal_id", "key"),
    )
    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_touches_portal_id"), ["portal_id"], unique=False)
        batch_op.create_index(
            "ix_touches_record",
            ["portal_id", "channel", "entity_type", "entity_id", "at"],
            unique=False,
        )
    with op.batch_alter_table("portal_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_window", sa.JSON(), nullable=True))
        # Existing portals have no caps; the default only fills the rows that exist now.
        batch_op.add_column(
            sa.Column("caps", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("portal_settings", schema=None) as batch_op:
        batch_op.alter_column("caps", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("portal_settings", schema=None) as batch_op:
        batch_op.drop_column("caps")
        batch_op.drop_column("send_window")
    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.drop_index("ix_touches_record")
        batch_op.drop_index(batch_op.f("ix_touches_portal_id"))
    op.drop_table("touches")
