"""Chromium: launches on a CRM filter built in the launcher, and from a deal card.

A rep builds a filter (field, condition, value), watches the live count, previews and launches
a field-editing scenario on a few hundred contacts, sees progress reach done and undoes it (the
emulator's records get their fields back); a second launch on a filter is stopped; a launch from
a deal card sends the SMS to the deal's contact. Every page passes axe-core.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import FrameLocator, Page
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.models import SmsMessage
from tests.e2e.harness import Installed
from tests.e2e.test_launch_api import SCENARIO, add_scenario
from tests.e2e.test_launch_pages import (
    TIMEOUT,
    WAITING,
    assert_accessible,
    browser,
    open_launcher,
    page,
    pytestmark,
    shot,
)
from tests.support import has_mobile

__all__ = ["browser", "page", "pytestmark"]  # the fixtures and marks of the launch page tests

MARK_CALLED: dict[str, Any] = {
    **SCENARIO,
    "key": "mark-called",
    "name": {"en": "Mark as called", "ru": "Отметить звонок"},
    "description": {"en": "Writes a note into the comment.", "ru": "Пишет заметку в комментарий."},
    "parameters": [
        {
            "key": "note",
            "type": "text",
            "label": {"en": "Note", "ru": "Заметка"},
            "default": "Called",
            "required": True,
            "max_length": 500,
        }
    ],
    "steps": [{"type": "edit_fields", "fields": "COMMENTS = {{ params.note }}"}],
}
DEAL_SMS: dict[str, Any] = {
    **SCENARIO,
    "key": "deal-sms",
    "name": {"en": "Deal reminder", "ru": "Напоминание о сделке"},
    "description": {"en": "An SMS to the deal's contact.", "ru": "SMS контакту сделки."},
    "entity_types": ["DEAL"],
    "parameters": [
        {
            "key": "text",
            "type": "text",
            "label": {"en": "SMS text", "ru": "Текст SMS"},
            "default": "Hello {{ client.NAME }}",
            "required": True,
        }
    ],
    "steps": [{"type": "send_sms", "text": "{{ params.text }}: {{ deal.TITLE }}"}],
}


def contacts_of(installed: Installed) -> dict[int, dict[str, Any]]:
    return installed.devportal.emulator.portals[0].crm.records["contact"]  # type: ignore[no-any-return]


def build_filter(frame: FrameLocator, field: str, value: str, expected: int) -> None:
    """Recipients: a filter; its first condition ``field = value``; the live count shows."""
    frame.locator('input[name="recipients"][value="filter"]').check()
    row = frame.locator("#filter-rows li").first
    row.locator(f'.c-field option[value="{field}"]').wait_for(state="attached", timeout=TIMEOUT)
    row.locator(".c-field").select_option(field)
    row.locator(".c-op").select_option("=")
    row.locator(".c-value").fill(value)
    frame.locator(f'#filter-count[data-count="{expected}"]').wait_for(timeout=TIMEOUT)


def test_filter_live_count_launch_on_hundreds_and_undo(page: Page, installed: Installed) -> None:
    installed.portal("/seed", "POST", n=500)
    add_scenario(installed, MARK_CALLED)
    records = contacts_of(installed)
    before = {i: r.get("COMMENTS") for i, r in records.items()}
    mine = sorted(i for i, r in records.items() if int(r["ASSIGNED_BY_ID"]) == 1)
    vip = [i for i in mine if records[i].get("UF_CRM_SEGMENT") == "101"]
    assert len(mine) >= 200 and 0 < len(vip) < len(mine)

    frame = open_launcher(page, installed)
    build_filter(frame, "ASSIGNED_BY_ID", "1", len(mine))
    assert frame.locator("#filter-count").inner_text() == f"Matching records: {len(mine)}"
    # A second condition narrows the count, removing it restores it (all from the keyboard).
    frame.locator("#add-condition").press("Enter")
    second = frame.locator("#filter-rows li").nth(1)
    assert second.locator(".c-field").evaluate("n => n === document.activeElement")
    second.locator(".c-field").select_option("UF_CRM_SEGMENT")
    second.locator(".c-choice").select_option(label="VIP")
    frame.locator(f'#filter-count[data-count="{len(vip)}"]').wait_for(timeout=TIMEOUT)
    shot(page, "filter", "en")
    second.locator(".c-remove").press("Enter")
    frame.locator(f'#filter-count[data-count="{len(mine)}"]').wait_for(timeout=TIMEOUT)

    note = frame.locator("textarea[name=note]")
    note.fill("Called ")
    note.press("End")
    frame.locator("details.placeholders summary").click()
    frame.locator('[data-insert="{{ record.NAME }}"]').click()  # a placeholder in the value
    assert note.input_value() == "Called {{ record.NAME }}"
    frame.locator('[data-action="preview"]').click()
    frame.locator(f'[data-matching="{len(mine)}"]').wait_for(timeout=TIMEOUT)
    sample = frame.locator('.sample[data-type="edit_fields"]').inner_text()
    assert "Called " in sample and "{{" not in sample  # rendered for the sample record
    assert frame.locator('[data-stat="ready"] dd').inner_text() == str(len(mine))

    frame.locator('[data-action="launch"]').click()
    frame.locator('#state[data-state="done"]').wait_for(timeout=120_000)
    assert frame.locator("#c-done").inner_text() == str(len(mine))
    assert_accessible(page, "progress")
    records = contacts_of(installed)
    assert {i: records[i].get("COMMENTS") for i in mine} == {
        i: f"Called {records[i]['NAME']}" for i in mine
    }
    assert all(records[i].get("COMMENTS") == before[i] for i in records if i not in mine)

    frame.locator('[data-action="undo"]').click()  # the confirmation is accepted
    frame.locator("#undo-report li").first.wait_for(timeout=120_000)
    records = contacts_of(installed)
    # An empty comment comes back empty (the CRM reads an unset and an empty text alike).
    assert {i: records[i].get("COMMENTS") or "" for i in records} == {
        i: text or "" for i, text in before.items()
    }


def test_stop_a_second_launch_on_a_filter(page: Page, installed: Installed) -> None:
    installed.portal("/seed", "POST", n=200)
    add_scenario(installed, MARK_CALLED)
    add_scenario(installed, WAITING)
    records = contacts_of(installed)
    theirs = sorted(i for i, r in records.items() if int(r["ASSIGNED_BY_ID"]) == 2)
    frame = open_launcher(page, installed)
    frame.locator('input[name="scenario"][value="call-later"]').check()
    build_filter(frame, "ASSIGNED_BY_ID", "2", len(theirs))
    form = frame.locator('form[data-scenario="call-later"]')
    form.locator('[data-action="launch"]').click()
    frame.locator(f'#c-waiting:text-is("{len(theirs)}")').wait_for(timeout=120_000)
    frame.locator('[data-action="stop"]').click()
    frame.locator('#state[data-state="stopped"]').wait_for(timeout=TIMEOUT)
    assert frame.locator("#c-stopped").inner_text() == str(len(theirs))
    for contact_id in theirs[:5]:
        assert installed.portal(f"/timeline?entity=contact&id={contact_id}")["comments"] == []
    frame.locator('[data-action="close"]').click()  # BX24.closeApplication closes the slider
    page.locator("#slider").wait_for(state="hidden", timeout=TIMEOUT)
    commands = [e["command"] for e in installed.emu("GET", "/ui-events")]
    assert "closeApplication" in commands


def test_a_deal_card_launch_reaches_the_deals_contact(page: Page, installed: Installed) -> None:
    installed.portal("/seed", "POST", n=40)
    add_scenario(installed, DEAL_SMS)
    crm = installed.devportal.emulator.portals[0].crm.records
    deal = next(
        d
        for d in crm["deal"].values()
        if d.get("CONTACT_ID")
        and has_mobile(crm["contact"][int(d["CONTACT_ID"])])
        and crm["contact"][int(d["CONTACT_ID"])].get("UF_CRM_NO_SMS") != "Y"
    )
    contact = crm["contact"][int(deal["CONTACT_ID"])]
    base = installed.portal()["shell_url"].rstrip("/")
    page.goto(f"{base}/crm/deal/details/{deal['ID']}/?user=1")
    page.click("#detail-toolbar .menu-button")
    page.click("#detail-toolbar .placement-item")
    frame = page.frame_locator("#slider-frame")
    frame.locator("#launcher").wait_for(timeout=TIMEOUT)
    assert frame.locator('input[name="recipients"][value="record"]').is_checked()
    frame.locator('[data-action="preview"]').click()
    sample = frame.locator('.sample[data-type="send_sms"]')
    sample.wait_for(timeout=TIMEOUT)
    expected = f"Hello {contact['NAME']}: {deal['TITLE']}"
    assert expected in sample.inner_text()
    frame.locator('[data-action="launch"]').click()
    frame.locator('#state[data-state="done"]').wait_for(timeout=60_000)
    installed.settle()
    phones = {p["VALUE"] for p in contact["PHONE"]}
    with installed.app.app.app_context():
        sent = db_session().scalars(select(SmsMessage)).all()
        assert [m.text for m in sent] == [expected]
        assert sent[0].phone in phones  # the deal's contact's number
    comments = installed.portal(f"/timeline?entity=deal&id={deal['ID']}")["comments"]
    assert [c for c in comments if expected in c["COMMENT"]], comments


ASSIGN: dict[str, Any] = {
    **WAITING,
    "key": "assign-call",
    "name": {"en": "Assign a call", "ru": "Поручить звонок"},
    "parameters": [
        {
            "key": "caller",
            "type": "employee",
            "label": {"en": "Who calls", "ru": "Кто звонит"},
            "required": True,
        }
    ],
}


def test_russian_filter_employee_picker_and_my_launches(page: Page, installed: Installed) -> None:
    installed.portal("/seed", "POST", n=60)
    add_scenario(installed, ASSIGN)
    installed.devportal.emulator.portals[0].users[1].lang = "ru"
    records = contacts_of(installed)
    mine = [i for i, r in records.items() if int(r["ASSIGNED_BY_ID"]) == 1]
    frame = open_launcher(page, installed)
    assert frame.locator("html").get_attribute("lang") == "ru"
    build_filter(frame, "ASSIGNED_BY_ID", "1", len(mine))
    # The employee picker: the portal's dialog (BX24.selectUser) fills in the ID.
    frame.locator('[data-choose-employee="p-assign-call-caller"]').click()
    page.locator('#dialog input[data-user="2"]').check()
    page.click("#select-ok")
    caller = frame.locator("input[name=caller]")
    frame.locator('#p-assign-call-caller-name:has-text("Oleg User")').wait_for(timeout=TIMEOUT)
    assert caller.input_value() == "2"
    shot(page, "filter", "ru")
    frame.locator('[data-action="launch"]').click()
    frame.locator("#progress").wait_for(timeout=TIMEOUT)
    frame.locator('[data-nav="/placements/launches"]').first.click()
    frame.locator("#launch-list tr[data-launch]").first.wait_for(timeout=TIMEOUT)
    assert_accessible(page, "my launches")
    commands = [e["command"] for e in installed.emu("GET", "/ui-events")]
    assert "selectUser" in commands
