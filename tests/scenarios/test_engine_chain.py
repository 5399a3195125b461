"""One engine job per portal: the portal lease is taken once, a second job asks for a turn and
leaves, the holder hears of it when it leaves, and a dead holder's lease runs out."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from marketapp.models import Portal
from marketapp.scenarios.engine import CHAIN
from tests.support import add_portal


def test_a_second_job_asks_for_a_turn_and_the_holder_hears_it(app: object, db: Session) -> None:
    portal = add_portal(db)
    db.commit()
    assert CHAIN.take(db, portal.id)
    assert not CHAIN.take(db, portal.id)  # held: it asks for a turn and leaves
    assert CHAIN.leave(db, portal.id)  # the holder queues one more run
    db.commit()
    assert CHAIN.take(db, portal.id)  # free again
    assert not CHAIN.leave(db, portal.id)  # nobody asked this time
    db.commit()


def test_a_dead_holders_lease_runs_out(app: object, db: Session) -> None:
    portal = add_portal(db)
    db.commit()
    assert CHAIN.take(db, portal.id)
    past = datetime.now(UTC) - timedelta(seconds=1)
    db.execute(update(Portal).where(Portal.id == portal.id).values(engine_until=past))
    db.commit()
    assert CHAIN.take(db, portal.id)


def test_concurrent_jobs_take_the_portal_once(app: object, db: Session) -> None:
    portal = add_portal(db)
    db.commit()
    sessions = sessionmaker(bind=db.get_bind(), expire_on_commit=False)
    taken: list[bool] = []
    start = threading.Barrier(8)

    def job() -> None:
        with sessions() as session:
            start.wait()
            taken.append(CHAIN.take(session, portal.id))

    threads = [threading.Thread(target=job) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken.count(True) == 1, taken
