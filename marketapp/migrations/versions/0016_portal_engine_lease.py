"""one engine job per portal at a time: its lease and the hand-off flag

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 20:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("portals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("engine_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("engine_rerun", sa.Boolean(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("portals", schema=None) as batch_op:
        batch_op.drop_column("engine_rerun")
        batch_op.drop_column("engine_until")
