"""List parameters that are wrong answer errors; CRM read rights limit user 2 to their records."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.devportal.conftest import Harness, Portal

LEGACY = ["crm.contact.list", "crm.company.list", "crm.deal.list", "crm.lead.list"]


def _error(p: Portal, method: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = p.call(method, params)
    assert resp.status_code == 400, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.parametrize("method", LEGACY)
def test_legacy_list_refuses_bad_filter_and_order(harness: Harness, method: str) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"n": 4})
    assert _error(p, method, {"filter": {"NO_SUCH_FIELD": 1}}) == {
        "error": "INVALID_ARG_VALUE",
        "error_description": "Invalid filter: field 'NO_SUCH_FIELD' is not allowed in filter",
    }
    prefixed = _error(p, method, {"filter": {">=NO_SUCH": 1}})
    assert "'NO_SUCH'" in prefixed["error_description"]
    assert _error(p, method, {"filter": "ID=1"}) == {
        "error": "",
        "error_description": "Parameter 'filter' must be array.",
    }
    assert _error(p, method, {"order": "ID"})["error_description"] == (
        "Parameter 'order' must be array."
    )
    assert _error(p, method, {"order": {"NOPE": "ASC"}})["error_description"] == (
        "Invalid order: field 'NOPE' is not allowed in order"
    )
    assert _error(p, method, {"order": {"ID": "UP"}})["error_description"] == (
        "Invalid order: allowed sort directions are ASC, DESC. But got 'UP' for field 'ID'"
    )
    # Valid ones still work: lower-case names and directions, empty PHP arrays.
    assert p.ok(method, {"filter": {">id": 0}, "order": {"id": "desc"}, "select": ["ID"]})
    assert p.ok(method, {"filter": [], "order": []})


def test_legacy_filter_knows_custom_and_multi_fields(harness: Harness) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"n": 10})
    rows = p.ok("crm.contact.list", {"filter": {"UF_CRM_NO_SMS": "Y", "HAS_PHONE": "Y"}})
    assert all(r["UF_CRM_NO_SMS"] == "Y" for r in rows)
    assert p.ok("crm.contact.list", {"filter": {"!PHONE": "", "%NAME": "a", "<=BIRTHDATE": "3000"}})


def test_item_list_refuses_bad_filter_and_order(harness: Harness) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"n": 4})
    base = {"entityTypeId": 3}
    assert _error(p, "crm.item.list", {**base, "filter": {"noSuch": 1}}) == {
        "error": "INVALID_ARG_VALUE",
        "error_description": "Invalid filter: field 'noSuch' is not allowed in filter",
    }
    nested = {"logic": "OR", "0": {"id": 1}, "1": {"bogus": 2}}
    assert "'bogus'" in _error(p, "crm.item.list", {**base, "filter": nested})["error_description"]
    not_object = _error(p, "crm.item.list", {**base, "filter": "x"})
    assert not_object["error"] == 100 and "parameter {filter}" in not_object["error_description"]
    assert _error(p, "crm.item.list", {**base, "order": "id"})["error"] == 100
    assert (
        "'sideways'"
        in _error(p, "crm.item.list", {**base, "order": {"id": "sideways"}})["error_description"]
    )
    rows = p.ok("crm.item.list", {**base, "filter": {"@id": [1, 2], "ufCrmNoEmail": "N"}})
    assert {r["id"] for r in rows["items"]} <= {1, 2}


def test_batch_of_filtered_lists_reports_each_error(harness: Harness) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"n": 4})
    result = p.ok(
        "batch",
        {
            "cmd": {
                "ok": "crm.contact.list?filter[@ID][0]=1",
                "bad": "crm.contact.list?filter[ZZ]=1",
            }
        },
    )
    assert result["result"]["ok"][0]["ID"] == "1"
    assert result["result_error"]["bad"]["error"] == "INVALID_ARG_VALUE"


def _restrict(harness: Harness, p: Portal, level: str) -> None:
    harness.post(f"/portals/{p.member_id}/permissions", {"records": {"2": level}})


def test_own_records_only_for_user_2(harness: Harness) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"n": 30})
    _restrict(harness, p, "own")
    token = p.token_for(2)
    admin_total = p.call("crm.contact.list").json()["total"]
    mine = p.call("crm.contact.list", {"select": ["ID", "ASSIGNED_BY_ID"]}, token=token).json()
    assert 0 < mine["total"] < admin_total
    assert all(r["ASSIGNED_BY_ID"] == "2" for r in mine["result"])
    stats = harness.get(f"/portals/{p.member_id}/crm/contact/stats?assigned_by_id=2")
    assert mine["total"] == stats["total"]
    other = next(
        r["ID"]
        for r in p.ok("crm.contact.list", {"filter": {"ASSIGNED_BY_ID": 1}, "select": ["ID"]})
    )
    denied = p.call("crm.contact.get", {"id": other}, token=token)
    assert denied.status_code == 400
    assert denied.json() == {"error": "", "error_description": "Access denied."}
    assert (
        p.call("crm.contact.update", {"id": other, "fields": {"NAME": "x"}}, token=token).json()[
            "error_description"
        ]
        == "Access denied."
    )
    item = p.call("crm.item.get", {"entityTypeId": 3, "id": other}, token=token).json()
    assert item == {
        "error": "ACCESS_DENIED",
        "error_description": "You do not have permission to view this item",
    }
    items = p.ok("crm.item.list", {"entityTypeId": 3}, token=token)["items"]
    assert items and all(i["assignedById"] == 2 for i in items)
    # filter[@ID] over every id still returns only the own ones (how the app reads records).
    ids = [str(i) for i in range(1, 31)]
    page = p.ok("crm.contact.list", {"filter": {"@ID": ids}, "select": ["ID"]}, token=token)
    assert len(page) == min(stats["total"], 50)
    # The admin still sees everything; lifting the limit restores user 2.
    assert p.ok("crm.contact.get", {"id": other})["ID"] == other
    _restrict(harness, p, "all")
    assert p.ok("crm.contact.get", {"id": other}, token=token)["ID"] == other


def test_no_read_right_and_config_default(harness: Harness) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"n": 3})
    _restrict(harness, p, "none")
    token = p.token_for(2)
    assert p.call("crm.deal.list", {}, token=token).json()["error_description"] == "Access denied."
    assert p.call("crm.item.list", {"entityTypeId": 2}, token=token).json()["error"] == (
        "ACCESS_DENIED"
    )
    bad = requests.post(
        harness.server.url + "/_emulator/portals/1/permissions",
        json={"records": {"2": "some"}},
        timeout=10,
    )
    assert bad.status_code == 400
    # The config default applies to every portal as the emulator rebuilds them.
    harness.post("/config", {"restrict_user_records": {"2": "own"}})
    try:
        harness.post("/reset")
        assert harness.server.emulator.portals[0].record_access == {2: "own"}
    finally:
        harness.post("/config", {"restrict_user_records": {}})
        harness.post("/reset")


def test_seed_stats_match_the_records(harness: Harness) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"contacts": 400})
    stats = harness.get(f"/portals/{p.member_id}/crm/contact/stats")
    assert stats["total"] == 400 and set(stats["by_assignee"]) == {"1", "2"}
    rows = list(
        _all(p, "crm.contact.list", {"select": ["ID", "PHONE", "EMAIL", "UF_CRM_NO_EMAIL"]})
    )
    assert len(rows) == 400
    assert stats["without_email"] == sum(1 for r in rows if not r.get("EMAIL"))
    assert stats["without_phone"] == sum(1 for r in rows if not r.get("PHONE"))
    assert stats["opted_out_email"] == sum(1 for r in rows if r["UF_CRM_NO_EMAIL"] == "Y")
    assert sum(stats["email"].values()) == sum(stats["sms"].values()) == 400
    for key in (
        "without_phone",
        "without_email",
        "invalid_phone",
        "opted_out_email",
        "opted_out_sms",
    ):
        assert stats[key] > 0, key  # a realistic mix has some of each
    assert harness.get(f"/portals/{p.member_id}/crm/deal/stats")["total"] == 1


def test_seeded_phone_validity_agrees_with_the_app(harness: Harness) -> None:
    from marketapp.channels.phones import InvalidPhone, normalize_phone
    from marketapp.devportal.seed import valid_phone

    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"contacts": 300})
    for record in harness.get(f"/portals/{p.member_id}/crm/contact"):
        for phone in record["PHONE"]:
            try:
                normalize_phone(phone["VALUE"], "RU")
                app_valid = True
            except InvalidPhone:
                app_valid = False
            assert app_valid == valid_phone(phone["VALUE"]), phone


def _all(p: Portal, method: str, params: dict[str, Any]) -> Any:
    start = 0
    while True:
        body = p.call(method, {**params, "start": start}).json()
        yield from body["result"]
        if "next" not in body:
            return
        start = body["next"]


def test_bench_10000_contacts_read_by_id_in_batches(harness: Harness) -> None:
    p = harness.install()
    began = time.perf_counter()
    harness.post(f"/portals/{p.member_id}/seed", {"contacts": 10_000})
    seeded = time.perf_counter() - began
    ids = list(range(1, 10_001))
    began = time.perf_counter()
    seen = 0
    for offset in range(0, len(ids), 2500):
        chunk = ids[offset : offset + 2500]
        cmd = {
            f"c{i}": "crm.contact.list?"
            + "&".join(f"filter[@ID][{k}]={v}" for k, v in enumerate(chunk[i * 50 : i * 50 + 50]))
            + "&select[0]=ID&select[1]=PHONE&select[2]=EMAIL&start=-1"
            for i in range(50)
        }
        result = p.ok("batch", {"cmd": cmd})
        assert not result["result_error"]
        seen += sum(len(rows) for rows in result["result"].values())
    read = time.perf_counter() - began
    assert seen == 10_000
    print(f"\nseed 10,000 contacts: {seeded:.2f} s; read them in 4 batches of 50x50: {read:.2f} s")
