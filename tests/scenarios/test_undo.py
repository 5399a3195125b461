"""Stop and undo over HTTP against the emulator.

A launch edits two fields, comments on the timeline, creates a task, sends an e-mail and an SMS
on 20 contacts; a person then changes one edited field of one contact. Undo restores every
other field, keeps the person's value and reports it, deletes the comments, closes the tasks,
counts the e-mails and SMS it cannot take back, and a second undo does nothing new. Stop
mid-launch (records waiting) leaves the rest untouched.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from marketapp.db import db_session
from marketapp.models import (
    Enrollment,
    EnrollmentState,
    Launch,
    LaunchEvent,
    LaunchState,
    Send,
    SendState,
)
from marketapp.scenarios import launches
from marketapp.scenarios.undo import UndoError
from tests.e2e.harness import Installed
from tests.scenarios.undo_support import (
    COMMENT,
    EDIT,
    EMAIL,
    SMS,
    TASK,
    WAIT,
    as_person,
    by_id,
    comments_of,
    contacts,
    count,
    finished,
    last_request,
    portal_of,
    run_undo,
    start,
    writes,
)

pytestmark = pytest.mark.e2e


def test_undo_restores_fields_keeps_a_persons_edit_and_reports_it(installed: Installed) -> None:
    people = contacts(installed)
    ids = [int(c["ID"]) for c in people]
    launch_id = start(installed, [EDIT, COMMENT, TASK, EMAIL, SMS], ids)
    finished(installed, launch_id)
    after = by_id(installed)
    assert all(after[i]["POST"] == f"Customer {i}" for i in ids)
    assert len(comments_of(installed, ids)) == len(ids)
    tasks = [t for t in installed.portal("/tasks") if t["title"].startswith("Call ")]
    assert len(tasks) == len(ids)

    # A person corrects one contact's position after the launch.
    edited = ids[3]
    as_person(installed, "crm.contact.update", {"id": edited, "fields": {"POST": "CEO"}})

    report = run_undo(installed, launch_id)
    now = by_id(installed)
    for c in people:
        i = int(c["ID"])
        assert now[i]["LAST_NAME"] == c["LAST_NAME"]
        assert now[i]["POST"] == ("CEO" if i == edited else c["POST"])
    assert [(x.entity_id, x.field, x.current) for x in report.conflicts] == [
        (edited, "POST", "CEO")
    ]
    assert report.records_restored == len(ids)
    assert report.fields_restored == 2 * len(ids) - 1
    assert comments_of(installed, ids) == []
    assert report.comments_deleted == len(ids)
    closed = [t for t in installed.portal("/tasks") if t["title"].startswith("Call ")]
    assert [t for t in closed if t["status"] != "5"] == []
    assert report.tasks_closed == len(tasks)
    sms = _sms_sent(installed, launch_id)
    assert sms > 0 and report.not_undoable == {"email": len(ids), "sms": sms}
    # The engine's lines of the edit, comment and task are gone; those of e-mails and SMS stay.
    assert report.lines_deleted == 3 * len(ids)
    assert len(lines_of(installed, ids)) == len(ids) + sms
    assert report.problems == [] and not report.nothing_new
    text = "\n".join(report.lines())
    assert f"POST of contact {edited}" in text and "'CEO'" in text
    assert skipped_in_log(installed, launch_id) == [
        (edited, "changed_since", "POST kept: changed after the launch.")
    ]

    # A second undo finds everything done: no REST write, and it says so.
    since = last_request(installed)
    again = run_undo(installed, launch_id)
    assert again.nothing_new and again.already_undone > 0
    assert again.conflicts == [] and again.records_restored == 0
    assert writes(installed, since) == []
    assert "already been undone" in "\n".join(again.lines())
    assert by_id(installed)[edited]["POST"] == "CEO"


def skipped_in_log(installed: Installed, launch_id: int) -> list[tuple[int, str, str]]:
    with installed.app.app.app_context():
        query = (
            select(Enrollment.entity_id, LaunchEvent.reason, LaunchEvent.message)
            .join(Enrollment, Enrollment.id == LaunchEvent.enrollment_id)
            .where(LaunchEvent.launch_id == launch_id, LaunchEvent.kind == "undo_skipped")
        )
        return [tuple(row) for row in db_session().execute(query)]  # type: ignore[misc]


def lines_of(installed: Installed, ids: list[int]) -> list[str]:
    every = installed.portal("/timeline")["comments"]
    return [
        c["COMMENT"]
        for c in every
        if int(c["ENTITY_ID"]) in ids and c["COMMENT"].startswith("Scenario 'Spring'")
    ]


def _sms_sent(installed: Installed, launch_id: int) -> int:
    with installed.app.app.app_context():
        query = select(func.count(Send.id)).where(
            Send.key.startswith(f"launch:{launch_id}:"),
            Send.channel == "sms",
            Send.state == SendState.SENT,
        )
        return int(db_session().scalar(query) or 0)


def test_a_crash_mid_undo_repeats_nothing(installed: Installed) -> None:
    """Undo claims 50 at a time before acting: a claim left by a crash (the comment already
    deleted, the field already restored) is finished, not repeated or reported as a problem."""
    people = contacts(installed, 5)
    ids = [int(c["ID"]) for c in people]
    launch_id = start(installed, [EDIT, COMMENT], ids)
    finished(installed, launch_id)
    with installed.app.app.app_context():
        session = db_session()
        rows = session.scalars(
            select(Send).where(Send.key.startswith(f"launch:{launch_id}:"))
        ).all()
        edit = next(r for r in rows if r.channel == "edit")
        comment = next(r for r in rows if r.channel == "comment")
        for row in (edit, comment):  # the crashed undo had claimed these two
            key = "undo:" + row.key.removeprefix("launch:")
            session.add(Send(portal_id=row.portal_id, key=key, channel="undo"))
        session.commit()
        comment_id = int(comment.external_id)
        edited = int(edit.key.split(":")[2])
        entity_id = session.get(Enrollment, edited).entity_id  # type: ignore[union-attr]
    # ...and had done both before it died.
    as_person(installed, "crm.timeline.comment.delete", {"id": comment_id})
    original = next(c for c in people if int(c["ID"]) == entity_id)
    as_person(
        installed,
        "crm.contact.update",
        {"id": entity_id, "fields": {"POST": original["POST"], "LAST_NAME": original["LAST_NAME"]}},
    )

    report = run_undo(installed, launch_id)
    assert report.problems == [] and report.conflicts == []
    assert report.records_restored == len(ids) - 1  # the crashed one needed no write
    assert comments_of(installed, ids) == []
    now = by_id(installed)
    assert all(now[int(c["ID"])]["POST"] == c["POST"] for c in people)


def test_stop_mid_launch_leaves_the_rest_untouched(installed: Installed) -> None:
    people = contacts(installed, 10)
    ids = [int(c["ID"]) for c in people]
    launch_id = start(installed, [COMMENT, WAIT, EDIT], ids)
    finished(installed, launch_id)  # everyone commented, now waiting a day
    assert count(installed, launch_id, EnrollmentState.WAITING) == len(ids)

    with installed.app.app.app_context():
        session = db_session()
        result = launches.stop(session, portal_of(session), launch_id)
        assert result == {"id": launch_id, "state": "stopped", "stopped": len(ids), "in_flight": 0}
        again = launches.stop(session, portal_of(session), launch_id)
        assert again["stopped"] == 0
        status = launches.status(session, portal_of(session), launch_id)
    assert status["counters"]["stopped"] == len(ids) and status["counters"]["waiting"] == 0
    assert count(installed, launch_id, EnrollmentState.STOPPED) == len(ids)

    # The day passes: nothing more happens to anyone.
    with installed.app.app.app_context():
        session = db_session()
        session.execute(
            update(Enrollment)
            .where(Enrollment.launch_id == launch_id)
            .values(next_at=Enrollment.next_at - timedelta(days=1, minutes=1))
        )
        session.commit()
    since = last_request(installed)
    from marketapp.scenarios import engine

    with installed.app.app.app_context():
        session = db_session()
        engine.process_portal(portal_of(session).id)
    installed.app.worker.idle()
    assert writes(installed, since) == []
    now = by_id(installed)
    assert all(now[int(c["ID"])]["POST"] == c["POST"] for c in people)
    assert count(installed, launch_id, EnrollmentState.STOPPED) == len(ids)


def test_undo_of_a_running_launch_stops_it_first(installed: Installed) -> None:
    people = contacts(installed, 6)
    ids = [int(c["ID"]) for c in people]
    launch_id = start(installed, [COMMENT, WAIT, EDIT], ids)
    finished(installed, launch_id)
    report = run_undo(installed, launch_id)
    assert report.stopped and report.comments_deleted == len(ids)
    assert report.records_restored == 0 and report.in_flight == 0
    with installed.app.app.app_context():
        state = db_session().get(Launch, launch_id).state  # type: ignore[union-attr]
    assert state is LaunchState.STOPPED
    assert count(installed, launch_id, EnrollmentState.STOPPED) == len(ids)
    assert comments_of(installed, ids) == []


def test_undo_of_an_unknown_launch_is_refused(installed: Installed) -> None:

    with pytest.raises(UndoError, match="No launch 999"):
        run_undo(installed, 999)


def test_undo_writes_in_batches_of_50(installed: Installed) -> None:
    """60 records: read in one request (two list commands of 50 and 10 ids), every write in a
    batch of at most 50 commands: edits 50+10, comments and the engine's lines 50+50+50+30."""
    people = contacts(installed, 60)
    ids = [int(c["ID"]) for c in people]
    launch_id = start(installed, [EDIT, COMMENT], ids)
    finished(installed, launch_id)
    since = last_request(installed)
    report = run_undo(installed, launch_id)
    assert report.records_restored == len(ids) and report.comments_deleted == len(ids)
    log = installed.emu("GET", f"/requests?member_id={installed.member_id}")
    made = [r for r in log if r["id"] > since]
    assert {r["method"] for r in made} == {"batch"}
    sizes = sorted(len(r["commands"]) for r in made)
    assert sizes == [2, 10, 30, 50, 50, 50, 50]
    print(f"undo of {len(ids)} records: {len(made)} requests, commands per request {sizes}")


