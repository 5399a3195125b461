"""Claim side effects in the ledger before attempting them, settle them after — by batch.

A claim is committed before the attempt, so a crash mid-attempt leaves a ``claimed`` row: the
next attempt finds it and must reconcile (ask the channel whether it happened) instead of
repeating the side effect. A batch of claims is one commit, and so is a batch of settlements:
10,000 records cost a few commits per 50-command REST batch, not three per record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from marketapp.models import Send, SendState

# Keys per ``IN (...)`` when looking rows up: well inside every database's parameter limit.
_LOOKUP_CHUNK = 500
# A concurrent claimer can make our insert collide; we then re-read and try again.
_CLAIM_ROUNDS = 5


class ClaimConflict(Exception):
    """Other workers kept claiming the same keys at the same moment."""


def claim_many(
    session: Session, portal_id: int, keys: Iterable[str], channel: str
) -> dict[str, tuple[Send, bool]]:
    """The ledger row of every key and whether this call created it (a fresh claim); one commit.

    An existing row counts one more attempt. If another worker inserted one of the keys
    meanwhile, the whole claim is rolled back and read again (its rows then exist).
    """
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    for _round in range(_CLAIM_ROUNDS):
        existing = find_many(session, portal_id, wanted)
        for row in existing.values():
            row.attempts += 1
        fresh = {
            key: Send(portal_id=portal_id, key=key, channel=channel, state=SendState.CLAIMED)
            for key in wanted
            if key not in existing
        }
        session.add_all(fresh.values())
        try:
            session.commit()
        except IntegrityError:  # another worker claimed some of them a moment ago
            session.rollback()
            continue
        return {
            key: (existing[key], False) if key in existing else (fresh[key], True) for key in wanted
        }
    raise ClaimConflict(f"could not claim {len(wanted)} keys")


def claim(session: Session, portal_id: int, key: str, channel: str) -> tuple[Send, bool]:
    """:func:`claim_many` for one key."""
    return claim_many(session, portal_id, [key], channel)[key]


def mark(row: Send, state: SendState, external_id: str = "", **detail: Any) -> None:
    """Set a row's outcome; the caller commits (alone or with the rest of its batch)."""
    row.state = state
    row.external_id = external_id
    row.detail = {**(row.detail or {}), **detail}


def settle(
    session: Session,
    row: Send,
    state: SendState,
    external_id: str = "",
    **detail: Any,
) -> None:
    """:func:`mark` one row and commit (a side effect done one by one, e.g. an SMS)."""
    mark(row, state, external_id, **detail)
    session.commit()


def settle_batch(session: Session, rows: dict[str, Send], result: Any) -> list[str]:
    """Settle claimed rows by their commands' outcomes in a ``BatchResult``; one commit.

    A success is ``sent`` (with the returned id, if any), a permanent error ``failed``; the keys
    of transient errors are returned, left claimed so that the next attempt reconciles them.
    """
    transient: list[str] = []
    for key, row in rows.items():
        error = result.errors.get(key)
        if error is None:
            value = result.results.get(key)
            mark(row, SendState.SENT, "" if isinstance(value, bool) else str(value))
        elif error.retryable:
            transient.append(key)
        else:
            mark(row, SendState.FAILED, reason=error.description or str(error))
    session.commit()
    return transient


def release(session: Session, row: Send) -> None:
    """Forget a claim whose attempt surely did not happen (so it may be tried again)."""
    session.delete(row)
    session.commit()


def find_many(session: Session, portal_id: int, keys: list[str]) -> dict[str, Send]:
    """The existing ledger rows of ``keys``."""
    found: dict[str, Send] = {}
    for n in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[n : n + _LOOKUP_CHUNK]
        query = select(Send).where(Send.portal_id == portal_id, Send.key.in_(chunk))
        found.update((row.key, row) for row in session.scalars(query))
    return found
