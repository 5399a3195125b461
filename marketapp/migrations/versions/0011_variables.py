"""enrollment variables and typed constants

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("portal_constants", schema=None) as batch_op:
        # Every constant so far is text.
        batch_op.add_column(
            sa.Column("type", sa.String(length=16), nullable=False, server_default="string")
        )
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        # The default only fills the rows that exist now; new rows get theirs from the app.
        batch_op.add_column(
            sa.Column("variables", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.alter_column("variables", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("variables")
    with op.batch_alter_table("portal_constants", schema=None) as batch_op:
        batch_op.drop_column("type")
