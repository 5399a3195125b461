"""A Bitrix24 portal that installed the app: the tenant every other row belongs to."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, Encrypted, TimestampMixin, enum_column


class PortalStatus(enum.StrEnum):
    ACTIVE = "active"
    # Refresh failed with invalid_grant / NO_AUTH_FOUND: wait for the next page POST or install.
    NEEDS_REAUTH = "needs_reauth"
    # Paid period over (PAYMENT_REQUIRED): jobs stop until the portal pays.
    SUSPENDED = "suspended"
    UNINSTALLED = "uninstalled"


class Portal(TimestampMixin, Base):
    __tablename__ = "portals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    domain: Mapped[str] = mapped_column(String(255))
    client_endpoint: Mapped[str] = mapped_column(String(512))
    server_endpoint: Mapped[str] = mapped_column(String(512))
    access_token: Mapped[str | None] = mapped_column(Encrypted(1024))
    refresh_token: Mapped[str | None] = mapped_column(Encrypted(1024))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    token_user_id: Mapped[int | None] = mapped_column(Integer)
    application_token: Mapped[str | None] = mapped_column(Encrypted(1024))
    scope: Mapped[str] = mapped_column(String(512), default="")
    status: Mapped[PortalStatus] = mapped_column(
        enum_column(PortalStatus),
        default=PortalStatus.ACTIVE,
    )
    installed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Page sessions carry it; a confirmed uninstall increments it so older sessions are refused.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    language: Mapped[str] = mapped_column(String(8), default="en")
    # Leaky-bucket parameters: 50/2 on standard plans, 250/5 on Enterprise.
    rate_burst: Mapped[int] = mapped_column(Integer, default=50)
    rate_per_second: Mapped[int] = mapped_column(Integer, default=2)
    # One engine job at a time per portal (its REST budget is one): the holder's lease, and
    # whether another job asked for a turn meanwhile (the holder then queues one more run).
    engine_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    engine_rerun: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    def __repr__(self) -> str:  # never print tokens
        return f"<Portal {self.id} {self.member_id} {self.domain} {self.status}>"
