"""CRM, activities, timeline, batch, tasks, notifications, message service, events, placements."""

from __future__ import annotations

import requests

from tests.devportal.conftest import Harness


def test_legacy_contact_shapes_and_errors(harness: Harness) -> None:
    p = harness.install()
    cid = p.ok(
        "crm.contact.add",
        {"fields": {"NAME": "Ann", "PHONE": [{"VALUE": "+4911", "VALUE_TYPE": "MOBILE"}]}},
        as_form=True,
    )
    contact = p.ok("crm.contact.get", {"id": cid})
    assert contact["ID"] == str(cid) and contact["NAME"] == "Ann" and contact["HAS_EMAIL"] == "N"
    assert "EMAIL" not in contact
    assert (
        contact["PHONE"][0]["VALUE_TYPE"] == "MOBILE" and contact["PHONE"][0]["TYPE_ID"] == "PHONE"
    )
    resp = p.call("crm.contact.get", {"id": 999})
    assert resp.status_code == 400 and resp.json() == {
        "error": "",
        "error_description": "Not found",
    }
    resp = p.call("crm.contact.get", {})
    assert resp.json()["error_description"] == "ID is not defined or invalid."
    phone_id = contact["PHONE"][0]["ID"]
    p.ok(
        "crm.contact.update",
        {
            "id": cid,
            "fields": {
                "PHONE": [
                    {"ID": phone_id, "VALUE": "+4922"},
                    {"VALUE": "+4933", "VALUE_TYPE": "WORK"},
                ],
                "EMAIL": [{"VALUE": "a@example.com"}],
            },
        },
    )
    contact = p.ok("crm.contact.get", {"id": cid})
    assert [x["VALUE"] for x in contact["PHONE"]] == ["+4922", "+4933"] and contact[
        "HAS_EMAIL"
    ] == "Y"
    p.ok("crm.contact.update", {"id": cid, "fields": {"PHONE": [{"ID": phone_id, "DELETE": "Y"}]}})
    assert len(p.ok("crm.contact.get", {"id": cid})["PHONE"]) == 1
    bad = p.call("crm.contact.update", {"id": cid, "fields": {"EMAIL": [{"VALUE": "nope"}]}})
    assert bad.json()["error"] == "ERROR_CORE"
    assert p.call("crm.contact.update", {"id": 999, "fields": {"NAME": "x"}}).json()[
        "error_description"
    ] == ("Contact is not found")


def test_list_paging_filters_select_order(harness: Harness) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"n": 120})
    page = p.call("crm.contact.list", {"select": ["ID", "NAME"]}).json()
    assert len(page["result"]) == 50 and page["total"] == 120 and page["next"] == 50
    assert set(page["result"][0]) == {"ID", "NAME"}
    last = p.call("crm.contact.list", {"start": 100}).json()
    assert len(last["result"]) == 20 and "next" not in last
    fast = p.call(
        "crm.contact.list", {"start": -1, "filter": {">ID": 60}, "order": {"ID": "ASC"}}
    ).json()
    assert "total" not in fast and "next" not in fast and fast["result"][0]["ID"] == "61"
    desc = p.ok("crm.contact.list", {"order": {"ID": "DESC"}, "filter": {"<=ID": 3}})
    assert [r["ID"] for r in desc] == ["3", "2", "1"]
    some = p.ok("crm.contact.list", {"filter": {"@ID": [1, 2]}, "select": ["ID", "EMAIL", "UF_*"]})
    assert "UF_CRM_NO_EMAIL" in some[0]
    named = p.ok("crm.contact.list", {"filter": {"%NAME": "ann"}})
    assert all("ann" in r["NAME"].lower() for r in named)
    with_email = p.ok("crm.contact.list", {"filter": {"HAS_EMAIL": "Y"}, "select": ["ID", "EMAIL"]})
    email = with_email[0]["EMAIL"][0]["VALUE"]
    assert p.ok("crm.contact.list", {"filter": {"EMAIL": email}})[0]["ID"] == with_email[0]["ID"]


