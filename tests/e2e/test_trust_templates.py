"""Issue 9, attacks 4-6 and "also seen": templates cannot stall a worker, poison its group,
or make the app report what did not happen; timeline comments and subjects are plain text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.devportal import DevportalServer
from marketapp.models import RobotCall, SmsMessage
from tests.e2e.harness import AppServer, Installed, install, start_app
from tests.support import EMAIL, contact_with, run_robot, sms_contacts, workflow

pytestmark = pytest.mark.e2e


@pytest.fixture
def grouped(tmp_path: Path, database_url: str, devportal: DevportalServer) -> Iterator[Installed]:
    """An installed, seeded app that waits long enough for calls to arrive in one group."""
    devportal.emulator.reset()
    server: AppServer = start_app(tmp_path, database_url, devportal, robot_group_delay=1.0)
    try:
        installed = install(devportal, server)
        installed.portal("/seed", "POST", n=30)
        yield installed
    finally:
        server.close()


def comments_of(installed: Installed, contact_id: Any) -> list[str]:
    found = installed.portal(f"/timeline?entity=contact&id={contact_id}")["comments"]
    return [c["COMMENT"] for c in found]


def test_attack4_huge_power_is_a_template_error(grouped: Installed) -> None:
    contact = contact_with(grouped)
    doc = f"CONTACT_{contact['ID']}"
    power = run_robot(grouped, "timeline_comment", doc, text="{{ (10 ** (12 * 10**6)) > 1 }}")
    repeat = run_robot(grouped, "timeline_comment", doc, text="{{ 'a' * 3000000 }}")
    grouped.settle()
    for wid in (power, repeat):
        flow = workflow(grouped, wid)
        assert flow["state"] == "completed" and flow["sends"] == 1, flow
        assert flow["return_values"] == {"status": "skipped", "reason": "template_error"}, flow
        assert "template" in flow["log"][-1]["message"].lower()
    assert all(len(c) <= 10_000 for c in comments_of(grouped, contact["ID"]))
    assert comments_of(grouped, contact["ID"]) == []


def test_attack4_needless_globals_are_gone(grouped: Installed) -> None:
    contact = contact_with(grouped)
    wid = run_robot(grouped, "timeline_comment", f"CONTACT_{contact['ID']}", text="{{ lipsum(2) }}")
    grouped.settle()
    assert workflow(grouped, wid)["return_values"]["reason"] == "template_error"
    assert comments_of(grouped, contact["ID"]) == []


def test_attack5_poison_call_fails_alone(grouped: Installed) -> None:
    poison_contact, innocent_contact = sms_contacts(grouped, 2)
    poison = "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"
    bad = run_robot(grouped, "timeline_comment", f"CONTACT_{poison_contact['ID']}", text=poison)
    good = run_robot(grouped, "timeline_comment", f"CONTACT_{innocent_contact['ID']}", text="Hello")
    grouped.settle()
    assert grouped.app.worker.errors == []
    innocent = workflow(grouped, good)
    assert innocent["state"] == "completed", innocent
    assert innocent["return_values"]["status"] == "sent"
    assert comments_of(grouped, innocent_contact["ID"]) == ["Hello"]
    refused = workflow(grouped, bad)
    assert refused["state"] == "completed" and refused["sends"] == 1, refused
    assert refused["return_values"] == {"status": "skipped", "reason": "template_error"}
    assert "nested" in refused["log"][-1]["message"]
    assert comments_of(grouped, poison_contact["ID"]) == []
    with grouped.app.app.app_context():
        calls = db_session().scalars(select(RobotCall)).all()
        assert {c.state.value for c in calls} == {"done"}


def test_attack6_one_record_failing_to_render_does_not_hide_a_sent_sms(
    grouped: Installed,
) -> None:
    first, second = sms_contacts(grouped, 2)
    text = "Code {{ 12 // (contact.ID|int - " + str(second["ID"]) + ") }}"
    wids = [
        run_robot(grouped, "send_sms", f"CONTACT_{c['ID']}", text=text) for c in (first, second)
    ]
    grouped.settle()
    sent, refused = (workflow(grouped, w) for w in wids)
    assert sent["return_values"]["status"] == "sent", sent["log"]
    assert sent["sends"] == 1
    assert refused["return_values"] == {"status": "skipped", "reason": "template_error"}
    assert "division" in refused["log"][-1]["message"]
    with grouped.app.app.app_context():
        (message,) = db_session().scalars(select(SmsMessage)).all()
    assert message.entity_id == int(first["ID"])
    assert any(c.startswith("SMS to") for c in comments_of(grouped, first["ID"]))
    assert comments_of(grouped, second["ID"]) == []


def test_attack6_division_by_zero_is_a_template_error(grouped: Installed) -> None:
    contact = contact_with(grouped)
    doc = f"CONTACT_{contact['ID']}"
    wids = [
        run_robot(grouped, "send_sms", doc, text="{{ 1/0 }}"),
        run_robot(grouped, "send_email", doc, subject="Hi", body="{{ contact.ID|int / 0 }}"),
        run_robot(grouped, "edit_record", doc, fields="COMMENTS = {{ 1 // (contact.ID|int * 0) }}"),
    ]
    grouped.settle()
    for wid in wids:
        flow = workflow(grouped, wid)
        assert flow["return_values"] == {"status": "skipped", "reason": "template_error"}, flow
    assert grouped.portal("/outbox") == []


def test_comments_and_subjects_are_plain_text(grouped: Installed) -> None:
    contact = contact_with(grouped)
    doc = f"CONTACT_{contact['ID']}"
    markup = "<b>Hi</b> {{ contact.NAME }}<script>alert(1)</script> &lt;i&gt;x&lt;/i&gt;"
    run_robot(grouped, "timeline_comment", doc, text=markup)
    run_robot(grouped, "send_sms", doc, text=markup)
    run_robot(grouped, "send_email", doc, subject=markup, body=EMAIL["body"])
    grouped.settle()
    comments = comments_of(grouped, contact["ID"])
    assert f"Hi {contact['NAME']} x" in comments
    assert any(c.startswith("SMS to") for c in comments)
    activity = next(a for a in grouped.portal("/activities") if str(a["TYPE_ID"]) == "4")
    assert activity["SUBJECT"] == f"Hi {contact['NAME']} x"
    for text in [*comments, activity["SUBJECT"]]:
        assert "<" not in text and "alert" not in text, text


def test_attack5_call_that_keeps_stopping_its_worker_is_answered_once(grouped: Installed) -> None:
    """A worker died on this call twice already; the third take-over answers it ``failed``."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from marketapp.jobs import enqueue
    from marketapp.models import Portal, RobotCallState
    from marketapp.robots import MAX_TAKEOVERS, process_robot_calls

    contact = contact_with(grouped)
    wid = run_robot(grouped, "timeline_comment", f"CONTACT_{contact['ID']}", text="Hello")
    with grouped.app.app.app_context():  # the call is stuck as if its worker had died
        session = db_session()
        wait_until = datetime.now(UTC) + timedelta(seconds=30)
        while not session.scalars(select(RobotCall)).all() and datetime.now(UTC) < wait_until:
            session.rollback()
        session.execute(
            update(RobotCall).values(
                state=RobotCallState.RUNNING,
                lease_until=datetime.now(UTC) - timedelta(minutes=1),
                attempts=MAX_TAKEOVERS - 1,
            )
        )
        enqueue(process_robot_calls, session.scalars(select(Portal)).one().id)
        session.commit()
    grouped.settle()
    flow = workflow(grouped, wid)
    assert flow["state"] == "completed" and flow["sends"] == 1, flow
    assert flow["return_values"] == {"status": "failed", "reason": "gave_up"}
    with grouped.app.app.app_context():
        call = db_session().scalars(select(RobotCall)).one()
        assert call.state.value == "done" and call.attempts == MAX_TAKEOVERS


def test_attack6_a_crash_after_the_side_effect_still_reports_sent(
    grouped: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketapp.actions import records

    def crash(row: Any) -> Any:
        raise RuntimeError("bug after the comment was added")

    monkeypatch.setattr(records, "_comment_outcome", crash)
    first, second = sms_contacts(grouped, 2)
    wids = [
        run_robot(grouped, "timeline_comment", f"CONTACT_{c['ID']}", text="Noted")
        for c in (first, second)
    ]
    grouped.settle()
    for wid, contact in zip(wids, (first, second), strict=True):
        flow = workflow(grouped, wid)
        assert flow["return_values"]["status"] == "sent", flow["log"]
        assert comments_of(grouped, contact["ID"]) == ["Noted"]
