"""Preview of a scenario over its selection, on the emulator over HTTP: counts match the seed,
only reads are made (and few of them), filters are checked, the launching user's rights hold,
duplicates are caught, large selections report progressively, the ETA grows with the work."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from marketapp.bench_preview import PreviewPortal, make_app, open_portal
from marketapp.devportal import DevportalServer, FakeClock
from marketapp.scenarios import steps as st
from marketapp.scenarios.definition import validate_definition
from marketapp.scenarios.preview import (
    Budget,
    PreviewChunk,
    Selection,
    SelectionError,
    check_filter,
    estimate,
    preview_scenario,
    wait_until,
)

pytestmark = pytest.mark.e2e
CONSENT = {"no_email_field": "UF_CRM_NO_EMAIL", "no_sms_field": "UF_CRM_NO_SMS"}
READ = re.compile(r"\.(get|list|fields|current)$")
# 2025-03-01 12:00 UTC: the seed's birthdays and due dates, and so the golden files, are fixed.
START = 1_740_830_400.0


@pytest.fixture(scope="module")
def server() -> Iterator[DevportalServer]:
    with DevportalServer(
        {"limits_enabled": False, "portals": ["standard"]}, clock=FakeClock(START)
    ) as srv:
        yield srv


@pytest.fixture
def portal(tmp_path: Path, database_url: str, server: DevportalServer) -> Iterator[PreviewPortal]:
    server.emulator.reset()
    app = make_app(tmp_path, database_url, server)
    yield open_portal(server, app)
    _dispose(app)


def _dispose(app: Flask) -> None:
    from marketapp.db import get_db

    with app.app_context():
        get_db().engine.dispose()


def definition(*steps: dict[str, Any], entity: str = "CONTACT") -> Any:
    return validate_definition(
        {
            "schema": 1,
            "key": "test-preview",
            "name": {"en": "Test", "ru": "Тест"},
            "description": {"en": "A test.", "ru": "Тест."},
            "entity_types": [entity],
            "steps": list(steps),
        }
    )


EMAIL = {"type": "send_email", "subject": "Hi {{ record.NAME }}", "body": "<p>Hello</p>"}
SMS = {"type": "send_sms", "text": "Hi {{ record.NAME }}, 10% off this week"}


def _reads_only(made: list[dict[str, Any]]) -> None:
    for entry in made:
        methods = entry.get("commands", []) if entry["method"] == "batch" else [entry["method"]]
        assert methods and all(READ.search(m) for m in methods), entry


def _first_email(record: dict[str, Any]) -> str:
    values = [v["VALUE"] for v in record.get("EMAIL") or [] if v.get("VALUE")]
    return values[0].lower() if values else ""


def test_10000_contacts_counts_match_the_seed_and_only_reads(portal: PreviewPortal) -> None:
    portal.seed(contacts=10_000, companies=200, deals=0, leads=0)
    stats = portal.emu("GET", f"/portals/{portal.member_id}/crm/contact/stats")
    before = len(portal.requests())
    began = time.perf_counter()
    with portal.app.app_context():
        preview = portal.preview(definition(EMAIL, SMS), channels=CONSENT)
        report = preview_scenario(preview, Selection("CONTACT", filter={">ID": 0}))
    seconds = time.perf_counter() - began
    made = portal.requests()[before:]
    _reads_only(made)
    records = [r for r in made if r["method"] == "crm.contact.list" or r["method"] == "batch"]
    print(f"\n10,000 contacts previewed in {seconds:.2f} s with {len(made)} HTTP requests "
          f"({len(records)} for the records): {[r['method'] for r in made]}")  # fmt: skip
    assert len(records) == 5  # the first page (with the count), then 4 batches of 2,500

    totals = report.totals
    assert totals["records"] == totals["previewed"] == stats["total"] == 10_000
    email, sms = totals["steps"]["steps[0]"], totals["steps"]["steps[1]"]
    # The e-mail step checks consent first, then the address (the stats count the other way).
    assert email["skipped"]["opted_out"] == stats["opted_out_email"]
    assert email["ready"] + email["skipped"].get("duplicate", 0) == stats["email"]["sendable"]
    assert (
        email["skipped"]["no_email"]
        == 10_000 - stats["email"]["sendable"] - (stats["opted_out_email"])
    )
    assert sms["skipped"]["opted_out"] == stats["opted_out_sms"]
    assert sms["ready"] + sms["skipped"].get("duplicate", 0) == stats["sms"]["sendable"]
    unreachable = sms["skipped"]["no_phone"] + sms["skipped"]["invalid_phone"]
    assert unreachable == 10_000 - stats["sms"]["sendable"] - stats["opted_out_sms"]
    # Duplicates: an address a sendable contact with a lower ID already gets.
    seen: set[str] = set()
    duplicates = 0
    for record in portal.emu("GET", f"/portals/{portal.member_id}/crm/contact"):
        address = _first_email(record)
        if address and record["UF_CRM_NO_EMAIL"] != "Y":
            duplicates += address in seen
            seen.add(address)
    assert email["skipped"].get("duplicate", 0) == duplicates
    assert totals["sms_segments"] >= sms["ready"]
    assert report.eta["commands"] == email["ready"] + sms["ready"]
    assert len(report.records) == 100  # a sample in full, the rest in the totals


def test_filter_fields_and_operators_are_checked(portal: PreviewPortal) -> None:
    portal.seed(contacts=20)
    before = len(portal.requests())
    with portal.app.app_context():
        preview = portal.preview(definition(EMAIL))
        with pytest.raises(SelectionError) as caught:
            list(preview.chunks(Selection("CONTACT", filter={"%NO_SUCH_FIELD": "x"})))
        assert caught.value.field == "NO_SUCH_FIELD"
        assert "NO_SUCH_FIELD" in str(caught.value)
        with pytest.raises(SelectionError):
            list(preview.chunks(Selection("CONTACT", filter={"@ID": 5})))  # needs a list
        with pytest.raises(SelectionError):
            list(preview.chunks(Selection("CONTACT", filter={"~NAME": "x"})))
        with pytest.raises(SelectionError):
            list(preview.chunks(Selection("DEAL", ids=(1,))))  # not this scenario's entity
        chunks = list(preview.chunks(Selection("CONTACT", filter={"UF_CRM_NO_SMS": "Y"})))
    made = [r["method"] for r in portal.requests()[before:]]
    assert "crm.contact.list" in made and made.count("crm.contact.fields") == 4
    records = [r for c in chunks for r in c.records]
    stats = portal.emu("GET", f"/portals/{portal.member_id}/crm/contact/stats")
    assert len(records) == stats["opted_out_sms"] > 0


def test_check_filter_normalises_and_names_the_field() -> None:
    known = {"ID": {}, "NAME": {}, "UF_CRM_SEGMENT": {}}
    assert check_filter("CONTACT", {">=id": 3, "@uf_crm_segment": ["101"]}, known) == {
        ">=ID": 3,
        "@UF_CRM_SEGMENT": ["101"],
    }
    with pytest.raises(SelectionError, match="EMAIL_X"):
        check_filter("CONTACT", {"!EMAIL_X": ""}, known)
    with pytest.raises(SelectionError):
        check_filter("CONTACT", ["NAME"], known)
    with pytest.raises(SelectionError):
        check_filter("CONTACT", {"NAME": {"nested": 1}}, known)


def test_user_2_sees_only_their_records(portal: PreviewPortal) -> None:
    portal.seed(contacts=40, deals=0, leads=0)
    portal.emu("POST", f"/portals/{portal.member_id}/permissions", records={"2": "own"})
    contacts = portal.emu("GET", f"/portals/{portal.member_id}/crm/contact")
    mine = [int(c["ID"]) for c in contacts if c["ASSIGNED_BY_ID"] == 2][:3]
    others = [int(c["ID"]) for c in contacts if c["ASSIGNED_BY_ID"] == 1][:3]
    before = len(portal.requests())
    with portal.app.app_context():
        preview = portal.preview(definition(EMAIL), user_id=2)
        report = preview_scenario(preview, Selection("CONTACT", ids=(*mine, *others, 99_999)))
        by_filter = preview_scenario(
            portal.preview(definition(EMAIL), user_id=2), Selection("CONTACT", filter={})
        )
    status = {r["id"]: r.get("reason") or r["status"] for r in report.records}
    assert status == {
        **dict.fromkeys(mine, "previewed"),
        **dict.fromkeys(others, "access_denied"),
        99_999: "not_found",
    }
    assert report.totals["records_skipped"] == {"access_denied": 3, "not_found": 1}
    own = portal.emu("GET", f"/portals/{portal.member_id}/crm/contact/stats?assigned_by_id=2")
    assert by_filter.totals["previewed"] == own["total"] < len(contacts)
    made = portal.requests()[before:]
    assert {r["user_id"] for r in made} == {2}  # every read with the user's own token
    _reads_only(made)


def test_the_same_address_twice_is_skipped_once(portal: PreviewPortal) -> None:
    portal.seed(contacts=3)
    rest = portal.server.portal_url(1) + "/rest/"
    import requests

    ids = []
    for name in ("Ann", "Bob", "Cid"):
        email = "same@example.com" if name != "Cid" else "cid@example.com"
        body = {"fields": {"NAME": name, "EMAIL": [{"VALUE": email, "VALUE_TYPE": "WORK"}]}}
        body["auth"] = portal.token(1)
        ids.append(requests.post(rest + "crm.contact.add", json=body, timeout=10).json()["result"])
    with portal.app.app_context():
        preview = portal.preview(definition(EMAIL, {**EMAIL, "subject": "Again"}))
        report = preview_scenario(preview, Selection("CONTACT", ids=tuple(ids)))
    first, second, third = report.records
    assert [s["status"] for s in first["steps"]] == ["ready", "ready"]  # two steps, one record
    assert [s["reason"] for s in second["steps"]] == ["duplicate", "duplicate"]
    assert str(ids[0]) in second["steps"][0]["message"]
    assert [s["status"] for s in third["steps"]] == ["ready", "ready"]
    assert report.totals["by_reason"] == {"duplicate": 2}


def test_large_selections_report_progressively(portal: PreviewPortal) -> None:
    portal.seed(contacts=6_000, companies=50, deals=0, leads=0)
    seen: list[PreviewChunk] = []
    with portal.app.app_context():
        report = preview_scenario(
            portal.preview(definition(SMS)),
            Selection("CONTACT", filter={}),
            on_progress=seen.append,
            keep=10,
        )
        by_id: list[PreviewChunk] = []
        preview_scenario(
            portal.preview(definition(SMS)),
            Selection("CONTACT", ids=tuple(range(1, 5_001))),
            on_progress=by_id.append,
        )
    assert [c.done for c in seen] == [50, 2_550, 5_050, 6_000]
    assert all(c.total == 6_000 for c in seen)
    assert [(c.done, c.total) for c in by_id] == [(2_500, 5_000), (5_000, 5_000)]
    assert report.totals["previewed"] == 6_000 and len(report.records) == 10


def test_eta_grows_with_the_work() -> None:
    budget = Budget(burst=50, per_second=2)
    small = estimate(100, {"steps[0]": 100}, budget)
    large = estimate(10_000, {"steps[0]": 10_000}, budget)
    larger = estimate(10_000, {"steps[0]": 10_000, "steps[1]": 10_000}, budget)
    busy = estimate(10_000, {"steps[0]": 10_000}, Budget(50, 2, queued_robot_calls=5_000))
    enterprise = estimate(10_000, {"steps[0]": 10_000}, Budget(250, 5))
    assert small["requests"] < large["requests"] < larger["requests"]
    assert small["seconds"] <= large["seconds"] < larger["seconds"] < busy["seconds"] + 1e9
    assert large["seconds"] < busy["seconds"]
    assert enterprise["seconds"] < large["seconds"]
    assert large["read_requests"] == 4 and large["write_requests"] == 200
    series = [estimate(n, {"s": n}, budget)["seconds"] for n in range(0, 20_000, 1_000)]
    assert series == sorted(series)


def test_eta_counts_queued_robot_calls(portal: PreviewPortal) -> None:
    from marketapp.scenarios.preview import queued_robot_calls

    portal.seed(contacts=10)
    with portal.app.app_context():
        from marketapp.db import db_session
        from marketapp.models import Portal
        from marketapp.models.robot_call import RobotCall

        session = db_session()
        row = session.get(Portal, portal.portal_id)
        assert row is not None and queued_robot_calls(session, row) == 0
        for n in range(3):
            session.add(
                RobotCall(
                    portal_id=row.id, event_token_hash=f"h{n}", event_token="t", code="send_sms",
                    workflow_id="w", document_id="d", entity_type="CONTACT", entity_id=1,
                    properties={},
                )
            )  # fmt: skip
        session.commit()
        assert queued_robot_calls(session, row) == 3


def test_waits_follow_the_calendar() -> None:
    at = datetime(2025, 3, 5, 9, 0, tzinfo=UTC)  # a Wednesday
    weekday = st.WaitStep(type="wait", mode="weekday", weekday="mon", time="10:00")
    assert wait_until(weekday, {}, {}, at, UTC) == datetime(2025, 3, 10, 10, 0, tzinfo=UTC)
    same_day = st.WaitStep(type="wait", mode="weekday", weekday="wed", time="08:00")
    assert wait_until(same_day, {}, {}, at, UTC) == datetime(2025, 3, 12, 8, 0, tzinfo=UTC)
    birthday = st.WaitStep(
        type="wait", mode="field", field="BIRTHDATE", yearly=True, offset_days=-1, time="10:00"
    )
    record = {"BIRTHDATE": "1990-03-01T00:00:00+00:00"}  # this year's is past: next year's
    assert wait_until(birthday, record, {}, at, UTC) == datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    assert wait_until(birthday, {"BIRTHDATE": ""}, {}, at, UTC) is None
    duration = st.WaitStep(type="wait", days=2, hours=3)
    assert wait_until(duration, {}, {}, at, UTC) == datetime(2025, 3, 7, 12, 0, tzinfo=UTC)


def test_100000_contacts_by_filter(portal: PreviewPortal) -> None:
    portal.seed(contacts=100_000, companies=1_000, deals=0, leads=0)
    before = len(portal.requests())
    began = time.perf_counter()
    with portal.app.app_context():
        report = preview_scenario(
            portal.preview(definition(SMS), channels=CONSENT), Selection("CONTACT", filter={})
        )
    seconds = time.perf_counter() - began
    made = portal.requests()[before:]
    _reads_only(made)
    records = [r for r in made if r["method"] in ("batch", "crm.contact.list")]
    print(f"\n100,000 contacts previewed in {seconds:.1f} s, {len(records)} record requests")
    assert len(records) == 1 + 40
    stats = portal.emu("GET", f"/portals/{portal.member_id}/crm/contact/stats")
    sms = report.totals["steps"]["steps[0]"]
    assert report.totals["previewed"] == 100_000
    assert sms["skipped"]["opted_out"] == stats["opted_out_sms"]
    assert sms["ready"] + sms["skipped"].get("duplicate", 0) == stats["sms"]["sendable"]


def test_preview_shows_reentry_refusals_and_records_that_already_meet_the_goal(
    portal: PreviewPortal,
) -> None:
    import requests
    from sqlalchemy import select

    from marketapp.db import db_session
    from marketapp.models import Portal
    from marketapp.scenarios import versions
    from marketapp.scenarios.launches import launch

    portal.seed(contacts=6)
    contacts = requests.get(f"{portal.server.url}/_emulator/portals/{portal.member_id}/crm/contact")
    ids = sorted(int(c["ID"]) for c in contacts.json())[:6]
    body = {"id": ids[5], "fields": {"COMMENTS": "paid"}, "auth": portal.token(1)}
    rest = portal.server.portal_url(1) + "/rest/"
    assert requests.post(rest + "crm.contact.update", json=body, timeout=10).ok
    defn = definition(EMAIL).document()
    defn["key"] = "once"
    goal = [{"left": {"field": "COMMENTS"}, "op": "eq", "right": {"value": "paid"}}]
    defn["policies"] = {"reentry": "never", "goal": {"rules": goal}}
    with portal.app.app_context():
        session = db_session()
        row = session.scalars(select(Portal)).one()
        version = versions.save(session, row, defn, author_id=1)
        launch(session, row, version, Selection("CONTACT", ids=tuple(ids[:2])), {}, 1, None, "k1")
        checked = validate_definition(defn)
        report = preview_scenario(portal.preview(checked), Selection("CONTACT", ids=tuple(ids)))
    reasons = {r["id"]: r.get("reason") for r in report.records}
    assert reasons[ids[0]] == reasons[ids[1]] == "reentry_never"
    assert reasons[ids[5]] == "goal"
    assert report.totals["records_skipped"] == {"goal": 1, "reentry_never": 2}
