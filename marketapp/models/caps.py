"""Touches: one row per message actually sent to a record, for frequency caps."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, TenantMixin


class Touch(TenantMixin, Base):
    """An e-mail or SMS that went to a record, by a robot or a scenario. ``key`` is the send's
    ledger key, so a send reported twice (a retry, a reconciled claim) is one touch."""

    __tablename__ = "touches"
    __table_args__ = (
        UniqueConstraint("portal_id", "key"),
        Index("ix_touches_record", "portal_id", "channel", "entity_type", "entity_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(8))  # email | sms
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
