"""A scheduled run against the emulator over HTTP (the harness worker runs the jobs): the launch
is marked ``schedule``, its segment is read with the portal's stored token when the run starts,
its enrollments are exactly the filter's records, and a 50% sample is the hash's half."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.models import Enrollment, EnrollmentState, Launch, Portal
from marketapp.scenarios import schedules as sch
from marketapp.scenarios import versions
from marketapp.scenarios.launches import in_sample
from tests.e2e.harness import Installed, wait_for

pytestmark = pytest.mark.e2e

COMMENT = {"type": "timeline_comment", "text": "Scheduled check of {{ contact.NAME }}"}
T0 = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def definition() -> dict[str, Any]:
    return {
        "schema": 1,
        "key": "weekly-check",
        "name": {"en": "Weekly check", "ru": "Еженедельная проверка"},
        "description": {"en": "A comment on each record.", "ru": "Комментарий к записи."},
        "entity_types": ["CONTACT"],
        "steps": [COMMENT],
        "timeline": False,
    }


@pytest.fixture
def seeded(installed: Installed) -> Iterator[Installed]:
    installed.portal("/seed", "POST", contacts=50, companies=0, deals=0, leads=0)
    with installed.app.app.app_context():
        session = db_session()
        portal = session.scalars(select(Portal)).one()
        versions.save(session, portal, definition(), author_id=1)
        session.commit()
        session.close()
    yield installed


def in_app(inst: Installed, fn: Any) -> Any:
    with inst.app.app.app_context():
        try:
            return fn(db_session())
        finally:
            db_session().close()


def contact_ids(inst: Installed) -> list[int]:
    return sorted(int(c["ID"]) for c in inst.portal("/crm/contact"))


def add(inst: Installed, **kw: Any) -> int:
    def make(session: Any) -> int:
        portal = session.scalars(select(Portal)).one()
        rule = sch.Rule("daily", "13:30", zone="Europe/Berlin")
        row = sch.create_schedule(session, portal, "weekly-check", rule, now=T0, **kw)
        session.commit()
        return int(row.id)

    result: int = in_app(inst, make)
    return result


def run(inst: Installed, at: datetime) -> list[int]:
    made: list[int] = in_app(inst, lambda s: sch.run_due(s, at))
    inst.settle()
    wait_for(lambda: all(finished(inst, i) for i in made))
    return made


def finished(inst: Installed, launch_id: int) -> bool:
    def read(session: Any) -> bool:
        row = session.get(Launch, launch_id)
        return str(row.state) in ("done", "stopped")

    result: bool = in_app(inst, read)
    return result


def enrolled(inst: Installed, launch_id: int) -> dict[int, EnrollmentState]:
    def read(session: Any) -> dict[int, EnrollmentState]:
        rows = session.execute(
            select(Enrollment.entity_id, Enrollment.state).where(Enrollment.launch_id == launch_id)
        ).all()
        return {int(i): s for i, s in rows}

    result: dict[int, EnrollmentState] = in_app(inst, read)
    return result


def test_a_scheduled_run_enrolls_the_segment_read_at_run_time(seeded: Installed) -> None:
    ids = contact_ids(seeded)
    cut = ids[30]
    add(seeded, segment={"<ID": cut})
    assert run(seeded, T0) == []  # 13:30 Berlin is 12:30 UTC: not yet

    (launch_id,) = run(seeded, T0 + timedelta(minutes=45))
    got = enrolled(seeded, launch_id)
    assert set(got) == {i for i in ids if i < cut}
    assert set(got.values()) == {EnrollmentState.DONE}  # the comment step ran for each

    def launch_row(session: Any) -> tuple[str, int | None, str | None, str]:
        row = session.get(Launch, launch_id)
        return row.source, row.user_id, row.user_token, str(row.state)

    assert in_app(seeded, launch_row) == ("schedule", 1, None, "done")

    # The segment is evaluated at each run: a contact added since is in the next one.
    seeded.portal("/seed", "POST", contacts=3, companies=0, deals=0, leads=0)
    (second,) = run(seeded, T0 + timedelta(days=1, minutes=45))
    assert second != launch_id
    assert set(enrolled(seeded, second)) == {i for i in contact_ids(seeded) if i < cut}


def test_a_sampled_run_keeps_the_hashed_half_of_the_segment(seeded: Installed) -> None:
    ids = contact_ids(seeded)
    add(seeded, segment={}, sample_percent=50)
    (launch_id,) = run(seeded, T0 + timedelta(hours=1))
    key = in_app(seeded, lambda s: s.get(Launch, launch_id).idempotency_key)
    got = set(enrolled(seeded, launch_id))
    assert got == {i for i in ids if in_sample(key, 50, i)}  # the same run: the same sample
    assert 15 <= len(got) <= 35  # about half of 50 (this hash's half is fixed: no flakiness)
