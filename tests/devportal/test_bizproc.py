"""Robots: registration errors, the handler POST, bizproc.event.send and activity.log."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from tests.devportal.conftest import Harness, Portal


def _robot(harness: Harness, **over: Any) -> dict[str, Any]:
    return {
        "CODE": "send_msg",
        "HANDLER": harness.receiver.url + "/robot",
        "AUTH_USER_ID": 1,
        "NAME": {"en": "Send message"},
        "PROPERTIES": {
            "text": {"Name": "Text", "Type": "text", "Required": "Y"},
            "channel": {
                "Name": "Channel",
                "Type": "select",
                "Default": "email",
                "Options": {"sms": "SMS", "email": "E-mail"},
            },
        },
        "RETURN_PROPERTIES": {
            "status": {"Name": "Status", "Type": "string"},
            "count": {"Name": "Count", "Type": "int"},
        },
        **over,
    }


@pytest.mark.parametrize(
    ("over", "error", "text"),
    [
        ({"CODE": ""}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Empty activity code!"),
        ({"CODE": "bad code"}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Wrong activity code!"),
        ({"HANDLER": "ftp://x/robot"}, "ERROR_UNSUPPORTED_PROTOCOL", None),
        ({"HANDLER": "http://elsewhere.example/robot"}, "ERROR_WRONG_HANDLER_URL", None),
        ({"NAME": ""}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Empty activity NAME!"),
        (
            {"PROPERTIES": {"1x": {"Name": "n"}}},
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Wrong property key 1x!",
        ),
        (
            {"PROPERTIES": {"x": {"Type": "string"}}},
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Empty property NAME x!",
        ),
        ({"USE_PLACEMENT": "Y"}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Empty PLACEMENT_HANDLER!"),
    ],
)
def test_robot_add_validation(
    harness: Harness, over: dict[str, Any], error: str, text: str | None
) -> None:
    p = harness.install()
    resp = p.call("bizproc.robot.add", _robot(harness, **over))
    assert resp.status_code == 400
    assert resp.json()["error"] == error
    if text:
        assert resp.json()["error_description"] == text


def test_robot_crud(harness: Harness) -> None:
    p = harness.install()
    assert p.ok("bizproc.robot.add", _robot(harness)) is True
    dup = p.call("bizproc.robot.add", _robot(harness))
    assert dup.json()["error"] == "ERROR_ACTIVITY_ALREADY_INSTALLED"
    assert p.ok("bizproc.robot.list") == ["send_msg"]
    assert p.ok("bizproc.robot.update", {"CODE": "send_msg", "FIELDS": {"NAME": "New"}}) is True
    empty = p.call("bizproc.robot.update", {"CODE": "send_msg", "FIELDS": {}})
    assert empty.json()["error_description"] == "No fields to update"
    assert (
        p.call("bizproc.robot.delete", {"CODE": "nope"}).json()["error"]
        == "ERROR_ACTIVITY_NOT_FOUND"
    )
    assert p.ok("bizproc.robot.delete", {"CODE": "send_msg"}) is True
    user = p.call("bizproc.robot.list", token=p.token_for(2))
    assert user.status_code == 403 and user.json()["error"] == "ACCESS_DENIED"


def _run(harness: Harness, p: Portal, **body: Any) -> dict[str, Any]:
    wf = harness.post(
        f"/portals/{p.member_id}/robots/run",
        {"client_id": p.client_id, "code": "send_msg", "document_id": "CONTACT_42", **body},
    )
    harness.deliveries()
    return dict(wf)


def test_robot_call_payload_and_event_send(harness: Harness) -> None:
    p = harness.install()
    p.ok("bizproc.robot.add", _robot(harness))
    wf = _run(harness, p, properties={"text": "Hello"})
    form = harness.receiver.last("/robot")["form"]
    assert form["document_id"] == {"0": "crm", "1": "CCrmDocumentContact", "2": "CONTACT_42"}
    assert form["document_type"] == {"0": "crm", "1": "CCrmDocumentContact", "2": "CONTACT"}
    assert form["properties"] == {"text": "Hello", "channel": "email"}
    assert form["use_subscription"] == "Y" and form["timeout_duration"] == "0"
    assert form["auth"]["user_id"] == "1" and "refresh_token" in form["auth"]
    token = form["event_token"]
    assert token == wf["event_token"] and token.count("|") == 2
    # Any user may answer; names are case-insensitive; unknown return keys are dropped.
    user = p.token_for(2)
    sent = p.ok(
        "bizproc.event.send",
        {"event_token": token, "return_values": {"STATUS": "ok", "count": "3", "junk": 1}},
        token=user,
    )
    assert sent is True
    state = harness.get("/workflows")[0]
    assert state["state"] == "completed" and state["return_values"] == {"status": "ok", "count": 3}
    repeat = p.call("bizproc.event.send", {"EVENT_TOKEN": token})
    assert repeat.status_code == 400 and repeat.json()["error"] == 404
    bad = p.call("bizproc.event.send", {"EVENT_TOKEN": "x|y|z"})
    assert bad.status_code == 403
    assert bad.json() == {"error": "ACCESS_DENIED", "error_description": "Access denied!"}


def test_repeat_send_is_true_while_workflow_runs_and_log(harness: Harness) -> None:
    p = harness.install()
    p.ok("bizproc.robot.add", _robot(harness))
    harness.server.emulator.config.workflow_finishes_on_close = False
    try:
        token = _run(harness, p)["event_token"]
        assert (
            p.call("bizproc.activity.log", {"EVENT_TOKEN": token}).json()["error"]
            == "ERROR_EMPTY_LOG_MESSAGE"
        )
        assert (
            p.ok("bizproc.activity.log", {"EVENT_TOKEN": token, "LOG_MESSAGE": "working"}) is True
        )
        assert harness.get("/workflows")[0]["state"] == "waiting"
        assert p.ok("bizproc.event.send", {"EVENT_TOKEN": token, "LOG_MESSAGE": "done"}) is True
        assert p.ok("bizproc.event.send", {"EVENT_TOKEN": token}) is True
        log = [e["message"] for e in harness.get("/workflows")[0]["log"]]
        assert log[-2:] == ["working", "done"]
    finally:
        harness.server.emulator.config.workflow_finishes_on_close = True


def test_timeout_and_no_subscription_and_no_user(harness: Harness) -> None:
    p = harness.install()
    p.ok("bizproc.robot.add", _robot(harness, AUTH_USER_ID=0))
    wf = _run(harness, p, timeout_duration=60)
    form = harness.receiver.last("/robot")["form"]
    assert "access_token" not in form["auth"] and form["auth"]["member_id"] == p.member_id
    harness.clock.advance(61)
    assert harness.get("/workflows")[0]["state"] == "timed_out"
    resp = p.call(
        "bizproc.event.send", {"EVENT_TOKEN": wf["event_token"], "RETURN_VALUES": {"status": "x"}}
    )
    assert resp.json()["error"] == 404
    p.ok("bizproc.robot.add", _robot(harness, CODE="nowait", USE_SUBSCRIPTION="N"))
    harness.post(
        f"/portals/{p.member_id}/robots/run",
        {"client_id": p.client_id, "code": "nowait", "document_id": "DEAL_1"},
    )
    assert harness.get("/workflows")[1]["state"] == "completed"


def test_injected_423(harness: Harness) -> None:
    p = harness.install()
    p.ok("bizproc.robot.add", _robot(harness))
    token = _run(harness, p)["event_token"]
    harness.post(f"/portals/{p.member_id}/faults", {"script": [{"kind": "423", "count": 1}]})
    assert p.call("bizproc.event.send", {"EVENT_TOKEN": token}).json()["error"] == 423
    assert p.ok("bizproc.event.send", {"EVENT_TOKEN": token}) is True


def test_automation_rule_runs_robot_on_stage_entry(harness: Harness) -> None:
    p = harness.install()
    p.ok("bizproc.robot.add", _robot(harness))
    deal = p.ok("crm.deal.add", {"fields": {"TITLE": "D", "STAGE_ID": "NEW"}})
    harness.post(
        f"/portals/{p.member_id}/automation",
        {"entity": "deal", "stage": "WON", "client_id": p.client_id, "code": "send_msg"},
    )
    p.ok("crm.item.update", {"entityTypeId": 2, "id": deal, "fields": {"stageId": "WON"}})
    harness.deliveries()
    assert harness.receiver.last("/robot")["form"]["document_id"]["2"] == f"DEAL_{deal}"


def test_workflow_start_errors(harness: Harness) -> None:
    p = harness.install()
    assert p.call("bizproc.workflow.start", {}).json()["error"] == "ERROR_WRONG_WORKFLOW_ID"
    resp = p.call("bizproc.workflow.start", {"TEMPLATE_ID": 1, "DOCUMENT_ID": ["crm"]})
    assert resp.json() == {"error": "", "error_description": "Wrong DOCUMENT_ID!"}


# -- bizproc.workflow.instances -------------------------------------------------------------------


def test_workflow_instances_lists_running_workflows(harness: Harness) -> None:
    p = harness.install()
    p.ok("bizproc.robot.add", _robot(harness))
    first = _run(harness, p)
    second = _run(harness, p, document_id="DEAL_7")
    rows = p.call("bizproc.workflow.instances", {}).json()
    assert rows["total"] == 2 and "next" not in rows
    assert set(rows["result"][0]) == {"ID", "MODIFIED", "OWNED_UNTIL"}  # the default select
    assert rows["result"][0]["OWNED_UNTIL"] is None
    select = ["ID", "MODULE_ID", "ENTITY", "DOCUMENT_ID", "STARTED", "STARTED_BY", "TEMPLATE_ID"]
    found = p.ok("bizproc.workflow.instances", {"select": select, "filter": {"ID": first["id"]}})
    assert found == [
        {
            "ID": first["id"],
            "MODULE_ID": "crm",
            "ENTITY": "CCrmDocumentContact",
            "DOCUMENT_ID": "CONTACT_42",
            "STARTED": found[0]["STARTED"],
            "STARTED_BY": "0",
            "TEMPLATE_ID": "1",
        }
    ]
    assert found[0]["STARTED"].endswith("+00:00")
    # Operators: "!" negates; "=" is not one Bitrix24 allows, so the key is ignored.
    others = p.ok("bizproc.workflow.instances", {"filter": {"!ID": first["id"]}})
    assert [r["ID"] for r in others] == [second["id"]]
    assert len(p.ok("bizproc.workflow.instances", {"filter": {"=ID": first["id"]}})) == 2
    assert p.ok("bizproc.workflow.instances", {"filter": {"ID": "nope.1"}}) == []
    by_doc = p.ok(
        "bizproc.workflow.instances",
        {"select": ["ID"], "filter": {"DOCUMENT_ID": "DEAL_7", ">=TEMPLATE_ID": 1}},
    )
    assert by_doc == [{"ID": second["id"]}]
    asc = p.ok("bizproc.workflow.instances", {"order": {"DOCUMENT_ID": "asc"}, "select": ["ID"]})
    assert [r["ID"] for r in asc] == [first["id"], second["id"]]
    # The old name is an alias with the same answer.
    assert (
        p.ok("bizproc.workflow.instance.list", {"filter": {"ID": first["id"]}})[0]["ID"]
        == (first["id"])
    )


def test_workflow_instances_is_for_admins(harness: Harness) -> None:
    p = harness.install()
    resp = p.call("bizproc.workflow.instances", {}, token=p.token_for(2))
    assert resp.status_code == 403
    assert resp.json() == {"error": "ACCESS_DENIED", "error_description": "Access denied!"}


def test_finished_workflows_leave_the_list(harness: Harness) -> None:
    p = harness.install()
    p.ok("bizproc.robot.add", _robot(harness))
    wf = _run(harness, p)
    assert [r["ID"] for r in p.ok("bizproc.workflow.instances")] == [wf["id"]]
    p.ok("bizproc.event.send", {"EVENT_TOKEN": wf["event_token"]})
    assert p.ok("bizproc.workflow.instances") == []


def test_workflow_instances_pages_by_50(harness: Harness) -> None:
    p = harness.install()
    p.ok("bizproc.robot.add", _robot(harness))
    for n in range(120):
        harness.post(
            f"/portals/{p.member_id}/robots/run",
            {"client_id": p.client_id, "code": "send_msg", "document_id": f"CONTACT_{n + 1}"},
        )
    harness.deliveries()
    seen: list[str] = []
    start: int | None = 0
    while start is not None:
        page = p.call("bizproc.workflow.instances", {"start": start}).json()
        assert page["total"] == 120 and len(page["result"]) <= 50
        seen += [r["ID"] for r in page["result"]]
        start = page.get("next")
    assert len(seen) == len(set(seen)) == 120
    # In a batch, one command per workflow: results under the caller's keys.
    cmd = {
        f"w{i}": f"bizproc.workflow.instances?filter[ID]={wid}" for i, wid in enumerate(seen[:3])
    }
    batch = p.ok("batch", {"cmd": cmd})
    assert [batch["result"][f"w{i}"][0]["ID"] for i in range(3)] == seen[:3]


def test_event_token_is_signed_with_a_portal_secret(harness: Harness) -> None:
    """Not with the application token: every employee can read that one."""
    p = harness.install()
    p.ok("bizproc.robot.add", _robot(harness))
    token = _run(harness, p)["event_token"]
    value, signature = token.rsplit(".", 1)
    for key in (p.application_token, p.client_secret):
        assert hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest() != signature
    forged = f"{value}.{'0' * 64}"
    assert p.call("bizproc.activity.log", {"EVENT_TOKEN": forged, "LOG_MESSAGE": "x"}).json() == {
        "error": "ACCESS_DENIED",
        "error_description": "Access denied!",
    }
    assert p.ok("bizproc.activity.log", {"EVENT_TOKEN": token, "LOG_MESSAGE": "checking"}) is True
