"""Attack 2 of issue 9: forged robot calls must have no side effect.

Any employee reads ``APPLICATION_TOKEN`` from the page form their browser posts, so user 2 can
post a robot call for any record of the portal. The worker confirms every call with Bitrix24
(``bizproc.workflow.instances`` + ``bizproc.activity.log``) before it acts; a call that fails is
marked rejected, logged on the security logger and never answered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.logging import JsonFormatter
from marketapp.models import Portal, RobotCall, RobotCallState, SmsMessage
from tests.e2e.harness import Installed, wait_for

pytestmark = pytest.mark.e2e

FAKE_WORKFLOW = "66f0a1b2c3d4e5.12345678"


@pytest.fixture
def seeded(installed: Installed) -> Iterator[Installed]:
    installed.portal("/seed", "POST", n=10)
    # Answered workflows stay listed as running, so a forged call can name a live workflow.
    config = installed.devportal.emulator.config
    config.workflow_finishes_on_close = False
    try:
        yield installed
    finally:
        config.workflow_finishes_on_close = True


def contacts(installed: Installed) -> list[dict[str, Any]]:
    found = installed.emu("GET", f"/portals/{installed.member_id}/crm/contact")
    return [c for c in found if c.get("EMAIL") and c.get("PHONE")]


def run(installed: Installed, code: str, document: str, **properties: Any) -> dict[str, Any]:
    wf: dict[str, Any] = installed.portal(
        "/robots/run",
        "POST",
        client_id=installed.client_id,
        code=code,
        document_id=document,
        properties=properties,
    )
    return wf


def forge(
    installed: Installed,
    code: str,
    document: str,
    *,
    workflow_id: str = FAKE_WORKFLOW,
    event_token: str | None = None,
    subscribed: bool = False,
    **properties: str,
) -> requests.Response:
    """The call user 2 can post: their page's application token, no access token."""
    page = installed.open(user_id=2)["fields"]
    entity = document.rsplit("_", 1)[0].capitalize()
    form = {
        "workflow_id": workflow_id,
        "code": code,
        "document_id[0]": "crm",
        "document_id[1]": f"CCrmDocument{entity}",
        "document_id[2]": document,
        "document_type[0]": "crm",
        "document_type[1]": f"CCrmDocument{entity}",
        "document_type[2]": entity.upper(),
        "event_token": event_token or f"{workflow_id}|A12345_1_2_3|{'a' * 32}.{'0' * 64}",
        "use_subscription": "Y" if subscribed else "N",
        "timeout_duration": "0",
        "ts": "1700000000",
        **public_auth(installed),
        "auth[application_token]": page["APPLICATION_TOKEN"],
        **{f"properties[{k}]": v for k, v in properties.items()},
    }
    return requests.post(f"{installed.app.url}/robots/{code}", data=form, timeout=10)


def public_auth(installed: Installed) -> dict[str, str]:
    """What anyone in the portal knows: its domain and REST endpoints."""
    with installed.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        return {
            "auth[domain]": portal.domain,
            "auth[member_id]": portal.member_id,
            "auth[client_endpoint]": portal.client_endpoint,
            "auth[server_endpoint]": portal.server_endpoint,
        }


def security_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name == "marketapp.security" and "robot call" in r.getMessage()
    ]


def calls(installed: Installed) -> list[RobotCall]:
    with installed.app.app.app_context():
        return list(db_session().scalars(select(RobotCall).order_by(RobotCall.id)))


def assert_no_side_effect(installed: Installed, contact: dict[str, Any]) -> None:
    now = installed.emu("GET", f"/portals/{installed.member_id}/crm/contact")
    assert next(c for c in now if c["ID"] == contact["ID"])["NAME"] == contact["NAME"]
    assert installed.portal("/outbox") == []
    assert [a for a in installed.portal("/activities") if str(a["TYPE_ID"]) == "4"] == []
    with installed.app.app.app_context():
        assert db_session().scalars(select(SmsMessage)).all() == []


@pytest.mark.parametrize(
    ("code", "properties"),
    [
        ("edit_record", {"fields": "NAME = PWNED"}),
        ("send_email", {"subject": "Hi", "body": "Pay here"}),
        ("send_sms", {"text": "Pay here"}),
    ],
)
def test_forged_call_with_made_up_workflow_is_rejected(
    seeded: Installed, caplog: pytest.LogCaptureFixture, code: str, properties: dict[str, str]
) -> None:
    caplog.set_level(logging.WARNING, logger="marketapp.security")
    contact = contacts(seeded)[0]
    resp = forge(seeded, code, f"CONTACT_{contact['ID']}", **properties)
    assert resp.status_code == 200  # answered at once: the handler does no REST traffic
    seeded.settle()
    assert seeded.app.worker.errors == []
    assert_no_side_effect(seeded, contact)
    (call,) = calls(seeded)
    assert call.state is RobotCallState.REJECTED and call.answered_at is None
    (line,) = security_lines(caplog)
    assert line["reason"] == "not_subscribed" and line["call_id"] == call.id
    text = json.dumps(line)
    assert seeded.open(user_id=2)["fields"]["APPLICATION_TOKEN"] not in text
    assert call.event_token not in text and "|A12345" not in text
    sent = [r for r in seeded.emu("GET", "/requests") if r["method"] == "bizproc.event.send"]
    assert sent == []


