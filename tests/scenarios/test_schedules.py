"""Schedules under a controlled clock: the next 12 runs (daily, weekly, monthly; DST in
Europe/Berlin; month ends), one launch per run however many workers or missed runs, an end
date, a turned-off scenario, the rule's checks and the sample's hash."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketapp.db import get_db
from marketapp.models import Launch, Portal, ScenarioSchedule
from marketapp.scenarios import schedules as sch
from marketapp.scenarios import versions
from marketapp.scenarios.launches import SAMPLE_KEY, in_sample
from marketapp.scenarios.versions import NotFound
from tests.conftest import make_app
from tests.scenarios.support import add_portal, definition

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def rule(frequency: str = "daily", at: str = "09:00", **kw: Any) -> sch.Rule:
    return sch.Rule(frequency=frequency, time_of_day=at, **kw)


def plan(r: sch.Rule, zone: str = "Europe/Berlin") -> ScenarioSchedule:
    """An unsaved schedule of rule ``r`` (what ``schedules next`` previews)."""
    row = ScenarioSchedule()
    sch.apply_rule(row, sch.check_rule(r, zone, T0))
    return row


def local(runs: list[datetime]) -> list[str]:
    return [m.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %a") for m in runs]


# -- next runs -----------------------------------------------------------------------------------


def test_daily_across_spring_forward_runs_at_the_first_minute_after_the_gap() -> None:
    runs = sch.next_runs(plan(rule(at="02:30")), datetime(2026, 3, 25, tzinfo=UTC))
    assert len(runs) == 12 and all(m.tzinfo is not None for m in runs)
    shown = local(runs)
    assert shown[:6] == [
        "2026-03-25 02:30 Wed",
        "2026-03-26 02:30 Thu",
        "2026-03-27 02:30 Fri",
        "2026-03-28 02:30 Sat",
        "2026-03-29 03:00 Sun",  # 02:30 does not exist that night: the clock jumps to 03:00
        "2026-03-30 02:30 Mon",
    ]
    assert runs[4] == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert runs[3] - runs[2] == timedelta(hours=24)
    assert runs[5] - runs[4] == timedelta(hours=23, minutes=30)
    assert shown[-1] == "2026-04-05 02:30 Sun"


def test_daily_across_fall_back_runs_at_the_first_occurrence() -> None:
    runs = sch.next_runs(plan(rule(at="02:30")), datetime(2026, 10, 23, tzinfo=UTC), 4)
    assert local(runs)[2] == "2026-10-25 02:30 Sun"
    assert runs[2] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # CEST (+02:00), the first
    assert runs[3] == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # CET (+01:00) from then on
    nine = sch.next_runs(plan(rule(at="09:00")), datetime(2026, 10, 24, tzinfo=UTC), 2)
    assert [m.hour for m in nine] == [7, 8]  # 09:00 local both days; the UTC hour moves


def test_weekly_on_chosen_days() -> None:
    r = rule("weekly", "19:30", weekdays=["fri", "mon"])
    runs = sch.next_runs(plan(r), T0)
    assert len(runs) == 12
    shown = local(runs)
    assert shown[:4] == [
        "2026-03-20 19:30 Fri",
        "2026-03-23 19:30 Mon",
        "2026-03-27 19:30 Fri",
        "2026-03-30 19:30 Mon",  # after the change to summer time: still 19:30 local
    ]
    assert {s[-3:] for s in shown} == {"Mon", "Fri"}
    assert shown[-1] == "2026-04-27 19:30 Mon"


def test_monthly_on_the_31st_runs_on_short_months_last_day() -> None:
    runs = sch.next_runs(plan(rule("monthly", "08:00", month_day=31)), T0)
    assert [m.astimezone(BERLIN).date().isoformat() for m in runs] == [
        "2026-03-31",
        "2026-04-30",
        "2026-05-31",
        "2026-06-30",
        "2026-07-31",
        "2026-08-31",
        "2026-09-30",
        "2026-10-31",
        "2026-11-30",
        "2026-12-31",
        "2027-01-31",
        "2027-02-28",
    ]
    assert {m.astimezone(BERLIN).hour for m in runs} == {8}
    leap = sch.next_runs(plan(rule("monthly", "08:00", month_day=30)), datetime(2028, 2, 1), 1)
    assert leap[0].astimezone(BERLIN).date() == date(2028, 2, 29)


def test_runs_are_strictly_after_and_stop_at_the_end_date() -> None:
    r = rule(at="13:00", end_date=date(2026, 3, 23))
    runs = sch.next_runs(plan(r), T0)  # 12:00 UTC is 13:00 in Berlin: that run has begun
    assert local(runs) == ["2026-03-21 13:00 Sat", "2026-03-22 13:00 Sun", "2026-03-23 13:00 Mon"]
    in_utc = sch.next_runs(plan(rule(at="12:00"), "UTC"), T0, 1)
    assert in_utc == [datetime(2026, 3, 21, 12, 0, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("r", "field"),
    [
        (rule(at="25:00"), "time"),
        (rule(at="9:00"), "time"),
        (rule(at="09:60"), "time"),
        (rule("hourly"), "frequency"),
        (rule(zone="Mars/Olympus"), "zone"),
        (rule(zone="../etc/passwd"), "zone"),
        (rule("weekly"), "weekdays"),
        (rule("weekly", weekdays=["mon", "funday"]), "weekdays"),
        (rule("monthly"), "month_day"),
        (rule("monthly", month_day=32), "month_day"),
        (rule("monthly", month_day=0), "month_day"),
        (rule(end_date=date(2026, 3, 19)), "end_date"),
    ],
)
def test_a_bad_rule_names_its_field(r: sch.Rule, field: str) -> None:
    with pytest.raises(sch.ScheduleError) as caught:
        sch.check_rule(r, "UTC", T0)
    assert caught.value.field == field and str(caught.value)


@pytest.mark.parametrize("percent", [0, 101, -5])
def test_a_sample_is_1_to_100_percent(percent: int) -> None:
    with pytest.raises(sch.ScheduleError):
        sch.check_percent(percent)


def test_the_sample_is_reproducible_and_about_its_percent() -> None:
    ids = range(1, 10_001)
    first = {i for i in ids if in_sample("schedule:1:20260320T070000Z", 50, i)}
    again = {i for i in ids if in_sample("schedule:1:20260320T070000Z", 50, i)}
    other = {i for i in ids if in_sample("schedule:1:20260321T070000Z", 50, i)}
    assert first == again
    assert 4_800 <= len(first) <= 5_200
    assert first != other and 4_800 <= len(other) <= 5_200
    assert all(in_sample("s", 100, i) for i in ids)
    small = {i for i in ids if in_sample("s", 10, i)}
    assert small <= {i for i in ids if in_sample("s", 60, i)}  # a bigger percent keeps more


# -- running -------------------------------------------------------------------------------------


@pytest.fixture
def queued_app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    """The app with a real queue and no consumer: launches are made, their jobs wait."""
    app = make_app(tmp_path, database_url, jobs_immediate=False)
    yield app
    with app.app_context():
        get_db().engine.dispose()


@pytest.fixture
def session(queued_app: Flask) -> Iterator[Session]:
    from marketapp.db import db_session

    with queued_app.app_context():
        yield db_session()


def _portal(session: Session) -> Portal:
    portal = add_portal(session, "p1")
    portal.token_user_id = 1
    versions.save(session, portal, definition())
    session.commit()
    return portal


def _schedule(session: Session, portal: Portal, r: sch.Rule, **kw: Any) -> ScenarioSchedule:
    """A saved schedule of ``r`` in Berlin time."""
    berlin = dataclasses.replace(r, zone="Europe/Berlin")
    row = sch.create_schedule(session, portal, "welcome", berlin, now=T0, **kw)
    session.commit()
    return row


def _launches(session: Session) -> list[Launch]:
    session.expire_all()
    return list(session.scalars(select(Launch).order_by(Launch.id)))


def test_a_due_run_makes_one_launch_marked_schedule(session: Session) -> None:
    portal = _portal(session)
    row = _schedule(session, portal, rule(at="13:30"), segment={"%NAME": "a"}, sample_percent=50)
    first = row.next_run_at
    assert first is not None and sch._utc(first) == datetime(2026, 3, 20, 12, 30, tzinfo=UTC)
    assert sch.run_due(session, T0) == []  # not due yet
    made = sch.run_due(session, T0 + timedelta(minutes=31))
    assert len(made) == 1
    (launch,) = _launches(session)
    assert launch.source == "schedule" and launch.user_id == 1 and launch.user_token is None
    assert launch.idempotency_key == f"schedule:{row.id}:20260320T123000Z"
    assert launch.target_filter == {
        "%NAME": "a",
        SAMPLE_KEY: {"percent": 50, "seed": launch.idempotency_key},
    }
    session.refresh(row)
    assert sch._utc(row.next_run_at) == datetime(2026, 3, 21, 12, 30, tzinfo=UTC)  # type: ignore[arg-type]
    assert row.last_launch_id == launch.id and row.last_error == ""


def test_after_downtime_a_missed_run_runs_once(session: Session) -> None:
    portal = _portal(session)
    row = _schedule(session, portal, rule(at="14:00"))
    back = T0 + timedelta(days=5, hours=3)  # 25 March, 16:00: six runs (20 to 25 March) missed
    assert len(sch.run_due(session, back)) == 1
    assert len(sch.run_due(session, back)) == 0
    assert len(sch.run_due(session, back + timedelta(minutes=30))) == 0
    assert len(_launches(session)) == 1
    session.refresh(row)
    # The next run is the first after now (26 March, 14:00 Berlin), not one of the missed ones.
    assert sch._utc(row.next_run_at) == datetime(2026, 3, 26, 13, 0, tzinfo=UTC)  # type: ignore[arg-type]
    assert len(sch.run_due(session, datetime(2026, 3, 26, 13, 0, tzinfo=UTC))) == 1
    assert len(_launches(session)) == 2


def test_a_run_read_by_two_workers_is_launched_once(session: Session, queued_app: Flask) -> None:
    from marketapp.db import get_db

    portal = _portal(session)
    _schedule(session, portal, rule(at="13:30"))
    due = T0 + timedelta(hours=1)
    other = get_db().sessions()
    try:
        stale = sch.due_runs(other, due)  # the second worker read the due row first …
        assert len(sch.run_due(session, due)) == 1  # … the first made the launch
        assert [sch.run_one(other, i, at, due) for i, at in stale] == [None]
    finally:
        other.close()
    assert len(_launches(session)) == 1


def test_concurrent_run_due_calls_make_one_launch_per_run(
    session: Session, queued_app: Flask
) -> None:
    portal = _portal(session)
    for minute in range(1, 7):  # T0 is 13:00 in Berlin: each is due an hour later
        _schedule(session, portal, rule(at=f"13:{minute:02d}"))
    due = T0 + timedelta(hours=1)
    start = threading.Barrier(3)
    made: list[list[int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        with queued_app.app_context():
            from marketapp.db import db_session

            start.wait()
            try:
                made.append(sch.run_due(db_session(), due))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(i for ids in made for i in ids) == [launch.id for launch in _launches(session)]
    assert len(_launches(session)) == 6
    keys = [launch.idempotency_key for launch in _launches(session)]
    assert len(set(keys)) == 6


def test_a_retry_of_a_claimed_run_finds_its_launch(session: Session) -> None:
    """A crash after the launch but before the schedule moved: the run is made again with the
    same key, and the launch is the same."""
    portal = _portal(session)
    row = _schedule(session, portal, rule(at="13:30"))
    planned = row.next_run_at
    due = T0 + timedelta(hours=1)
    (launch_id,) = sch.run_due(session, due)
    row.next_run_at = planned  # as if the move had been lost
    session.commit()
    assert sch.run_due(session, due) == [launch_id]
    assert len(_launches(session)) == 1


def test_the_end_date_stops_the_runs(session: Session) -> None:
    portal = _portal(session)
    row = _schedule(session, portal, rule(at="14:00", end_date=date(2026, 3, 21)))
    assert len(sch.run_due(session, datetime(2026, 3, 20, 13, 0, tzinfo=UTC))) == 1
    assert len(sch.run_due(session, datetime(2026, 3, 21, 13, 0, tzinfo=UTC))) == 1
    session.refresh(row)
    assert row.next_run_at is None  # nothing after 21 March
    assert sch.run_due(session, datetime(2026, 3, 30, tzinfo=UTC)) == []
    assert len(_launches(session)) == 2
    assert sch.describe(session, row, datetime(2026, 3, 22, tzinfo=UTC))["next_runs"] == []


def test_a_turned_off_scenario_or_a_paused_schedule_makes_no_launch(session: Session) -> None:
    portal = _portal(session)
    row = _schedule(session, portal, rule(at="14:00"))
    scenario = versions.get_scenario(session, portal, "welcome")
    scenario.active = False
    session.commit()
    assert sch.run_due(session, datetime(2026, 3, 20, 13, 0, tzinfo=UTC)) == []
    session.refresh(row)
    assert "turned off" in row.last_error
    assert sch._utc(row.next_run_at) == datetime(2026, 3, 21, 13, 0, tzinfo=UTC)  # type: ignore[arg-type]

    scenario.active = True
    sch.pause(session, portal, row.id)
    session.commit()
    assert sch.run_due(session, datetime(2026, 3, 23, tzinfo=UTC)) == []
    sch.resume(session, portal, row.id, datetime(2026, 3, 23, 14, 0, tzinfo=UTC))
    session.commit()
    # Runs missed while paused are not made up: the next is after the resume.
    assert sch._utc(row.next_run_at) == datetime(2026, 3, 24, 13, 0, tzinfo=UTC)  # type: ignore[arg-type]
    assert _launches(session) == []


def test_create_checks_its_inputs(session: Session) -> None:
    portal = _portal(session)
    with pytest.raises(NotFound):
        sch.create_schedule(session, portal, "nope", rule(), now=T0)
    with pytest.raises(sch.ScheduleError) as caught:
        sch.create_schedule(session, portal, "welcome", rule(), now=T0, entity_type="DEAL")
    assert caught.value.field == "entity_type"
    with pytest.raises(sch.ScheduleError) as caught:
        sch.create_schedule(session, portal, "welcome", rule(), now=T0, segment={"_sample": 1})
    assert caught.value.field == "filter"
    with pytest.raises(sch.ScheduleError) as caught:
        sch.create_schedule(session, portal, "welcome", rule(), now=T0, params={"x": 1})
    assert caught.value.field == "params"
    row = sch.create_schedule(session, portal, "welcome", rule(), now=T0)
    assert row.zone == "UTC" and row.user_id == 1  # the portal's zone, the stored token's user
    other = add_portal(session, "p2")
    with pytest.raises(sch.ScheduleNotFound):
        sch.get_schedule(session, other, row.id)
    assert session.scalar(select(func.count()).select_from(ScenarioSchedule)) == 1
