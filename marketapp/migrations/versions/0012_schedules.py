"""scenario schedules

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 19:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scenario_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scenario_id", sa.Integer(), nullable=False),
        sa.Column("frequency", sa.String(length=8), nullable=False),
        sa.Column("time_of_day", sa.String(length=5), nullable=False),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("month_day", sa.Integer(), nullable=True),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("segment", sa.JSON(), nullable=False),
        sa.Column("sample_percent", sa.Integer(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("user", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_launch_id", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["portal_id"], ["portals.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["scenario_id"], ["scenarios.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("scenario_schedules", schema=None) as batch_op:
        batch_op.create_index("ix_scenario_schedules_due", ["active", "next_run_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_scenario_schedules_portal_id"), ["portal_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_scenario_schedules_scenario_id"), ["scenario_id"], unique=False
        )
    with op.batch_alter_table("launches", schema=None) as batch_op:
        # Launches made before schedules were made by hand or by the robot: "manual" for all.
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), nullable=False, server_default="manual")
        )


def downgrade() -> None:
    with op.batch_alter_table("launches", schema=None) as batch_op:
        batch_op.drop_column("source")
    with op.batch_alter_table("scenario_schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scenario_schedules_scenario_id"))
        batch_op.drop_index(batch_op.f("ix_scenario_schedules_portal_id"))
        batch_op.drop_index("ix_scenario_schedules_due")
    op.drop_table("scenario_schedules")