def test_other_legacy_entities(harness: Harness) -> None:
    p = harness.install()
    for entity, fields in (
        ("company", {"TITLE": "Acme"}),
        ("deal", {"TITLE": "D", "STAGE_ID": "NEW"}),
        ("lead", {"TITLE": "L"}),
    ):
        rid = p.ok(f"crm.{entity}.add", {"fields": fields})
        assert p.ok(f"crm.{entity}.get", {"id": rid})["TITLE"] == fields["TITLE"]
        assert p.ok(f"crm.{entity}.update", {"id": rid, "fields": {"TITLE": "X"}}) is True
        assert p.ok(f"crm.{entity}.list")[0]["TITLE"] == "X"


def test_crm_item_camel_case_and_fm(harness: Harness) -> None:
    p = harness.install()
    cid = p.ok(
        "crm.contact.add",
        {"fields": {"NAME": "Bo", "LAST_NAME": "B", "EMAIL": [{"VALUE": "b@x.io"}]}},
    )
    item = p.ok("crm.item.get", {"entityTypeId": 3, "id": cid})["item"]
    assert item["id"] == cid and item["lastName"] == "B" and item["fm"][0]["typeId"] == "EMAIL"
    fm_id = item["fm"][0]["id"]
    updated = p.ok(
        "crm.item.update",
        {
            "entityTypeId": 3,
            "id": cid,
            "fields": {
                "name": "Bob",
                "fm": {
                    "n0": {"typeId": "PHONE", "valueType": "WORK", "value": "+1"},
                    str(fm_id): {"value": ""},
                },
            },
        },
    )["item"]
    assert updated["name"] == "Bob" and [f["typeId"] for f in updated["fm"]] == ["PHONE"]
    listing = p.call(
        "crm.item.list", {"entityTypeId": 3, "select": ["id", "name"], "filter": {"=name": "Bob"}}
    )
    body = listing.json()
    assert body["result"] == {"items": [{"id": cid, "name": "Bob"}]} and body["total"] == 1
    assert p.call("crm.item.get", {"entityTypeId": 3, "id": 999}).json()["error"] == "NOT_FOUND"


def test_activity_email_outbox_only_when_completed_outgoing(harness: Harness) -> None:
    p = harness.install()
    cid = p.ok("crm.contact.add", {"fields": {"NAME": "C"}})
    base = {
        "OWNER_TYPE_ID": 3,
        "OWNER_ID": cid,
        "TYPE_ID": 4,
        "SUBJECT": "Hi",
        "DESCRIPTION": "Body",
        "RESPONSIBLE_ID": 1,
        "DIRECTION": 2,
        "ORIGINATOR_ID": "smart_scenarios",
        "COMMUNICATIONS": [{"VALUE": "c@example.com", "ENTITY_ID": cid, "ENTITY_TYPE_ID": 3}],
    }
    draft = p.ok("crm.activity.add", {"fields": {**base, "COMPLETED": "N", "ORIGIN_ID": "k1"}})
    sent = p.ok("crm.activity.add", {"fields": {**base, "COMPLETED": "Y", "ORIGIN_ID": "k2"}})
    outbox = harness.get(f"/portals/{p.member_id}/outbox")
    assert [m["activity_id"] for m in outbox] == [sent] and outbox[0]["to"] == "c@example.com"
    found = p.ok(
        "crm.activity.list", {"filter": {"ORIGIN_ID": "k1", "ORIGINATOR_ID": "smart_scenarios"}}
    )
    assert [a["ID"] for a in found] == [str(draft)]
    assert p.ok("crm.activity.get", {"id": sent})["SUBJECT"] == "Hi"
    resp = p.call("crm.activity.add", {"fields": {**base, "SUBJECT": ""}})
    assert resp.json() == {
        "error": "",
        "error_description": "The field SUBJECT is not defined or empty",
    }
    two = [{"VALUE": "a@x.io"}, {"VALUE": "b@x.io"}]
    resp = p.call("crm.activity.add", {"fields": {**base, "COMMUNICATIONS": two}})
    assert "only one communication" in resp.json()["error_description"]
    harness.post(f"/portals/{p.member_id}/faults", {"rates": {"email_error": "General error"}})
    resp = p.call("crm.activity.add", {"fields": {**base, "COMPLETED": "Y", "ORIGIN_ID": "k3"}})
    assert resp.json()["error_description"] == "Email send error. General error"
    assert p.ok("crm.activity.list", {"filter": {"ORIGIN_ID": "k3"}})  # created but unsent


