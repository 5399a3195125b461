"""Leases on queued work rows: claim a batch, release it, find what a sweep must re-queue.

A row is claimable when it is queued, or running with a lease that ran out (its worker died);
claiming sets it running with a fresh lease and counts a take-over in ``attempts``. The claim
is one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING id``: on
PostgreSQL concurrent claimers skip each other's rows instead of waiting or taking them twice;
SQLite (3.35+ for ``RETURNING``) ignores the lock clause and serialises writers anyway.
Robot calls use it now; scenario enrollments are the next rows of this kind.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, case, or_, select, update
from sqlalchemy.orm import Session

M = TypeVar("M")


@dataclass(frozen=True)
class Leases(Generic[M]):
    """Leasing for one model: its queued and running states and how long a lease lasts."""

    model: type[M]
    queued: enum.Enum
    running: enum.Enum
    duration: timedelta

    @property
    def _m(self) -> Any:
        """The model, for its columns ``id``, ``state``, ``lease_until``, ``attempts``,
        ``updated_at`` (a mapped class: its attributes build SQL expressions)."""
        return self.model

    def claimable(self, now: datetime) -> ColumnElement[bool]:
        m = self._m
        expired = (m.state == self.running) & (m.lease_until < now)
        return or_(m.state == self.queued, expired)

    def claim(self, session: Session, *where: ColumnElement[bool], limit: int) -> Sequence[M]:
        """Take up to ``limit`` claimable rows matching ``where`` (oldest first); one commit."""
        m, now = self._m, datetime.now(UTC)
        chosen = (
            select(m.id)
            .where(*where, self.claimable(now))
            .order_by(m.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        taken = session.execute(
            update(m)
            .where(m.id.in_(chosen.scalar_subquery()), self.claimable(now))
            .values(
                state=self.running,
                lease_until=now + self.duration,
                attempts=case((m.state == self.running, m.attempts + 1), else_=m.attempts),
            )
            .returning(m.id)
            .execution_options(synchronize_session=False)
        )
        ids = list(taken.scalars())
        session.commit()
        if not ids:
            return []
        return list(session.scalars(select(m).where(m.id.in_(ids)).order_by(m.id)))

    def release(self, session: Session, rows: Sequence[Any]) -> None:
        """Put running rows back in the queue (an orderly stop: no take-over is counted)."""
        for row in rows:
            if row.state is self.running:
                row.state = self.queued
                row.lease_until = None
        session.commit()

    def needs_sweep(self, now: datetime, idle: timedelta) -> ColumnElement[bool]:
        """Rows nobody works on: queued but idle for ``idle``, or running on a lost lease."""
        m = self._m
        waiting = (m.state == self.queued) & (m.updated_at < now - idle)
        lost = (m.state == self.running) & (m.lease_until < now)
        return or_(waiting, lost)
