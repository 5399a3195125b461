"""robot calls of the run-scenario robot: the launching user, their token, the launch

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 18:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("robot_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("user_token", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("launch_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_robot_calls_launch_id", ["launch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("robot_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_robot_calls_launch_id")
        batch_op.drop_column("launch_id")
        batch_op.drop_column("user_token")
        batch_op.drop_column("user_id")
