"""crm.<entity>.fields, crm.item.fields, crm.status.list, crm.category.list and user.get."""

from __future__ import annotations

import pytest

from tests.devportal.conftest import Harness

FLAGS = {"isRequired", "isReadOnly", "isImmutable", "isMultiple", "isDynamic"}


@pytest.mark.parametrize("entity", ["contact", "company", "deal", "lead"])
def test_entity_fields_describe_standard_and_custom_fields(harness: Harness, entity: str) -> None:
    p = harness.install()
    fields = p.ok(f"crm.{entity}.fields")
    assert fields["ID"]["type"] == "integer" and fields["ID"]["isReadOnly"] is True
    for spec in fields.values():
        assert set(spec) >= FLAGS and spec["type"] and spec["title"]
    custom = {k: v for k, v in fields.items() if k.startswith("UF_")}
    assert custom and all(
        v["isDynamic"] and v["listLabel"] and v["formLabel"] for v in custom.values()
    )
    if entity != "deal":
        assert fields["PHONE"]["isMultiple"] and fields["PHONE"]["type"] == "crm_multifield"
        assert fields["UF_CRM_NO_EMAIL"]["type"] == "boolean"
        assert fields["UF_CRM_NO_SMS"]["listLabel"] == "Do not send SMS"
    else:
        assert fields["STAGE_ID"]["statusType"] == "DEAL_STAGE"
        assert fields["CATEGORY_ID"]["isImmutable"] is True
        assert fields["UF_CRM_PAYMENT_DUE"]["type"] == "date"


def test_contact_fields_birthdate_and_enumeration_items(harness: Harness) -> None:
    p = harness.install()
    fields = p.ok("crm.contact.fields")
    assert fields["BIRTHDATE"]["type"] == "date" and not fields["BIRTHDATE"]["isDynamic"]
    segment = fields["UF_CRM_SEGMENT"]
    assert segment["type"] == "enumeration"
    assert [i["VALUE"] for i in segment["items"]] == ["VIP", "Regular", "New"]
    # The seeded records carry the custom fields they describe.
    harness.post(f"/portals/{p.member_id}/seed", {"contacts": 5})
    row = p.ok("crm.contact.list", {"select": ["*", "UF_*"]})[0]
    assert {"BIRTHDATE", "UF_CRM_NO_EMAIL", "UF_CRM_NO_SMS", "UF_CRM_SEGMENT"} <= set(row)
    assert row["UF_CRM_SEGMENT"] in {i["ID"] for i in segment["items"]}
    # A record added without them still has them (booleans default to "N").
    cid = p.ok("crm.contact.add", {"fields": {"NAME": "New"}})
    assert p.ok("crm.contact.get", {"id": cid})["UF_CRM_NO_SMS"] == "N"


def test_custom_field_set_on_a_record_is_described(harness: Harness) -> None:
    p = harness.install()
    p.ok("crm.contact.add", {"fields": {"NAME": "A", "UF_CRM_SHOE_SIZE": "42"}})
    assert p.ok("crm.contact.fields")["UF_CRM_SHOE_SIZE"]["isDynamic"] is True


def test_item_fields_camel_case_under_fields(harness: Harness) -> None:
    p = harness.install()
    fields = p.ok("crm.item.fields", {"entityTypeId": 3})["fields"]
    assert fields["lastName"]["upperName"] == "LAST_NAME"
    assert fields["assignedById"]["type"] == "user"
    assert fields["ufCrmNoEmail"]["upperName"] == "UF_CRM_NO_EMAIL"
    assert "PHONE" not in fields and "phone" not in fields  # multifields travel in ``fm``
    original = p.ok("crm.item.fields", {"entityTypeId": 3, "useOriginalUfNames": "Y"})["fields"]
    assert "UF_CRM_NO_EMAIL" in original and "lastName" in original
    deal = p.ok("crm.item.fields", {"entityTypeId": 2})["fields"]
    assert deal["stageId"]["statusType"] == "DEAL_STAGE" and deal["contactIds"]["isMultiple"]
    bad = p.call("crm.item.fields", {"entityTypeId": 999})
    assert bad.status_code == 400
    assert bad.json() == {"error": "NOT_FOUND", "error_description": "Smart process not found"}


