"""the portal's time zone, for waits, send windows and schedules

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 20:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("portal_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("timezone", sa.String(length=64), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("portal_settings", schema=None) as batch_op:
        batch_op.drop_column("timezone")
