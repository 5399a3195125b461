"""tasks.task.get/update, im.notify.personal.add, comment update/delete, crm.activity.delete."""

from __future__ import annotations

from tests.devportal.conftest import Harness


def test_task_get_and_update(harness: Harness) -> None:
    p = harness.install()
    fields = {"TITLE": "Call", "RESPONSIBLE_ID": 1, "UF_CRM_TASK": ["C_1"]}
    tid = p.ok("tasks.task.add", {"fields": fields})["task"]["id"]
    task = p.ok("tasks.task.get", {"taskId": tid})["task"]
    assert task["title"] == "Call" and task["responsibleId"] == "1"
    assert "ufCrmTask" not in task  # docs: UF_CRM_TASK only when selected
    picked = p.ok("tasks.task.get", {"taskId": tid, "select": ["TITLE", "UF_CRM_TASK"]})["task"]
    assert picked == {"id": tid, "title": "Call", "ufCrmTask": ["C_1"]}
    assert p.ok("tasks.task.get", {"taskId": 999}) == []  # missing: empty array, not an error
    assert p.call("tasks.task.get", {}).json()["error"] == "100"
    assert p.call("tasks.task.get", {"taskId": "abc"}).json() == {
        "error": "0",
        "error_description": "wrong task id",
    }
    assert p.call("tasks.task.get", {"taskId": tid, "select": "TITLE"}).json()["error"] == "100"

    updated = p.ok(
        "tasks.task.update",
        {"taskId": tid, "fields": {"TITLE": "Call back", "DEADLINE": "2030-01-01T10:00:00+00:00"}},
    )["task"]
    assert updated["title"] == "Call back" and updated["deadline"].startswith("2030")
    assert updated["changedBy"] == "1"
    none = p.call("tasks.task.update", {"taskId": tid, "fields": {}})
    assert none.status_code == 400 and none.json()["error"] == "100"
    ghost = p.call("tasks.task.update", {"taskId": tid, "fields": {"RESPONSIBLE_ID": 77}})
    assert ghost.json() == {
        "error": "ERROR_CORE",
        "error_description": 'The user specified in the "Responsible" field was not found<br>',
    }
    status = p.call("tasks.task.update", {"taskId": tid, "fields": {"STATUS": 99}})
    assert status.json()["error_description"] == "Invalid status<br>"
    assert p.ok("tasks.task.get", {"taskId": tid})["task"]["title"] == "Call back"  # unchanged


def test_task_access_for_an_ordinary_user(harness: Harness) -> None:
    p = harness.install()
    own = p.ok("tasks.task.add", {"fields": {"TITLE": "Mine", "RESPONSIBLE_ID": 2}})["task"]["id"]
    other = p.ok("tasks.task.add", {"fields": {"TITLE": "Admin's", "RESPONSIBLE_ID": 1}})["task"]
    token = p.token_for(2)
    assert p.ok("tasks.task.get", {"taskId": own}, token=token)["task"]["title"] == "Mine"
    assert p.ok("tasks.task.get", {"taskId": other["id"]}, token=token) == []
    denied = p.call(
        "tasks.task.update", {"taskId": other["id"], "fields": {"TITLE": "x"}}, token=token
    )
    assert denied.status_code == 400 and denied.json() == {
        "error": "0",
        "error_description": "Action on the task is not allowed (internal error)",
    }
    done = p.ok("tasks.task.update", {"taskId": own, "fields": {"STATUS": 5}}, token=token)
    assert done["task"]["status"] == "5"


def test_notify_personal(harness: Harness) -> None:
    p = harness.install()
    nid = p.ok("im.notify.personal.add", {"USER_ID": 2, "MESSAGE": "  Deal won  "})
    note = harness.get(f"/portals/{p.member_id}/notifications")[-1]
    assert note["id"] == nid and note["kind"] == "personal" and note["message"] == "Deal won"
    assert note["from_user_id"] == 1
    assert p.call("im.notify.personal.add", {"MESSAGE": "x"}).json() == {
        "error": "USER_ID_EMPTY",
        "error_description": "User ID can't be empty",
    }
    assert p.call("im.notify.personal.add", {"USER_ID": 0, "MESSAGE": "x"}).json()["error"] == (
        "USER_ID_EMPTY"
    )
    assert p.call("im.notify.personal.add", {"USER_ID": 2, "MESSAGE": " "}).json() == {
        "error": "MESSAGE_EMPTY",
        "error_description": "Message can't be empty",
    }
    assert p.ok("im.notify.personal.add", {"USER_ID": 99, "MESSAGE": "x"}) is False
    no_im = harness.install(scopes=["crm"])
    assert no_im.call("im.notify.personal.add", {"USER_ID": 2, "MESSAGE": "x"}).status_code == 403