def test_undo_reports_records_still_in_flight(installed: Installed) -> None:
    """A record a worker holds when undo stops the launch finishes its step; undo says so, and
    undoing again later takes back what it did."""
    ids = [int(c["ID"]) for c in contacts(installed, 4)]
    launch_id = start(installed, [COMMENT, WAIT, EDIT], ids)
    finished(installed, launch_id)
    with installed.app.app.app_context():
        session = db_session()
        held = session.scalars(select(Enrollment).where(Enrollment.launch_id == launch_id)).first()
        assert held is not None
        held.state = EnrollmentState.RUNNING  # leased by a worker right now
        session.commit()
    report = run_undo(installed, launch_id)
    assert report.stopped and report.in_flight == 1
    assert "undo again when they finish" in "\n".join(report.lines())
    with installed.app.app.app_context():
        state = db_session().get(Launch, launch_id).state  # type: ignore[union-attr]
    assert state is LaunchState.STOPPING
    assert count(installed, launch_id, EnrollmentState.STOPPED) == len(ids) - 1


def test_another_portals_launch_is_not_found(installed: Installed) -> None:
    """Launch ids are per portal: portal 1 cannot undo (or see) a launch of portal 2."""
    from tests.scenarios.support import add_portal, definition

    with installed.app.app.app_context():
        session = db_session()
        other = add_portal(session, "b" * 32)
        from marketapp.scenarios import versions

        version = versions.save(session, other, definition(), author_id=1)
        foreign = Launch(
            portal_id=other.id,
            scenario_id=version.scenario_id,
            version_id=version.id,
            idempotency_key="k",
            entity_type="CONTACT",
            state=LaunchState.DONE,
        )
        session.add(foreign)
        session.commit()
        foreign_id = foreign.id
    with pytest.raises(UndoError, match=f"No launch {foreign_id}"):
        run_undo(installed, foreign_id)


def test_stop_before_the_worker_runs_cancels_every_record(installed: Installed) -> None:
    """Pending records become ``stopped`` at once; the queued work then finds nothing to do."""
    from marketapp.jobs import get_jobs
    from tests.e2e.harness import Worker

    app = installed.app
    app.worker.stop.set()  # no worker for a moment: the launch's job waits in the queue
    app.worker.thread.join(timeout=10)
    ids = [int(c["ID"]) for c in contacts(installed, 8)]
    launch_id = start(installed, [COMMENT, EDIT], ids)
    since = last_request(installed)
    with app.app.app_context():
        session = db_session()
        result = launches.stop(session, portal_of(session), launch_id)
        app.worker = Worker(get_jobs().huey)
    assert result == {"id": launch_id, "state": "stopped", "stopped": len(ids), "in_flight": 0}
    app.worker.thread.start()
    app.worker.idle()
    assert writes(installed, since) == []
    assert count(installed, launch_id, EnrollmentState.STOPPED) == len(ids)
    assert comments_of(installed, ids) == []
