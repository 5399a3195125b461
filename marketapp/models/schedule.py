"""A scenario run for a segment on a schedule: daily, weekly or monthly at a local time.

Each run evaluates ``segment`` (a CRM filter, as a launch's filter target) and becomes one
launch with ``source = "schedule"``. ``next_run_at`` is the planned instant of the next run
(UTC; ``None``: no run is left before ``end_date``); the periodic job claims a due row by
moving it, so two workers never take the same run.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, TenantMixin, TimestampMixin


class ScenarioSchedule(TenantMixin, TimestampMixin, Base):
    __tablename__ = "scenario_schedules"
    __table_args__ = (Index("ix_scenario_schedules_due", "active", "next_run_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scenario_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("scenarios.id", ondelete="CASCADE"), index=True
    )
    frequency: Mapped[str] = mapped_column(String(8))  # daily | weekly | monthly
    time_of_day: Mapped[str] = mapped_column(String(5))  # "HH:MM", local to ``zone``
    weekdays: Mapped[list[str]] = mapped_column(JSON, default=list)  # weekly: "mon" … "sun"
    # Monthly: 1..31; a day the month lacks (the 31st in April) runs on its last day.
    month_day: Mapped[int | None] = mapped_column(Integer)
    zone: Mapped[str] = mapped_column(String(64), default="UTC")  # IANA name
    end_date: Mapped[date | None] = mapped_column(Date)  # the last local day that may run
    entity_type: Mapped[str] = mapped_column(String(16))
    segment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # crm.<entity>.list
    sample_percent: Mapped[int | None] = mapped_column(Integer)  # 1..100; None: everyone
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the launch values
    # The Bitrix24 user the runs are made as (the launch's user; ``user.*`` in templates).
    user_id: Mapped[int | None] = mapped_column(Integer)
    user: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # their user.get row
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_launch_id: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(255), default="")  # why the last run failed