def test_timeline_comment_update_and_delete(harness: Harness) -> None:
    p = harness.install()
    cid = p.ok("crm.contact.add", {"fields": {"NAME": "C"}})
    com = p.ok(
        "crm.timeline.comment.add",
        {"fields": {"ENTITY_ID": cid, "ENTITY_TYPE": "contact", "COMMENT": "first"}},
    )
    assert p.ok("crm.timeline.comment.update", {"id": com, "fields": {"COMMENT": "second"}}) == com
    listed = p.ok("crm.timeline.comment.list", {"filter": {"ENTITY_ID": cid}})
    assert listed[0]["COMMENT"] == "second"
    empty = p.call("crm.timeline.comment.update", {"id": com, "fields": {"COMMENT": ""}})
    assert empty.json() == {
        "error": "INVALID_ARG_VALUE",
        "error_description": "Empty comment message",
    }
    assert p.call("crm.timeline.comment.update", {"id": com}).json()["error"] == 100
    assert (
        p.call("crm.timeline.comment.update", {"fields": {"COMMENT": "x"}}).json()["error"] == 100
    )
    missing = p.call("crm.timeline.comment.update", {"id": 999, "fields": {"COMMENT": "x"}})
    assert missing.json() == {"error": "NOT_FOUND", "error_description": "Not found."}
    wrong_owner = p.call(
        "crm.timeline.comment.delete", {"id": com, "ownerTypeId": 2, "ownerId": cid}
    )
    assert wrong_owner.json()["error"] == "OWNER_NOT_FOUND"
    assert (
        p.ok("crm.timeline.comment.delete", {"id": com, "ownerTypeId": 3, "ownerId": cid}) is None
    )
    assert p.ok("crm.timeline.comment.list", {"filter": {"ENTITY_ID": cid}}) == []
    assert p.call("crm.timeline.comment.delete", {"id": com}).json()["error"] == "NOT_FOUND"


def test_timeline_comment_on_a_hidden_record(harness: Harness) -> None:
    p = harness.install()
    cid = p.ok("crm.contact.add", {"fields": {"NAME": "C"}})  # responsible: user 1
    com = p.ok(
        "crm.timeline.comment.add",
        {"fields": {"ENTITY_ID": cid, "ENTITY_TYPE": "contact", "COMMENT": "x"}},
    )
    harness.post(f"/portals/{p.member_id}/permissions", {"records": {"2": "own"}})
    token = p.token_for(2)
    resp = p.call("crm.timeline.comment.delete", {"id": com}, token=token)
    assert resp.json()["error"] == "ACCESS_DENIED"
    assert harness.get(f"/portals/{p.member_id}/timeline")["comments"]  # still there


def test_activity_delete(harness: Harness) -> None:
    p = harness.install()
    cid = p.ok("crm.contact.add", {"fields": {"NAME": "C"}})
    fields = {
        "OWNER_TYPE_ID": 3,
        "OWNER_ID": cid,
        "TYPE_ID": 4,
        "SUBJECT": "Hi",
        "RESPONSIBLE_ID": 1,
        "COMMUNICATIONS": [{"VALUE": "c@example.com", "ENTITY_ID": cid, "ENTITY_TYPE_ID": 3}],
    }
    aid = p.ok("crm.activity.add", {"fields": fields})
    harness.post(f"/portals/{p.member_id}/permissions", {"records": {"2": "own"}})
    hidden = p.call("crm.activity.delete", {"id": aid}, token=p.token_for(2))
    assert hidden.json() == {"error": "", "error_description": "Access denied."}
    assert p.ok("crm.activity.delete", {"id": aid}) is True
    assert p.call("crm.activity.get", {"id": aid}).json()["error_description"] == "Not found"
    assert p.call("crm.activity.delete", {"id": aid}).json() == {
        "error": "",
        "error_description": "Activity is not found",
    }
    assert p.call("crm.activity.delete", {}).json()["error_description"] == (
        "ID is not defined or invalid."
    )


def test_task_complete(harness: Harness) -> None:
    p = harness.install()
    tid = p.ok("tasks.task.add", {"fields": {"TITLE": "Call", "RESPONSIBLE_ID": 2}})["task"]["id"]
    other = p.ok("tasks.task.add", {"fields": {"TITLE": "Admin's", "RESPONSIBLE_ID": 1}})["task"]
    not_allowed = {"error": "0", "error_description": "Action on the task is not allowed"}
    denied = p.call("tasks.task.complete", {"taskId": other["id"]}, token=p.token_for(2))
    assert denied.status_code == 400 and denied.json() == not_allowed
    assert p.call("tasks.task.complete", {"taskId": "abc"}).json()["error_description"] == (
        "wrong task id"
    )
    assert p.call("tasks.task.complete", {"taskId": 999}).json() == not_allowed
    done = p.ok("tasks.task.complete", {"taskId": tid})["task"]
    assert done["status"] == "5" and done["closedBy"] == "1"
    again = p.call("tasks.task.complete", {"taskId": tid})  # a completed task offers no "complete"
    assert again.status_code == 400 and again.json() == not_allowed
