"""A robot call from Bitrix24 automation, stored before it is answered (keyed by event_token)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, Encrypted, TenantMixin, TimestampMixin, enum_column


class RobotCallState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # the action ran (sent, skipped or failed) and Bitrix24 got the answer
    # Not shown to come from a workflow of the portal (marketapp.robot_origin): no side effect,
    # no answer. Stored as a string: no migration.
    REJECTED = "rejected"
    # A "Run scenario" call whose launch is running its record (``wait = yes``); it goes back
    # to QUEUED with its outcome when the record's enrollment ends (marketapp.scenarios.robot).
    WAITING = "waiting"


class RobotCall(TenantMixin, TimestampMixin, Base):
    __tablename__ = "robot_calls"
    __table_args__ = (UniqueConstraint("portal_id", "event_token_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_token_hash: Mapped[str] = mapped_column(String(64))
    event_token: Mapped[str] = mapped_column(Encrypted(2048))
    code: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(64))
    document_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(Integer)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON)
    use_subscription: Mapped[bool] = mapped_column(default=True)
    state: Mapped[RobotCallState] = mapped_column(
        enum_column(RobotCallState, length=16),
        default=RobotCallState.QUEUED,
        index=True,
    )
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="")  # sent | skipped | failed
    return_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    log_message: Mapped[str] = mapped_column(Text, default="")
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The call's ``auth[user_id]`` (the robot's run-as user) and that user's access token, kept
    # until the run-scenario robot has launched with it, then wiped.
    user_id: Mapped[int | None] = mapped_column(Integer)
    user_token: Mapped[str | None] = mapped_column(Encrypted(2048))
    launch_id: Mapped[int | None] = mapped_column(Integer, index=True)  # run_scenario calls
