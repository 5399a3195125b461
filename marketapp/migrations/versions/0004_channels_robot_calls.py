"""channels and robot calls

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 17:29:08.473544
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "field_edits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["portal_id"], ["portals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("portal_id", "key"),
    )
    with op.batch_alter_table("field_edits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_field_edits_portal_id"), ["portal_id"], unique=False)

    op.create_table(
        "portal_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_channel", sa.String(length=16), nullable=False),
        sa.Column("smtp_host", sa.String(length=255), nullable=False),
        sa.Column("smtp_port", sa.Integer(), nullable=False),
        sa.Column("smtp_username", sa.String(length=255), nullable=False),
        sa.Column("smtp_password", sa.String(length=1024), nullable=True),
        sa.Column("smtp_starttls", sa.Boolean(), nullable=False),
        sa.Column("smtp_from", sa.String(length=255), nullable=False),
        sa.Column("sms_provider", sa.String(length=16), nullable=False),
        sa.Column("sms_credentials", sa.String(length=4096), nullable=True),
        sa.Column("sms_max_length", sa.Integer(), nullable=False),
        sa.Column("default_country", sa.String(length=2), nullable=False),
        sa.Column("no_email_field", sa.String(length=64), nullable=False),
        sa.Column("no_sms_field", sa.String(length=64), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["portal_id"], ["portals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("portal_id"),
    )
    with op.batch_alter_table("portal_settings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_portal_settings_portal_id"), ["portal_id"], unique=False
        )

    op.create_table(
        "robot_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_token_hash", sa.String(length=64), nullable=False),
        sa.Column("event_token", sa.String(length=2048), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("use_subscription", sa.Boolean(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued", "running", "done", name="robotcallstate", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("return_values", sa.JSON(), nullable=False),
        sa.Column("log_message", sa.Text(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["portal_id"], ["portals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("portal_id", "event_token_hash"),
    )
    with op.batch_alter_table("robot_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_robot_calls_portal_id"), ["portal_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_robot_calls_state"), ["state"], unique=False)

    op.create_table(
        "sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column(
            "state",
            sa.Enum("claimed", "sent", "failed", name="sendstate", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["portal_id"], ["portals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("portal_id", "key"),
    )
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sends_portal_id"), ["portal_id"], unique=False)

    op.create_table(
        "sms_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_message_id", sa.String(length=128), nullable=False),
        sa.Column("error", sa.String(length=512), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["portal_id"], ["portals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("portal_id", "key"),
    )
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_messages_portal_id"), ["portal_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sms_messages_provider_message_id"), ["provider_message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_messages_provider_message_id"))
        batch_op.drop_index(batch_op.f("ix_sms_messages_portal_id"))

    op.drop_table("sms_messages")
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sends_portal_id"))

    op.drop_table("sends")
    with op.batch_alter_table("robot_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_robot_calls_state"))
        batch_op.drop_index(batch_op.f("ix_robot_calls_portal_id"))

    op.drop_table("robot_calls")
    with op.batch_alter_table("portal_settings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_portal_settings_portal_id"))

    op.drop_table("portal_settings")
    with op.batch_alter_table("field_edits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_field_edits_portal_id"))

    op.drop_table("field_edits")