def test_status_list_filters_directories(harness: Harness) -> None:
    p = harness.install()
    stages = p.ok(
        "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}, "order": {"SORT": "ASC"}}
    )
    assert [s["STATUS_ID"] for s in stages][:2] == ["NEW", "PREPARATION"]
    assert {s["ENTITY_ID"] for s in stages} == {"DEAL_STAGE"}
    won = next(s for s in stages if s["STATUS_ID"] == "WON")
    assert won["SEMANTICS"] == "S" and won["EXTRA"]["SEMANTICS"] == "success"
    sources = p.ok("crm.status.list", {"filter": {"ENTITY_ID": "SOURCE"}})
    assert "WEB" in {s["STATUS_ID"] for s in sources} and "SEMANTICS" not in sources[0]
    lead = p.ok("crm.status.list", {"filter": {"ENTITY_ID": "STATUS"}})
    assert "CONVERTED" in {s["STATUS_ID"] for s in lead}
    pipeline = p.ok("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_1"}})
    assert pipeline[0]["STATUS_ID"] == "C1:NEW" and pipeline[0]["CATEGORY_ID"] == "1"
    bad = p.call("crm.status.list", {"filter": "DEAL_STAGE"})
    assert bad.status_code == 400 and bad.json()["error"] == "Invalid parameters."
    unknown = p.call("crm.status.list", {"filter": {"ENTITY": "DEAL_STAGE"}})
    assert unknown.json()["error"] == "INVALID_ARG_VALUE"


def test_category_list_for_deals(harness: Harness) -> None:
    p = harness.install()
    body = p.call("crm.category.list", {"entityTypeId": 2}).json()
    names = {c["id"]: c["isDefault"] for c in body["result"]["categories"]}
    assert names == {0: "Y", 1: "N"} and body["total"] == 2
    lead = p.call("crm.category.list", {"entityTypeId": 1})
    assert lead.status_code == 400 and lead.json()["error"] == "ENTITY_TYPE_NOT_SUPPORTED"
    missing = p.call("crm.category.list", {"entityTypeId": 77})
    assert missing.json() == {"error": "NOT_FOUND", "error_description": "Smart process not found"}


def test_user_get_filters_sorts_and_scopes(harness: Harness) -> None:
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/users", {"name": "Fired", "active": False})
    everyone = p.call("user.get").json()
    assert [u["ID"] for u in everyone["result"]] == ["1", "2", "3"] and everyone["total"] == 3
    assert everyone["result"][0]["EMAIL"] == "anna.admin@example.com"
    active = p.ok("user.get", {"FILTER": {"ACTIVE": True}})
    assert [u["ID"] for u in active] == ["1", "2"]
    assert [u["ID"] for u in p.ok("user.get", {"ID": 2})] == ["2"]  # old style: top-level keys
    assert [u["ID"] for u in p.ok("user.get", {"FILTER": {"@ID": [1, 3]}})] == ["1", "3"]
    assert [u["ID"] for u in p.ok("user.get", {"sort": "ID", "order": "DESC"})] == ["3", "2", "1"]
    # An ordinary user sees the same employees.
    as_user = p.ok("user.get", {"FILTER": {"ACTIVE": True}}, token=p.token_for(2))
    assert [u["ID"] for u in as_user] == ["1", "2"]
    brief = harness.install(scopes=["crm", "user_brief"])
    assert "EMAIL" not in brief.ok("user.get")[0]
    no_scope = harness.install(scopes=["crm"])
    assert no_scope.call("user.get").json()["error"] == "insufficient_scope"
