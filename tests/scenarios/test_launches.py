"""launch(): one launch and its enrollments in bulk, the same launch for the same key; stop."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketapp.models import Enrollment, EnrollmentState, Launch, LaunchState
from marketapp.scenarios import launches, versions
from marketapp.scenarios.preview import Selection
from tests.scenarios.support import add_portal, definition


def _setup(db: Session) -> tuple[object, object]:
    portal = add_portal(db, "p1")
    version = versions.save(db, portal, definition())
    db.commit()
    return portal, version


def test_launch_writes_one_enrollment_per_record_and_counts_them(db: Session) -> None:
    portal, version = _setup(db)
    selection = Selection("CONTACT", tuple(range(1, 10_001)))
    started = time.perf_counter()
    row = launches.launch(db, portal, version, selection, {}, 1, None, "k1")  # type: ignore[arg-type]
    print(f"launch() of 10,000 records: {time.perf_counter() - started:.3f} s")
    assert row.state is LaunchState.RUNNING
    count = db.scalar(select(func.count()).where(Enrollment.launch_id == row.id))
    assert count == 10_000
    status = launches.status(db, portal, row.id)  # type: ignore[arg-type]
    assert status["total"] == 10_000
    assert status["counters"]["entered"] == 10_000
    again = launches.launch(db, portal, version, Selection("CONTACT", (1, 2)), {}, 1, None, "k2")  # type: ignore[arg-type]
    totals = launches.status(db, portal, again.id)["scenario_counters"]  # type: ignore[arg-type]
    assert totals["entered"] == 10_002  # per scenario: every launch of it


def test_the_same_key_returns_the_same_launch(db: Session) -> None:
    portal, version = _setup(db)
    selection = Selection("CONTACT", (1, 2, 2, 3))
    first = launches.launch(db, portal, version, selection, {}, 1, None, "same")  # type: ignore[arg-type]
    again = launches.launch(db, portal, version, selection, {}, 1, None, "same")  # type: ignore[arg-type]
    assert again.id == first.id
    assert db.scalar(select(func.count()).select_from(Launch)) == 1
    assert db.scalar(select(func.count()).select_from(Enrollment)) == 3


def test_stop_cancels_what_has_not_started(db: Session) -> None:
    portal, version = _setup(db)
    row = launches.launch(db, portal, version, Selection("CONTACT", (1, 2, 3)), {}, 1, None, "s")  # type: ignore[arg-type]
    db.execute(
        Enrollment.__table__.update()
        .where(Enrollment.entity_id == 1)
        .values(state=EnrollmentState.RUNNING)
    )
    db.commit()
    result = launches.stop(db, portal, row.id)  # type: ignore[arg-type]
    assert (result["stopped"], result["in_flight"], result["state"]) == (2, 1, "stopping")
    assert launches.status(db, portal, row.id)["counters"]["stopped"] == 2  # type: ignore[arg-type]


def test_an_empty_selection_is_refused(db: Session) -> None:
    import pytest

    portal, version = _setup(db)
    with pytest.raises(launches.LaunchError):
        launches.launch(db, portal, version, Selection("CONTACT", ()), {}, 1, None, "e")  # type: ignore[arg-type]
    assert db.scalar(select(func.count()).select_from(Launch)) == 0
