"""Records are read the cheap way: ``crm.<entity>.list`` by ``@ID``, 2,500 per HTTP request."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from marketapp.actions.base import Target, load_records
from marketapp.bitrix.client import client_for
from marketapp.db import db_session
from marketapp.models import Portal
from tests.e2e.harness import Installed

pytestmark = pytest.mark.e2e


def requests_made(installed: Installed) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = installed.emu("GET", f"/requests?member_id={installed.member_id}")
    return log


def load(installed: Installed, targets: list[Target], fields: set[str] | None) -> Any:
    with installed.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        return load_records(client_for(portal), targets, fields)


@pytest.mark.parametrize(("n", "requests"), [(120, 1), (2_600, 2)])
def test_contacts_are_2500_a_request_with_only_the_fields_used(
    installed: Installed, n: int, requests: int
) -> None:
    installed.portal("/seed", "POST", contacts=n)
    ids = [int(c["ID"]) for c in installed.portal("/crm/contact")][:n]
    targets = [Target("CONTACT", i, f"t:{i}") for i in [*ids, 999_999]]
    before = len(requests_made(installed))
    problems = load(installed, targets, {"NAME"})
    made = requests_made(installed)[before:]
    assert [r["method"] for r in made] == ["batch"] * requests
    print(f"\n{n} contacts read in {len(made)} HTTP request(s) (with *.get: {-(-n // 50)})")
    assert {k: o.reason for k, o in problems.items()} == {"t:999999": "not_found"}
    record = targets[0].record
    assert record is not None and set(record) <= {"ID", "NAME", "PHONE", "EMAIL"}
    assert record["ID"] == str(ids[0]) and "NAME" in record
    assert all(t.record is not None for t in targets[:-1])


def test_deals_get_their_client_with_the_same_fields(installed: Installed) -> None:
    installed.portal("/seed", "POST", contacts=20, companies=5, deals=30)
    deals = [d for d in installed.portal("/crm/deal") if int(d.get("CONTACT_ID") or 0)]
    targets = [Target("DEAL", int(d["ID"]), f"d:{d['ID']}") for d in deals[:10]]
    before = len(requests_made(installed))
    assert load(installed, targets, {"TITLE"}) == {}
    assert len(requests_made(installed)) - before == 2  # the deals, then their clients
    for deal, target in zip(deals, targets, strict=False):
        record = target.record or {}
        assert record["TITLE"] == deal["TITLE"]
        assert record["_client"]["ID"] == str(deal["CONTACT_ID"])
        assert record["_client"]["_entity"] == "CONTACT"


def test_unknown_use_of_fields_reads_every_field(installed: Installed) -> None:
    installed.portal("/seed", "POST", contacts=5)
    contact = installed.portal("/crm/contact")[0]
    target = Target("CONTACT", int(contact["ID"]), "t")
    assert load(installed, [target], None) == {}
    record = target.record or {}
    assert {"NAME", "LAST_NAME", "ASSIGNED_BY_ID"} <= set(record)
    assert any(k.startswith("UF_") for k in record)
