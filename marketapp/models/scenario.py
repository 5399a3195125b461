"""Scenarios as data: a scenario per key and portal, its immutable versions, portal constants."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, TenantMixin, TimestampMixin, utcnow


class Scenario(TenantMixin, TimestampMixin, Base):
    """One scenario of a portal; what it does lives in its versions."""

    __tablename__ = "scenarios"
    __table_args__ = (UniqueConstraint("portal_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    # The version launches use; the latest save unless an admin picks an older one.
    current_version_id: Mapped[int | None] = mapped_column(
        Integer,
        ForeignKey(
            "scenario_versions.id",
            use_alter=True,
            name="fk_scenarios_current_version_id",
            ondelete="SET NULL",
        ),
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ScenarioVersion(TenantMixin, Base):
    """A saved definition. Immutable: a change is a new version (launches pin one)."""

    __tablename__ = "scenario_versions"
    __table_args__ = (UniqueConstraint("scenario_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scenario_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("scenarios.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, … per scenario
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical definition
    author_id: Mapped[int | None] = mapped_column(Integer)  # Bitrix24 user id; None from the CLI
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@event.listens_for(ScenarioVersion, "before_update")
def _refuse_update(_mapper: Any, _conn: Any, target: ScenarioVersion) -> None:
    raise ValueError(f"scenario version {target.id} is immutable; save a new version")


class PortalConstant(TenantMixin, TimestampMixin, Base):
    """A value an admin sets once for templates (``{{ const.company_phone }}``)."""

    __tablename__ = "portal_constants"
    __table_args__ = (UniqueConstraint("portal_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    # string, integer, decimal, boolean or date (``scenarios.typed``); ``value`` is its text.
    type: Mapped[str] = mapped_column(String(16), default="string", server_default="string")
    value: Mapped[str] = mapped_column(Text, default="")
    label: Mapped[str] = mapped_column(String(255), default="")
