"""A test run of a scenario version on one record: its mode, outcome and step-by-step log.

Written by :func:`marketapp.scenarios.testmode.run_test`; the editor shows the log. Only the
last ``KEEP`` runs of a scenario are kept (older ones are deleted when a run is written).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, TenantMixin, utcnow


class TestRun(TenantMixin, Base):
    __tablename__ = "test_runs"
    __table_args__ = (Index("ix_test_runs_scenario", "scenario_id", "id"),)
    __test__ = False  # not a pytest test class, whatever its name

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scenario_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("scenarios.id", ondelete="CASCADE")
    )
    version_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("scenario_versions.id", ondelete="CASCADE")
    )
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))  # dry | redirect
    user_id: Mapped[int | None] = mapped_column(Integer)  # the admin who ran it
    # [{"step": path, "type": step type, "kind": …, "message": …, "at": ISO time, "detail": {…}}]
    log: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # done | skipped | failed | goal | limit | timeout | running (while it runs)
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
