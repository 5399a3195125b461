"""The launch pages' JSON API over HTTP against the emulator: preview, launch, status, log,
stop, undo and my launches; bad input is a 400 with a message in the user's language, other
users' and other portals' launches are 404, forged contexts and tokens are refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.models import Portal
from marketapp.scenarios import versions
from tests.e2e.harness import Installed, wait_for
from tests.support import has_mobile, seeded_contacts

pytestmark = pytest.mark.e2e

SCENARIO: dict[str, Any] = {
    "schema": 1,
    "key": "sms-offer",
    "name": {"en": "SMS offer", "ru": "SMS-предложение"},
    "description": {"en": "Sends an SMS offer.", "ru": "Отправляет SMS с предложением."},
    "entity_types": ["CONTACT"],
    "parameters": [
        {
            "key": "text",
            "type": "text",
            "label": {"en": "SMS text", "ru": "Текст SMS"},
            "default": "Sale today",
            "required": True,
            "max_length": 500,
        },
        {
            "key": "discount",
            "type": "integer",
            "label": {"en": "Discount, %", "ru": "Скидка, %"},
            "default": 10,
            "min": 5,
            "max": 50,
        },
    ],
    "steps": [{"type": "send_sms", "text": "{{ params.text }} -{{ params.discount }}%"}],
}


def add_scenario(installed: Installed, definition: dict[str, Any] = SCENARIO) -> None:
    with installed.app.app.app_context():
        session = db_session()
        portal = session.scalars(select(Portal)).one()
        versions.save(session, portal, definition, author_id=1)
        session.commit()
        session.close()


class Page:
    """A launcher page opened from a placement, as its script talks to the API."""

    def __init__(self, installed: Installed, placement: str, user_id: int = 1, **options: Any):
        self.installed = installed
        resp = installed.post_form(installed.open(placement, user_id=user_id, **options))
        assert resp.status_code == 200, resp.text
        self.html = resp.text
        self.token = _attr(resp.text, r'name="session-token" content="([^"]+)"')
        self.context = _attr(resp.text, r'data-context="([^"]*)"')
        key = re.search(r'data-idempotency-key="([^"]+)"', resp.text)
        self.key = key.group(1) if key else ""
        self.user_token = installed.portal(
            "/tokens", "POST", client_id=installed.client_id, user_id=user_id
        )["access_token"]

    def call(self, method: str, path: str, **body: Any) -> requests.Response:
        headers = {"X-Session-Token": self.token, "X-User-Token": self.user_token}
        return requests.request(
            method,
            f"{self.installed.app.url}{path}",
            json=body if method == "POST" else None,
            headers=headers,
            timeout=30,
        )

    def body(self, ids: list[Any], **extra: Any) -> dict[str, Any]:
        return {"context": self.context, "scenario": "sms-offer", "ids": ids, **extra}


def _attr(html: str, pattern: str) -> str:
    match = re.search(pattern, html)
    assert match, pattern
    return match.group(1)


def contacts(installed: Installed) -> tuple[list[int], int]:
    """Two contacts with a usable mobile and one without any phone."""
    rows = seeded_contacts(installed)
    with_phone = [int(c["ID"]) for c in rows if has_mobile(c) and c["UF_CRM_NO_SMS"] != "Y"]
    without = next(int(c["ID"]) for c in rows if not c.get("PHONE"))
    return with_phone[:2], without


def test_preview_launch_status_log_and_stop(installed: Installed) -> None:
    installed.portal("/seed", "POST", n=30)
    add_scenario(installed)
    page = Page(installed, "CRM_CONTACT_LIST_TOOLBAR")
    assert "SMS offer" in page.html and "Sends an SMS offer." in page.html
    phones, no_phone = contacts(installed)
    ids = [f"C_{i}" for i in phones] + [str(no_phone)]

    resp = page.call("POST", "/api/launch/preview", **page.body(ids, params={"text": "Hi"}))
    assert resp.status_code == 200, resp.text
    preview = resp.json()
    assert preview["records"] == 3 and preview["outcomes"] == {
        "ready": 2,
        "skipped": 1,
        "failed": 0,
    }
    (reason,) = preview["reasons"]
    assert reason["reason"] == "no_phone" and reason["label"] == "No phone"
    assert [r["id"] for r in reason["records"]] == [no_phone]
    assert reason["records"][0]["path"] == f"/crm/contact/details/{no_phone}/"
    (sample,) = preview["samples"]
    assert sample["type"] == "send_sms" and sample["text"] == "Hi -10%"
    assert preview["sms_segments"] == 2 and preview["eta"]["seconds"] >= 0

    body = page.body(ids, params={"text": "Hi"}, idempotency_key=page.key)
    first = page.call("POST", "/api/launch/start", **body)
    again = page.call("POST", "/api/launch/start", **body)  # a double click
    assert first.status_code == 200, first.text
    assert again.json()["id"] == first.json()["id"]
    launch_id = first.json()["id"]

    def finished() -> dict[str, Any] | None:
        doc = page.call("GET", f"/api/launch/{launch_id}/status").json()
        return doc if doc["state"] == "done" else None

    status = wait_for(finished, timeout=60)
    assert status["counters"]["done"] == 2 and status["counters"]["skipped"] == {"no_phone": 1}
    assert status["name"] == "SMS offer"
    log = page.call("GET", f"/api/launch/{launch_id}/log").json()
    assert {e["entity_id"] for e in log} == {*phones, no_phone}
    searched = page.call("GET", f"/api/launch/{launch_id}/log?q={no_phone}").json()
    assert searched and {e["entity_id"] for e in searched} == {no_phone}
    csv = page.call("GET", f"/api/launch/{launch_id}/log.csv")
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert csv.text.lstrip("\ufeff").startswith("at,entity_type,entity_id")
    assert page.call("POST", f"/api/launch/{launch_id}/stop").json()["state"] == "done"
    mine = page.call("GET", "/api/launch/mine").json()
    assert [m["id"] for m in mine] == [launch_id]


def test_bad_input_is_400_in_the_users_language(installed: Installed) -> None:
    installed.portal("/seed", "POST", n=5)
    add_scenario(installed)
    page = Page(installed, "CRM_CONTACT_LIST_MENU", ID="1")
    cases: list[tuple[dict[str, Any], str]] = [
        (page.body(["1"], params={"text": ""}), "invalid_params"),
        (page.body(["1"], params={"discount": "99"}), "invalid_params"),
        (page.body(["1"], params={"nope": 1}), "invalid_params"),
        (page.body(["1"], params=[1]), "bad_request"),
        (page.body([]), "no_records"),
        (page.body(["x_y"]), "bad_record"),
        (page.body([True]), "bad_record"),
        (page.body(["1"] * 501), "too_many_records"),
        ({**page.body(["1"]), "scenario": "missing"}, "unknown_scenario"),
    ]
    for body, code in cases:
        resp = page.call("POST", "/api/launch/preview", **body)
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["error"] == code
    fields = page.call("POST", "/api/launch/preview", **page.body(["1"], params={"text": ""}))
    assert set(fields.json()["fields"]) == {"text"}
    not_json = requests.post(
        f"{installed.app.url}/api/launch/preview",
        data="[",
        headers={"X-Session-Token": page.token, "Content-Type": "application/json"},
        timeout=10,
    )
    assert not_json.status_code == 400
    bad_key = page.call("POST", "/api/launch/start", **page.body(["1"], idempotency_key="x"))
    assert bad_key.status_code == 400 and bad_key.json()["error"] == "bad_idempotency_key"

    form = installed.open("CRM_CONTACT_LIST_MENU", ID="1")
    form["action"] = form["action"].replace("LANG=en", "LANG=ru")
    resp = installed.post_form(form)
    assert "SMS-предложение" in resp.text and "Отправляет SMS с предложением." in resp.text
    page.token = _attr(resp.text, r'name="session-token" content="([^"]+)"')
    page.context = _attr(resp.text, r'data-context="([^"]*)"')
    empty = page.call("POST", "/api/launch/preview", **page.body(["1"], params={"text": ""}))
    assert (
        empty.status_code == 400
        and empty.json()["fields"]["text"] != fields.json()["fields"]["text"]
    )


def test_contexts_tokens_and_other_users_launches_are_refused(installed: Installed) -> None:
    installed.portal("/seed", "POST", n=10)
    add_scenario(installed)
    admin = Page(installed, "CRM_CONTACT_LIST_MENU", ID="1")
    rep = Page(installed, "CRM_CONTACT_LIST_MENU", user_id=2, ID="2")
    started = admin.call(
        "POST", "/api/launch/start", **admin.body(["1"], idempotency_key=admin.key)
    ).json()
    launch_id = started["id"]
    # The rep sees none of the admin's launch; the admin sees the rep's.
    for path in ("status", "log", "log.csv"):
        assert rep.call("GET", f"/api/launch/{launch_id}/{path}").status_code == 404
    for path in ("stop", "undo"):
        assert rep.call("POST", f"/api/launch/{launch_id}/{path}").status_code == 404
    assert rep.call("GET", "/api/launch/mine").json() == []
    assert rep.call("GET", "/api/launch/999999/status").status_code == 404
    # The same key from another user never finds the admin's launch.
    own = rep.call("POST", "/api/launch/start", **rep.body(["2"], idempotency_key=admin.key))
    assert own.status_code == 200 and own.json()["id"] != launch_id
    assert {m["id"] for m in admin.call("GET", "/api/launch/mine").json()} == {
        launch_id,
        own.json()["id"],
    }
    # Another user's context, a forged one, another user's token: refused.
    swapped = rep.call("POST", "/api/launch/preview", **admin.body(["1"]))
    assert swapped.status_code == 403
    forged = rep.call("POST", "/api/launch/preview", **{**rep.body(["2"]), "context": "x"})
    assert forged.status_code == 403
    rep.user_token = admin.user_token
    assert rep.call("POST", "/api/launch/preview", **rep.body(["2"])).status_code == 403
    rep.user_token = ""
    assert rep.call("POST", "/api/launch/preview", **rep.body(["2"])).status_code == 401
    # No page session at all: every change is refused (CSRF).
    url = f"{installed.app.url}/api/launch/{launch_id}/stop"
    assert requests.post(url, timeout=10).status_code == 401
    # A company placement cannot launch a contact scenario.
    company = Page(installed, "CRM_COMPANY_LIST_TOOLBAR")
    assert "SMS offer" not in company.html
    refused = company.call("POST", "/api/launch/preview", **company.body(["1"]))
    assert refused.status_code == 400 and refused.json()["error"] == "unknown_scenario"


def test_filter_fields_count_preview_and_launch(installed: Installed) -> None:
    installed.portal("/seed", "POST", n=120)
    add_scenario(installed)
    page = Page(installed, "CRM_CONTACT_LIST_TOOLBAR")
    fields = page.call("POST", "/api/launch/fields", context=page.context).json()["fields"]
    by_code = {f["code"]: f for f in fields}
    assert by_code["ASSIGNED_BY_ID"]["label"] == "Responsible Person"
    assert {"value": "101", "label": "VIP"} in by_code["UF_CRM_SEGMENT"]["items"]
    assert "PHOTO" not in by_code and "PHONE" not in by_code  # a file, a multi-value field
    records = installed.devportal.emulator.portals[0].crm.records["contact"].values()
    mine = [r for r in records if int(r["ASSIGNED_BY_ID"]) == 1]
    vip = [r for r in mine if r.get("UF_CRM_SEGMENT") == "101"]
    rows = [{"field": "ASSIGNED_BY_ID", "op": "=", "value": "1"}]
    counted = page.call("POST", "/api/launch/count", context=page.context, filter=rows)
    assert counted.status_code == 200 and counted.json() == {"count": len(mine)}
    both = [*rows, {"field": "UF_CRM_SEGMENT", "op": "=", "value": "101"}]
    assert page.call("POST", "/api/launch/count", context=page.context, filter=both).json() == {
        "count": len(vip)
    }
    named = [{"field": "NAME", "op": "contains", "value": "ann"}]
    anna = [r for r in records if "ann" in str(r.get("NAME")).lower()]
    assert page.call("POST", "/api/launch/count", context=page.context, filter=named).json()[
        "count"
    ] == len(anna)
    no_post = [{"field": "POST", "op": "empty"}]
    empty = [r for r in records if not r.get("POST")]
    assert page.call("POST", "/api/launch/count", context=page.context, filter=no_post).json()[
        "count"
    ] == len(empty)
    for bad, row in (
        ([{"field": "NOPE", "op": "=", "value": "1"}], 0),
        ([*rows, {"field": "NAME", "op": "~", "value": "x"}], 1),
        ([{"field": "NAME", "op": "=", "value": ""}], 0),
        ([*rows, *rows], 1),
        ([{"field": "NAME", "op": "=", "value": {"a": 1}}], 0),
    ):
        resp = page.call("POST", "/api/launch/count", context=page.context, filter=bad)
        assert resp.status_code == 400 and resp.json()["error"] == "bad_filter", resp.text
        assert resp.json()["row"] == row, (bad, resp.text)
    assert (
        page.call("POST", "/api/launch/count", context=page.context, filter=[]).status_code == 400
    )

    body = {**page.body([]), "recipients": "filter", "filter": both, "params": {"text": "Hi"}}
    preview = page.call("POST", "/api/launch/preview", **body).json()
    assert preview["records"] == len(vip) and preview["matching"] == len(vip)
    started = page.call("POST", "/api/launch/start", **body, idempotency_key=page.key)
    assert started.status_code == 200, started.text

    def finished() -> dict[str, Any] | None:
        doc = page.call("GET", f"/api/launch/{started.json()['id']}/status").json()
        return doc if doc["state"] == "done" else None

    assert wait_for(finished, timeout=60)["total"] == len(vip)


def test_parameter_values_are_templates_rendered_per_record(installed: Installed) -> None:
    installed.portal("/seed", "POST", n=10)
    add_scenario(installed)
    page = Page(installed, "CRM_CONTACT_LIST_MENU", ID="1")
    phones, _no_phone = contacts(installed)
    names = {int(c["ID"]): c["NAME"] for c in seeded_contacts(installed) if int(c["ID"]) in phones}
    text = "Hi {{ contact.NAME }}"
    preview = page.call("POST", "/api/launch/preview", **page.body(phones, params={"text": text}))
    assert preview.status_code == 200, preview.text
    (sample,) = preview.json()["samples"]
    assert sample["text"] == f"Hi {names[phones[0]]} -10%"
    for bad, en in (
        ("Hi {{ contact.NAME", "Template error"),
        ("Hi {{ nobody }}", 'Unknown variable "nobody".'),
        ("{{ params.discount }}", 'Unknown variable "params".'),
        ("{{ const.NOPE }}", 'Unknown constant "NOPE".'),
    ):
        resp = page.call("POST", "/api/launch/preview", **page.body(phones, params={"text": bad}))
        assert resp.status_code == 400 and en in resp.json()["fields"]["text"], resp.text


def test_hostile_input_is_a_4xx_in_the_users_language(installed: Installed) -> None:
    """What an employee can forge from the page's console: refused with a message, never a 500."""
    installed.portal("/seed", "POST", n=5)
    add_scenario(installed)
    page = Page(installed, "CRM_CONTACT_LIST_MENU", ID="1")
    launch_id = page.call(
        "POST", "/api/launch/start", **page.body(["1"], idempotency_key=page.key)
    ).json()["id"]
    ids: list[Any] = ["²", "١٢", "9" * 5000, "CO_1", "D_1", "C_", -1, 0, 2**31, 1.0, {"ID": 1}]
    for bad in ids:
        resp = page.call("POST", "/api/launch/preview", **page.body([bad]))
        assert resp.status_code == 400 and resp.json()["error"] == "bad_record", (bad, resp.text)
    assert page.call("POST", "/api/launch/preview", **page.body(["C_1", 1])).status_code == 200
    rows: list[Any] = [
        {"field": "NAME", "op": ["="], "value": "x"},
        {"field": "NAME", "op": {"=": 1}, "value": "x"},
        {"field": ["NAME"], "op": "=", "value": "x"},
        {"op": "=", "value": "x"},
        {"field": "ID", "op": ">", "value": 10**30},
    ]
    for row in rows:
        resp = page.call("POST", "/api/launch/count", context=page.context, filter=[row])
        assert resp.status_code == 400 and resp.json()["error"] == "bad_filter", (row, resp.text)
    huge = 10**22
    for method, path in (
        ("GET", f"/api/launch/{huge}/status"),
        ("GET", f"/api/launch/{huge}/log"),
        ("GET", f"/api/launch/{huge}/log.csv"),
        ("POST", f"/api/launch/{huge}/stop"),
        ("POST", f"/api/launch/{huge}/undo"),
    ):
        assert page.call(method, path).status_code == 404, path
    for q in ("²", "9" * 30, "9" * 100):
        assert page.call("GET", f"/api/launch/{launch_id}/log?q={q}").json() == []
        assert page.call("GET", f"/api/launch/{launch_id}/log.csv?q={q}").status_code == 200
    progress = requests.post(
        f"{installed.app.url}/placements/launches/{huge}", data={"_session": page.token}, timeout=10
    )
    assert progress.status_code == 404

    form = installed.open("CRM_CONTACT_LIST_MENU", ID="1")
    form["action"] = form["action"].replace("LANG=en", "LANG=ru")
    ru = installed.post_form(form)
    page.token = _attr(ru.text, r'name="session-token" content="([^"]+)"')
    forged = page.call("POST", "/api/launch/preview", **{**page.body(["1"]), "context": "x"})
    assert forged.status_code == 403
    assert forged.json()["error_description"] == "Не удалось проверить запрос."
