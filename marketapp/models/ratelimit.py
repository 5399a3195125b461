"""Shared REST limiter state when no Redis is configured: one bucket row per portal, and the
``OPERATION_TIME_LIMIT`` pause and last ``time.operating`` figures per portal and method."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base


class RateBucket(Base):
    """GCRA state of a portal's leaky bucket: the theoretical arrival time of the next request."""

    __tablename__ = "rate_buckets"

    portal_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True
    )
    tat: Mapped[float] = mapped_column(Float, default=0.0)


class MethodBudget(Base):
    """Per-method operating-time state: paused until ``paused_until`` after a 429."""

    __tablename__ = "method_budgets"

    portal_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True
    )
    method: Mapped[str] = mapped_column(String(128), primary_key=True)
    paused_until: Mapped[float] = mapped_column(Float, default=0.0)
    operating: Mapped[float] = mapped_column(Float, default=0.0)
    operating_reset_at: Mapped[float | None] = mapped_column(Float)