def test_forged_call_with_made_up_subscribed_workflow_is_rejected(
    seeded: Installed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="marketapp.security")
    contact = contacts(seeded)[0]
    forge(seeded, "edit_record", f"CONTACT_{contact['ID']}", subscribed=True, fields="NAME = PWNED")
    seeded.settle()
    assert_no_side_effect(seeded, contact)
    assert [c.state for c in calls(seeded)] == [RobotCallState.REJECTED]
    assert [line["reason"] for line in security_lines(caplog)] == ["workflow_not_running"]


def test_running_workflow_of_another_document_is_rejected(
    seeded: Installed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="marketapp.security")
    victim, other = contacts(seeded)[:2]
    genuine = run(seeded, "timeline_comment", f"CONTACT_{other['ID']}", text="Real")
    seeded.settle()
    forge(
        seeded,
        "edit_record",
        f"CONTACT_{victim['ID']}",
        workflow_id=genuine["id"],
        subscribed=True,
        fields="NAME = PWNED",
    )
    seeded.settle()
    assert_no_side_effect(seeded, victim)
    real, forged = calls(seeded)
    assert (real.state, real.status) == (RobotCallState.DONE, "sent")
    assert forged.state is RobotCallState.REJECTED
    assert [line["reason"] for line in security_lines(caplog)] == ["document_mismatch"]


def test_real_workflow_with_forged_event_token_is_rejected(
    seeded: Installed, caplog: pytest.LogCaptureFixture
) -> None:
    """The right workflow on the right document, but a token Bitrix24 did not sign."""
    caplog.set_level(logging.WARNING, logger="marketapp.security")
    contact = contacts(seeded)[0]
    doc = f"CONTACT_{contact['ID']}"
    genuine = run(seeded, "timeline_comment", doc, text="Real")
    seeded.settle()
    wid, activity, _rest = genuine["event_token"].split("|")
    for token, reason in [
        (f"{wid}|{activity}|{'b' * 32}.{'1' * 64}", "event_token_forged"),
        (f"{FAKE_WORKFLOW}|{activity}|{'b' * 32}.{'1' * 64}", "event_token_mismatch"),
    ]:
        forge(
            seeded,
            "edit_record",
            doc,
            workflow_id=wid,
            event_token=token,
            subscribed=True,
            fields="NAME = PWNED",
        )
        seeded.settle()
        assert security_lines(caplog)[-1]["reason"] == reason
    assert_no_side_effect(seeded, contact)
    assert [c.state for c in calls(seeded)] == [RobotCallState.DONE] + [RobotCallState.REJECTED] * 2
    assert next(w for w in seeded.emu("GET", "/workflows") if w["id"] == wid)["sends"] == 1


def test_burst_of_genuine_calls_is_confirmed_in_batches(seeded: Installed) -> None:
    """65 genuine calls: every one confirmed, run and answered once; no rejection."""
    with seeded.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        portal.rate_per_second, portal.rate_burst = 200, 1000
        db_session().commit()
    people = contacts(seeded)
    wids = [
        run(seeded, "timeline_comment", f"CONTACT_{people[i % len(people)]['ID']}", text=f"N{i}")[
            "id"
        ]
        for i in range(65)
    ]
    seeded.settle()
    assert seeded.app.worker.errors == []
    flows = {w["id"]: w for w in seeded.emu("GET", "/workflows")}
    assert all(flows[w]["return_values"].get("status") == "sent" for w in wids)
    assert {flows[w]["sends"] for w in wids} == {1}
    assert {c.state for c in calls(seeded)} == {RobotCallState.DONE}
    log = seeded.emu("GET", "/requests")
    assert [r for r in log if r["method"].startswith("bizproc.workflow")] == []  # batched only


@pytest.mark.parametrize(
    "script",
    [
        [{"kind": "423", "count": 1}],  # activity.log: the workflow is being executed
        [{"kind": "503", "method": "batch", "count": 2}],  # the confirming batch itself
        [{"kind": "500", "method": "bizproc.workflow.instances", "count": 1}],  # one command
    ],
    ids=["423", "503", "500-in-batch"],
)
def test_transient_errors_while_confirming_retry_not_reject(
    seeded: Installed, script: list[dict[str, Any]]
) -> None:
    contact = contacts(seeded)[0]
    seeded.portal("/faults", "POST", script=script)
    wf = run(seeded, "timeline_comment", f"CONTACT_{contact['ID']}", text="Real")
    seeded.settle()
    # settle() does not see a job that is sleeping in the client's own retry backoff.
    wait_for(lambda: [c.state for c in calls(seeded)] == [RobotCallState.DONE])
    flow = next(w for w in seeded.emu("GET", "/workflows") if w["id"] == wf["id"])
    assert flow["return_values"]["status"] == "sent" and flow["sends"] == 1
    assert [(c.state, c.status) for c in calls(seeded)] == [(RobotCallState.DONE, "sent")]


def test_stored_token_without_admin_rights_parks_calls(
    seeded: Installed, caplog: pytest.LogCaptureFixture
) -> None:
    """bizproc.workflow.instances is for admins: without an answer nothing runs or is rejected."""
    caplog.set_level(logging.WARNING, logger="marketapp.robots")
    contact = contacts(seeded)[0]
    admin = seeded.devportal.emulator.portal(seeded.member_id).users[1]
    admin.admin = False
    try:
        run(seeded, "edit_record", f"CONTACT_{contact['ID']}", fields="NAME = Changed")
        seeded.settle()
        assert [c.state for c in calls(seeded)] == [RobotCallState.QUEUED]
        assert any(r.getMessage() == "portal unavailable" for r in caplog.records)
    finally:
        admin.admin = True
    assert_no_side_effect(seeded, contact)
