"""Robots end to end: the emulator runs them like automation rules, the app acts and answers."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from marketapp.db import db_session
from marketapp.models import FieldEdit, Portal, RobotCall, Send, SmsMessage
from tests.e2e.harness import Installed
from tests.support import EMAIL, contact_with, run_robot, set_channels, workflow

pytestmark = pytest.mark.e2e


@pytest.fixture
def seeded(installed: Installed) -> Installed:
    installed.portal("/seed", "POST", n=30)
    return installed


def test_each_robot_has_its_documented_effect(seeded: Installed) -> None:
    contact = contact_with(seeded)
    doc = f"CONTACT_{contact['ID']}"
    runs = {
        "send_email": run_robot(seeded, "send_email", doc, **EMAIL),
        "send_sms": run_robot(seeded, "send_sms", doc, text="Hi {{ contact.NAME }}, see you!"),
        "edit_record": run_robot(
            seeded, "edit_record", doc, fields="COMMENTS = VIP {{ contact.NAME }}"
        ),
        "timeline_comment": run_robot(
            seeded, "timeline_comment", doc, text="Called {{ contact.NAME }}"
        ),
    }
    seeded.settle()
    assert seeded.app.worker.errors == []
    flows = {code: workflow(seeded, wid) for code, wid in runs.items()}
    for code, flow in flows.items():
        assert flow["state"] == "completed", (code, flow["log"])
        assert flow["sends"] == 1, code
        assert flow["return_values"]["status"] == "sent", (code, flow["return_values"])

    with seeded.app.app.app_context():
        calls = {c.code: c for c in db_session().scalars(select(RobotCall))}
        sms = db_session().scalars(select(SmsMessage)).one()
        edit = db_session().scalars(select(FieldEdit)).one()

    (mail,) = seeded.portal("/outbox")
    assert mail["to"] == contact["EMAIL"][0]["VALUE"]
    activity = next(a for a in seeded.portal("/activities") if a["TYPE_ID"] in (4, "4"))
    assert activity["ORIGIN_ID"] == f"robot:{calls['send_email'].id}"
    assert activity["ORIGINATOR_ID"] == "smart_scenarios"
    assert activity["SUBJECT"] == f"Hello {contact['NAME']}"
    assert "<script>" not in activity["DESCRIPTION"] and "<b>" in activity["DESCRIPTION"]
    assert activity["COMMUNICATIONS"][0]["VALUE"] == contact["EMAIL"][0]["VALUE"]
    assert flows["send_email"]["return_values"]["activity_id"] == str(activity["ID"])

    mobile = next(p["VALUE"] for p in contact["PHONE"] if p["VALUE_TYPE"] == "MOBILE")
    assert sms.phone == mobile and sms.text == f"Hi {contact['NAME']}, see you!"
    assert (sms.segments, sms.encoding) == (1, "GSM-7")
    assert int(flows["send_sms"]["return_values"]["segments"]) == 1

    updated = seeded.emu("GET", f"/portals/{seeded.member_id}/crm/contact")
    record = next(c for c in updated if c["ID"] == contact["ID"])
    assert record["COMMENTS"] == f"VIP {contact['NAME']}"
    assert edit.before == {"COMMENTS": contact.get("COMMENTS")}
    assert flows["edit_record"]["return_values"]["changed_fields"] == "COMMENTS"

    comments = seeded.portal(f"/timeline?entity=contact&id={contact['ID']}")["comments"]
    texts = [c["COMMENT"] for c in comments]
    assert f"Called {contact['NAME']}" in texts
    assert any(t.startswith(f"SMS to {mobile}") for t in texts)


def test_record_without_address_is_a_terminal_skip(seeded: Installed) -> None:
    contact = contact_with(seeded, email=False, phone=False)
    wid = run_robot(seeded, "send_email", f"CONTACT_{contact['ID']}", **EMAIL)
    seeded.settle()
    flow = workflow(seeded, wid)
    assert flow["return_values"] == {"status": "skipped", "reason": "no_email"}
    assert flow["sends"] == 1 and "no e-mail" in flow["log"][-1]["message"]
    assert seeded.portal("/outbox") == []


def test_opted_out_contact_is_skipped(seeded: Installed) -> None:
    with seeded.app.app.app_context():
        session = db_session()
        set_channels(session, session.scalars(select(Portal)).one(), no_sms_field="UF_CRM_NO_SMS")
    contacts = seeded.emu("GET", f"/portals/{seeded.member_id}/crm/contact")
    opted = next(c for c in contacts if c["UF_CRM_NO_SMS"] == "Y" and c.get("PHONE"))
    wid = run_robot(seeded, "send_sms", f"CONTACT_{opted['ID']}", text="Offer")
    seeded.settle()
    assert workflow(seeded, wid)["return_values"] == {"status": "skipped", "reason": "opted_out"}


def test_repeated_delivery_sends_once(seeded: Installed) -> None:
    contact = contact_with(seeded)
    wid = run_robot(seeded, "send_email", f"CONTACT_{contact['ID']}", **EMAIL)
    seeded.settle()
    delivery = next(d for d in seeded.emu("GET", "/deliveries") if d["kind"] == "robot")
    again = requests.post(delivery["url"], data=delivery["form"], timeout=10)
    assert again.status_code == 200 and again.json() == {"result": "duplicate"}
    seeded.settle()
    assert len(seeded.portal("/outbox")) == 1
    assert workflow(seeded, wid)["sends"] == 1


def test_forged_robot_call_does_nothing(seeded: Installed) -> None:
    contact = contact_with(seeded)
    run_robot(seeded, "send_email", f"CONTACT_{contact['ID']}", **EMAIL)
    seeded.settle()
    delivery = next(d for d in seeded.emu("GET", "/deliveries") if d["kind"] == "robot")
    forged = {**dict(delivery["form"]), "auth[application_token]": "0" * 32, "event_token": "x|y|z"}
    resp = requests.post(delivery["url"], data=forged, timeout=10)
    assert resp.status_code == 401
    seeded.settle()
    with seeded.app.app.app_context():
        assert db_session().scalar(select(func.count(RobotCall.id))) == 1
    assert len(seeded.portal("/outbox")) == 1


def test_malformed_robot_call_is_a_clear_400(installed: Installed) -> None:
    resp = requests.post(
        f"{installed.app.url}/robots/send_email", data={"event_token": "x"}, timeout=10
    )
    assert resp.status_code == 400
    assert "invalid robot call" in resp.json()["error_description"]


def test_faults_and_token_expiry_every_run_completes_once(seeded: Installed) -> None:
    """500 robot runs with 20% 503s and a forced token expiry: all answered, each sent once."""
    contacts = [
        c for c in seeded.emu("GET", f"/portals/{seeded.member_id}/crm/contact") if c.get("EMAIL")
    ]
    runs = 500
    with seeded.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        # Functional test: the emulator's limits are off, so lift the app's own pacing too.
        portal.rate_per_second, portal.rate_burst = 200, 1000
        first_token = portal.access_token
        db_session().commit()
    seeded.portal("/faults", "POST", rates={"503": 0.2})
    wids = []
    for i in range(runs):
        if i == runs // 2:
            seeded.portal("/faults", "POST", expire_tokens=True)
        contact = contacts[i % len(contacts)]
        wids.append(
            run_robot(
                seeded,
                "timeline_comment" if i % 2 else "send_email",
                f"CONTACT_{contact['ID']}",
                subject=f"Run {i}",
                body="Hello",
                text=f"Run {i}",
            )
        )
    seeded.settle()
    seeded.portal("/faults", "POST", rates={})
    seeded.settle()
    flows = {w["id"]: w for w in seeded.emu("GET", "/workflows")}
    assert all(flows[w]["state"] == "completed" for w in wids)
    assert all(flows[w]["return_values"].get("status") == "sent" for w in wids)
    assert {flows[w]["sends"] for w in wids} == {1}
    mails = [a for a in seeded.portal("/activities") if str(a["TYPE_ID"]) == "4"]
    origins = [a["ORIGIN_ID"] for a in mails]
    assert len(origins) == runs // 2 == len(set(origins))
    comments = [c["COMMENT"] for c in seeded.portal("/timeline")["comments"]]
    assert sorted(c for c in comments if c.startswith("Run ")) == sorted(
        f"Run {i}" for i in range(1, runs, 2)
    )
    with seeded.app.app.app_context():
        assert db_session().scalar(select(func.count(Send.id))) == runs
        assert db_session().scalars(select(Portal)).one().access_token != first_token


def test_unknown_outcome_is_reconciled_not_resent(seeded: Installed) -> None:
    """A worker died after crm.activity.add succeeded: the retry finds it by ORIGIN_ID."""
    from sqlalchemy import update

    from marketapp.jobs import enqueue
    from marketapp.models import RobotCallState, SendState
    from marketapp.robots import process_robot_calls

    contact = contact_with(seeded)
    # The worker died before answering, so the workflow still runs (and is confirmed again).
    config = seeded.devportal.emulator.config
    config.workflow_finishes_on_close = False
    try:
        run_robot(seeded, "send_email", f"CONTACT_{contact['ID']}", **EMAIL)
        seeded.settle()
    finally:
        config.workflow_finishes_on_close = True
    assert len(seeded.portal("/outbox")) == 1
    with seeded.app.app.app_context():
        session = db_session()
        session.execute(update(Send).values(state=SendState.CLAIMED, external_id=""))
        session.execute(
            update(RobotCall).values(state=RobotCallState.QUEUED, status="", answered_at=None)
        )
        enqueue(process_robot_calls, session.scalars(select(Portal)).one().id)
        session.commit()
    seeded.settle()
    assert len(seeded.portal("/outbox")) == 1
    with seeded.app.app.app_context():
        send = db_session().scalars(select(Send)).one()
        call = db_session().scalars(select(RobotCall)).one()
        assert send.state is SendState.SENT and send.detail.get("reconciled") is True
        assert send.attempts == 2
        assert call.state is RobotCallState.DONE and call.status == "sent"


def test_send_email_through_portal_smtp(seeded: Installed) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list[Any] = []

    class Collect(Message):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            received.append(message)

    from tests.conftest import free_port

    port = free_port()
    # The fake server is on loopback: the operator's development setting allows that.
    seeded.app.app.extensions["marketapp.settings"].allow_private_smtp = True
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with seeded.app.app.app_context():
            session = db_session()
            set_channels(
                session,
                session.scalars(select(Portal)).one(),
                email_channel="smtp",
                smtp_host="127.0.0.1",
                smtp_port=controller.server.sockets[0].getsockname()[1],
                smtp_starttls=False,
                smtp_from="Sales <sales@example.com>",
            )
        contact = contact_with(seeded)
        wid = run_robot(seeded, "send_email", f"CONTACT_{contact['ID']}", **EMAIL)
        seeded.settle()
    finally:
        controller.stop()
    flow = workflow(seeded, wid)
    assert flow["return_values"]["status"] == "sent", flow["log"]
    (message,) = received
    assert message["To"] == contact["EMAIL"][0]["VALUE"]
    assert message["Subject"] == f"Hello {contact['NAME']}"
    assert "robot" in message["Message-ID"]
    assert seeded.portal("/outbox") == []  # not through the portal's mail
    comments = seeded.portal(f"/timeline?entity=contact&id={contact['ID']}")["comments"]
    assert any(c["COMMENT"].startswith("E-mail sent to") for c in comments)
