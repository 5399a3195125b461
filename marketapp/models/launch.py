"""Launches of a scenario version on records: one enrollment per record, counters, a log.

A launch pins a :class:`ScenarioVersion`; each record it runs on is an :class:`Enrollment`
(where it is in the steps, when it is due, its lease). :class:`LaunchCounter` rows are the
launch's counters per step (``step`` ``""``: the launch as a whole), updated in the same
transaction as the state change that moves them. :class:`LaunchEvent` is the per-record log.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, Encrypted, TenantMixin, TimestampMixin, enum_column, utcnow


class LaunchState(enum.StrEnum):
    EXPANDING = "expanding"  # a filter target is still being read, page by page
    RUNNING = "running"
    PARKED = "parked"  # the portal is unavailable; enrollments stay due
    SLEEPING = "sleeping"  # its scenario was deactivated, keeping enrollments where they are
    STOPPING = "stopping"  # stop asked; the in-flight batch finishes
    STOPPED = "stopped"
    DONE = "done"


class EnrollmentState(enum.StrEnum):
    PENDING = "pending"  # due at ``next_at``
    RUNNING = "running"  # leased by a worker
    WAITING = "waiting"  # in a wait step until ``next_at``
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    STOPPED = "stopped"
    GOAL = "goal"  # met the scenario's exit goal and left it


FINAL_STATES = (
    EnrollmentState.DONE,
    EnrollmentState.SKIPPED,
    EnrollmentState.FAILED,
    EnrollmentState.STOPPED,
    EnrollmentState.GOAL,
)


class Launch(TenantMixin, TimestampMixin, Base):
    __tablename__ = "launches"
    # A double click or a repeated POST carries the same key: the same launch.
    __table_args__ = (UniqueConstraint("portal_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scenario_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("scenarios.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("scenario_versions.id", ondelete="CASCADE")
    )
    idempotency_key: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(Integer)  # the launching Bitrix24 user
    # The launching user's ``user.current`` row as templates see it (``user.*``).
    user: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The launching user's token, kept only until the target is read with their rights (the
    # expansion job, minutes at most: it expires within the hour); then wiped.
    user_token: Mapped[str | None] = mapped_column(Encrypted(2048))
    entity_type: Mapped[str] = mapped_column(String(16))
    # A filter target (``None`` for explicit ids); expanded by a job, page by page.
    target_filter: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The filter expansion's cursor: the last record id read (``None``: not started).
    expand_cursor: Mapped[int | None] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[LaunchState] = mapped_column(
        enum_column(LaunchState, length=16), default=LaunchState.RUNNING, index=True
    )
    total: Mapped[int] = mapped_column(Integer, default=0)  # enrollments written so far
    eta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(String(64), default="")  # why parked / failed
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # How the launch was made: manual (a page, the CLI), robot, schedule.
    source: Mapped[str] = mapped_column(String(16), default="manual")


class Enrollment(TenantMixin, TimestampMixin, Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("launch_id", "entity_type", "entity_id"),
        Index("ix_enrollments_due", "portal_id", "state", "next_at"),
        Index("ix_enrollments_record", "portal_id", "entity_type", "entity_id"),  # re-entry
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    launch_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("launches.id", ondelete="CASCADE"), index=True
    )
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[EnrollmentState] = mapped_column(
        enum_column(EnrollmentState, length=16), default=EnrollmentState.PENDING
    )
    step: Mapped[str] = mapped_column(String(128), default="steps[0]")  # the current step
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # lease take-overs
    tries: Mapped[int] = mapped_column(Integer, default=0)  # transient failures of this step
    reason: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    branches: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # path -> branch
    # The scenario's variables: name -> {"type", "value"} (``scenarios.scenario_variables``).
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LaunchCounter(TenantMixin, Base):
    """One counter of a launch: ``name`` is ``entered``, ``waiting``, ``done``, ``goal``,
    ``skipped:<reason>`` or ``failed:<reason>``; ``step`` ``""`` is the whole launch."""

    __tablename__ = "launch_counters"
    __table_args__ = (UniqueConstraint("launch_id", "step", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    launch_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("launches.id", ondelete="CASCADE"), index=True
    )
    scenario_id: Mapped[int] = mapped_column(Integer, index=True)  # per-scenario sums
    step: Mapped[str] = mapped_column(String(128), default="")
    name: Mapped[str] = mapped_column(String(96))
    value: Mapped[int] = mapped_column(Integer, default=0)


class LaunchEvent(TenantMixin, Base):
    """What happened to one enrollment, when, with the REST result id (the per-record log)."""

    __tablename__ = "launch_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    launch_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("launches.id", ondelete="CASCADE"), index=True
    )
    enrollment_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("enrollments.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[str] = mapped_column(String(128), default="")
    kind: Mapped[str] = mapped_column(String(32))  # sent | skipped | failed | waiting | branch …
    reason: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    result_id: Mapped[str] = mapped_column(String(128), default="")  # the REST result id
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
