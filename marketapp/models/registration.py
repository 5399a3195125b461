"""What we registered on a portal where Bitrix24 cannot show it back (robot definitions)."""

from __future__ import annotations

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, TenantMixin, TimestampMixin


class Registration(TenantMixin, TimestampMixin, Base):
    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("portal_id", "kind", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(64))
