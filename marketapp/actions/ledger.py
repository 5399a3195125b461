"""Claim a side effect in the ledger before attempting it, settle it after.

A claim is committed before the attempt, so a crash mid-attempt leaves a ``claimed`` row: the
next attempt finds it and must reconcile (ask the channel whether it happened) instead of
repeating the side effect.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from marketapp.models import Send, SendState


def claim(session: Session, portal_id: int, key: str, channel: str) -> tuple[Send, bool]:
    """Return the ledger row for ``key`` and whether this call created it (a fresh claim)."""
    existing = _find(session, portal_id, key)
    if existing is not None:
        existing.attempts += 1
        session.commit()
        return existing, False
    row = Send(portal_id=portal_id, key=key, channel=channel, state=SendState.CLAIMED)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # another worker claimed it a moment ago
        session.rollback()
        found = _find(session, portal_id, key)
        assert found is not None
        return found, False
    return row, True


def settle(
    session: Session,
    row: Send,
    state: SendState,
    external_id: str = "",
    **detail: Any,
) -> None:
    row.state = state
    row.external_id = external_id
    row.detail = {**(row.detail or {}), **detail}
    session.commit()


def settle_batch(session: Session, rows: dict[str, Send], result: Any) -> list[str]:
    """Settle claimed rows by their commands' outcomes in a ``BatchResult``.

    A success is ``sent`` (with the returned id, if any), a permanent error ``failed``; the keys
    of transient errors are returned, left claimed so that the next attempt reconciles them.
    """
    transient: list[str] = []
    for key, row in rows.items():
        error = result.errors.get(key)
        if error is None:
            value = result.results.get(key)
            settle(session, row, SendState.SENT, "" if isinstance(value, bool) else str(value))
        elif error.retryable:
            transient.append(key)
        else:
            settle(session, row, SendState.FAILED, reason=error.description or str(error))
    return transient


def release(session: Session, row: Send) -> None:
    """Forget a claim whose attempt surely did not happen (so it may be tried again)."""
    session.delete(row)
    session.commit()


def _find(session: Session, portal_id: int, key: str) -> Send | None:
    return session.scalar(select(Send).where(Send.portal_id == portal_id, Send.key == key))
