"""Per-portal channel settings, the send ledger, SMS messages and field edits."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, Encrypted, TenantMixin, TimestampMixin, enum_column


class ChannelSettings(TenantMixin, TimestampMixin, Base):
    """What an admin configured for the portal's channels and consent."""

    __tablename__ = "portal_settings"
    __table_args__ = (UniqueConstraint("portal_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email_channel: Mapped[str] = mapped_column(String(16), default="portal")  # portal | smtp
    smtp_host: Mapped[str] = mapped_column(String(255), default="")
    smtp_port: Mapped[int] = mapped_column(Integer, default=587)
    smtp_username: Mapped[str] = mapped_column(String(255), default="")
    smtp_password: Mapped[str | None] = mapped_column(Encrypted(1024))
    smtp_starttls: Mapped[bool] = mapped_column(Boolean, default=True)
    smtp_from: Mapped[str] = mapped_column(String(255), default="")
    sms_provider: Mapped[str] = mapped_column(String(16), default="outbox")  # outbox|twilio|smsru
    # Provider credentials as a JSON object (account sid, auth token, api_id, base URL, sender).
    sms_credentials: Mapped[str | None] = mapped_column(Encrypted(4096))
    sms_max_length: Mapped[int] = mapped_column(Integer, default=200)
    default_country: Mapped[str] = mapped_column(String(2), default="RU")
    # The portal's time zone (IANA name) for waits, send windows and schedules; "" is UTC.
    timezone: Mapped[str] = mapped_column(String(64), default="")
    # CRM fields whose "Y"/true value means the client said no to that channel.
    no_email_field: Mapped[str] = mapped_column(String(64), default="")
    no_sms_field: Mapped[str] = mapped_column(String(64), default="")
    # The portal's default send window (a SendWindow as JSON; None: messages go at any time)
    # and its frequency caps ([{"channel": "sms", "count": 1, "period": "day"}, ...]).
    send_window: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    caps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class SendState(enum.StrEnum):
    CLAIMED = "claimed"  # about to be attempted; if found later, the outcome is unknown
    SENT = "sent"
    FAILED = "failed"


class Send(TenantMixin, TimestampMixin, Base):
    """The ledger: a side effect is claimed here before it is attempted and settled after."""

    __tablename__ = "sends"
    __table_args__ = (UniqueConstraint("portal_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(32))
    state: Mapped[SendState] = mapped_column(enum_column(SendState), default=SendState.CLAIMED)
    external_id: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class SmsMessage(TenantMixin, TimestampMixin, Base):
    """Every SMS we handed to a provider; the development outbox is this table."""

    __tablename__ = "sms_messages"
    __table_args__ = (UniqueConstraint("portal_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    sender: Mapped[str] = mapped_column(String(64), default="")
    segments: Mapped[int] = mapped_column(Integer)
    encoding: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="sending")
    provider_message_id: Mapped[str] = mapped_column(String(128), default="", index=True)
    error: Mapped[str] = mapped_column(String(512), default="")
    entity_type: Mapped[str] = mapped_column(String(16), default="")
    entity_id: Mapped[int] = mapped_column(Integer, default=0)


class FieldEdit(TenantMixin, TimestampMixin, Base):
    """Before- and after-images of one record edit, for undo."""

    __tablename__ = "field_edits"
    __table_args__ = (UniqueConstraint("portal_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(Integer)
    before: Mapped[dict[str, Any]] = mapped_column(JSON)
    after: Mapped[dict[str, Any]] = mapped_column(JSON)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
