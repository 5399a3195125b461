"""Leases: a claim takes each row once, skips rows another claimer holds, counts take-overs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from marketapp.models import RobotCall, RobotCallState
from marketapp.robots import LEASES
from tests.support import add_portal, add_robot_call

N = 200


def queue_calls(db: Session, n: int = N) -> int:
    portal = add_portal(db)
    for i in range(1, n + 1):
        add_robot_call(portal, i, RobotCallState.QUEUED)
    db.commit()
    return portal.id


def on_postgresql(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def test_claim_takes_queued_and_expired_rows_and_counts_take_overs(
    app: object, db: Session
) -> None:
    portal_id = queue_calls(db, 3)
    db.execute(
        update(RobotCall)
        .where(RobotCall.entity_id == 2)
        .values(state=RobotCallState.RUNNING, lease_until=datetime.now(UTC) - timedelta(1))
    )
    db.execute(
        update(RobotCall)
        .where(RobotCall.entity_id == 3)
        .values(state=RobotCallState.RUNNING, lease_until=datetime.now(UTC) + timedelta(1))
    )
    db.commit()
    claimed = LEASES.claim(db, RobotCall.portal_id == portal_id, limit=50)
    assert [(c.entity_id, c.attempts) for c in claimed] == [(1, 0), (2, 1)]
    assert {c.state for c in claimed} == {RobotCallState.RUNNING}
    assert LEASES.claim(db, RobotCall.portal_id == portal_id, limit=50) == []
    LEASES.release(db, claimed)
    again = LEASES.claim(db, RobotCall.portal_id == portal_id, limit=50)
    assert [(c.entity_id, c.attempts) for c in again] == [(1, 0), (2, 1)]  # release is no take-over


def test_concurrent_claimers_never_take_the_same_row(app: Flask, db: Session) -> None:
    if not on_postgresql(db):
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers")
    portal_id = queue_calls(db)
    make = sessionmaker(bind=db.get_bind())
    taken: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(len(taken))

    def claimer(mine: list[int]) -> None:
        with app.app_context(), make() as session:  # rows decrypt with the app's keys
            start.wait()
            while rows := LEASES.claim(session, RobotCall.portal_id == portal_id, limit=7):
                mine.extend(r.id for r in rows)

    threads = [threading.Thread(target=claimer, args=(t,)) for t in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for mine in taken for i in mine]
    assert len(every) == len(set(every)) == N


def test_a_claim_skips_rows_another_transaction_holds(app: object, db: Session) -> None:
    if not on_postgresql(db):
        pytest.skip("SKIP LOCKED is PostgreSQL's")
    portal_id = queue_calls(db, 10)
    make = sessionmaker(bind=db.get_bind())
    with make() as holder:  # another claimer, mid-transaction, holding the first five rows
        held = holder.scalars(
            select(RobotCall.id).order_by(RobotCall.id).limit(5).with_for_update()
        ).all()
        claimed = LEASES.claim(db, RobotCall.portal_id == portal_id, limit=50)
        assert {c.id for c in claimed}.isdisjoint(held) and len(claimed) == 5
        holder.rollback()