def test_timeline_comments(harness: Harness) -> None:
    p = harness.install()
    cid = p.ok("crm.contact.add", {"fields": {"NAME": "C"}})
    com = p.ok(
        "crm.timeline.comment.add",
        {"fields": {"ENTITY_ID": cid, "ENTITY_TYPE": "contact", "COMMENT": "x"}},
    )
    assert p.ok(
        "crm.timeline.comment.list", {"filter": {"ENTITY_ID": cid, "ENTITY_TYPE": "contact"}}
    )[0]["ID"] == (str(com))
    empty = p.call(
        "crm.timeline.comment.add", {"fields": {"ENTITY_ID": cid, "ENTITY_TYPE": "contact"}}
    )
    assert empty.json()["error"] == "INVALID_ARG_VALUE"
    owner = p.call(
        "crm.timeline.comment.add",
        {"fields": {"ENTITY_ID": 999, "ENTITY_TYPE": "contact", "COMMENT": "x"}},
    )
    assert owner.json()["error"] == "OWNER_NOT_FOUND"
    assert p.call("crm.timeline.comment.add", {}).json()["error"] == 100
    assert (
        harness.get(f"/portals/{p.member_id}/timeline?entity=contact")["comments"][0]["COMMENT"]
        == "x"
    )


def test_batch_references_halt_and_errors(harness: Harness) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"n": 10})
    cmd = {
        "list": "crm.contact.list?filter[>ID]=2&order[ID]=ASC&select[0]=ID",
        "get": "crm.contact.get?id=$result[list][0][ID]",
        "str": "crm.contact.list?filter[NAME]=x$result[get][NAME]y",
        "bad": "crm.contact.get?id=9999",
        "ids": "crm.contact.list?filter[@ID]=$result[list][1]",
    }
    body = p.call("batch", {"cmd": cmd, "halt": 0}).json()
    res = body["result"]
    assert res["result"]["get"]["ID"] == "3"
    assert res["result_error"] == {"bad": {"error": "", "error_description": "Not found"}}
    assert res["result_total"]["list"] == 8 and res["result_next"] == []
    assert set(res["result_time"]) == {"list", "get", "str", "ids"}
    halted = p.call(
        "batch", {"cmd": {"a": "crm.contact.get?id=9999", "b": "profile"}, "halt": 1}
    ).json()
    assert halted["result"]["result"] == [] and "b" not in halted["result"]["result_error"]
    as_list = p.call("batch", {"cmd": ["profile", "user.current"]}).json()["result"]["result"]
    assert isinstance(as_list, list) and as_list[1]["ID"] == "1"
    nested = p.call("batch", {"cmd": {"n": "batch?cmd[a]=profile"}}).json()["result"][
        "result_error"
    ]
    assert nested["n"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    too_many = p.call("batch", {"cmd": {str(i): "profile" for i in range(51)}})
    assert too_many.status_code == 400 and too_many.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"
    # The URL-query encoding of a batch (encoded twice) works too.
    q = requests.get(
        p.rest + "batch",
        params={"auth": p.access_token, "cmd[x]": "crm.contact.get?id=1"},
        timeout=5,
    )
    assert q.json()["result"]["result"]["x"]["ID"] == "1"


def test_tasks_notify_and_message_service(harness: Harness) -> None:
    p = harness.install()
    task = p.ok("tasks.task.add", {"fields": {"TITLE": "Call", "RESPONSIBLE_ID": 1}})
    assert task["task"]["title"] == "Call"
    assert p.call("tasks.task.add", {"fields": {}}).status_code == 400
    assert isinstance(p.ok("im.notify.system.add", {"USER_ID": 2, "MESSAGE": "hi"}), int)
    assert p.call("im.notify.system.add", {"USER_ID": 2}).json()["error"] == "MESSAGE_EMPTY"
    sender = {
        "CODE": "sms1",
        "TYPE": "SMS",
        "HANDLER": harness.receiver.url + "/sms",
        "NAME": "SMS",
    }
    assert p.ok("messageservice.sender.add", sender) is True
    assert (
        p.call("messageservice.sender.add", sender).json()["error"]
        == "ERROR_SENDER_ALREADY_INSTALLED"
    )
    assert p.call("messageservice.sender.add", {**sender, "CODE": "a b"}).json()[
        "error_description"
    ] == ("Wrong sender code!")
    assert p.ok("messageservice.sender.list") == ["sms1"]
    sms = harness.post(
        f"/portals/{p.member_id}/sms",
        {"client_id": p.client_id, "code": "sms1", "phone": "+4915", "text": "Hi"},
    )
    harness.deliveries()
    form = harness.receiver.last("/sms")["form"]
    assert form["message_to"] == "+4915" and form["properties"]["message_text"] == "Hi"
    upd = {"CODE": "sms1", "MESSAGE_ID": sms["message_id"], "STATUS": "delivered"}
    assert p.ok("messageservice.message.status.update", upd) is True
    assert p.call("messageservice.message.status.update", {**upd, "STATUS": "x"}).json()[
        "error"
    ] == ("ERROR_MESSAGE_STATUS_INCORRECT")
    assert p.call("messageservice.message.status.update", {**upd, "MESSAGE_ID": "x"}).json()[
        "error"
    ] == ("ERROR_MESSAGE_NOT_FOUND")
    assert harness.get(f"/portals/{p.member_id}/sms")[0]["status"] == "delivered"
    assert p.ok("messageservice.sender.delete", {"CODE": "sms1"}) is True


def test_event_and_placement_methods(harness: Harness) -> None:
    p = harness.install()
    url = harness.receiver.url + "/h"
    assert (
        p.call("event.bind", {"event": "ONNOPE", "handler": url}).json()["error"]
        == "ERROR_EVENT_NOT_FOUND"
    )
    p.ok("event.bind", {"event": "onCrmContactAdd", "handler": url})
    assert p.call("event.bind", {"event": "ONCRMCONTACTADD", "handler": url}).json()["error"] == (
        "ERROR_HANDLER_ALREADY_EXIST"
    )
    assert p.ok("event.get")[0]["event"] == "ONCRMCONTACTADD"
    p.ok("crm.contact.add", {"fields": {"NAME": "E"}})
    harness.deliveries()
    assert harness.receiver.last("/h")["form"]["event"] == "ONCRMCONTACTADD"
    assert p.ok("event.unbind", {"event": "ONCRMCONTACTADD", "handler": url}) == {"count": 1}
    for handler in (url, url + "2"):
        p.ok(
            "placement.bind",
            {"PLACEMENT": "CRM_CONTACT_LIST_MENU", "HANDLER": handler, "OPTIONS": {"x": 1}},
        )
    dup = p.call("placement.bind", {"PLACEMENT": "CRM_CONTACT_LIST_MENU", "HANDLER": url})
    assert dup.status_code == 400
    missing = p.call("placement.bind", {"HANDLER": url})
    assert missing.status_code == 200 and missing.json()["argument"] == "PLACEMENT"
    assert p.call("placement.bind", {"PLACEMENT": "NOPE", "HANDLER": url}).json()["error"] == (
        "ERROR_PLACEMENT_NOT_FOUND"
    )
    got = p.ok("placement.get")
    assert len(got) == 2 and got[0]["options"] == []
    assert "CRM_CONTACT_LIST_MENU" in p.ok("placement.list")
    assert p.ok("placement.unbind", {"PLACEMENT": "CRM_CONTACT_LIST_MENU"}) == {"count": 2}
    no_crm = harness.install(scopes=["placement"])
    assert (
        no_crm.call(
            "placement.bind", {"PLACEMENT": "CRM_CONTACT_LIST_MENU", "HANDLER": url}
        ).json()["error"]
        == "ERROR_PLACEMENT_NOT_FOUND"
    )
