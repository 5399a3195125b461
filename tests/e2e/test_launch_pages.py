"""Chromium: a rep launches a scenario from the emulator's CRM shell, as in Bitrix24.

The contact list's Extensions menu opens the launcher in the slider; records are chosen in the
shell's selection dialog (``BX24.selectCRM``); preview, launch, progress, stop and my launches
run in the page. Screenshots of each page land in ``docs/screenshots`` (en and ru).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, sync_playwright
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.models import Portal, SmsMessage
from marketapp.scenarios import launches, versions
from marketapp.scenarios.preview import Selection
from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.e2e.harness import Installed
from tests.e2e.test_launch_api import SCENARIO, add_scenario, contacts

pytestmark = [pytest.mark.browser, pytest.mark.e2e, needs_chromium]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
TIMEOUT = 30_000
WAITING: dict[str, Any] = {
    **SCENARIO,
    "key": "call-later",
    "name": {"en": "Call later", "ru": "Позвонить позже"},
    "description": {"en": "Comments a day later.", "ru": "Комментарий через день."},
    "parameters": [],
    "steps": [
        {"type": "wait", "mode": "duration", "days": 1},
        {"type": "timeline_comment", "text": "Call back"},
    ],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())  # the Stop / Undo confirmations
    yield page
    page.close()


def open_launcher(page: Page, installed: Installed, user: int = 1, row: int = 0) -> FrameLocator:
    """The contact list, then Extensions (or a row's menu) → Smart scenarios."""
    base = installed.portal()["shell_url"].rstrip("/")
    page.goto(f"{base}/crm/contact/list/?user={user}")
    if row:
        menu = page.locator(f'tr[data-id="{row}"] .row-menu')
        menu.locator(".menu-button").click()
        menu.locator(".placement-item").click()
    else:
        page.click("#extensions .menu-button")
        page.click("#extensions .placement-item")
    frame = page.frame_locator("#slider-frame")
    frame.locator("#launcher").wait_for(timeout=TIMEOUT)
    return frame


def shot(page: Page, name: str, language: str) -> None:
    """A screenshot of the slider for the README, once the page passes the accessibility check."""
    assert_accessible(page, name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#slider-frame").screenshot(path=str(SHOTS / f"{name}-{language}.png"))


def axe_source() -> str:
    """The vendored axe-core, checked against the checksum recorded in its README."""
    data = AXE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == AXE_SHA256, "tests/vendor/axe-core changed"
    return data.decode()


def assert_accessible(page: Page, name: str) -> None:
    """axe-core in the slider's frame: no serious or critical violation on the page."""
    frame = page.frame(name="slider-frame")
    assert frame is not None
    if not frame.evaluate("() => !!window.axe"):
        frame.evaluate(
            axe_source()
        )  # through the debugger protocol: the page's CSP allows no inline script
    result = frame.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    found = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not found, f"{name}: {found}"


def choose(page: Page, frame: FrameLocator, ids: list[int]) -> None:
    frame.locator("#choose-records").click()
    for entity_id in ids:
        page.locator(f'#dialog input[data-id="C_{entity_id}"]').check()
    page.click("#select-ok")
    frame.locator("#picked li").nth(len(ids) - 1).wait_for(timeout=TIMEOUT)


def test_hand_picked_contacts_preview_launch_and_progress(page: Page, installed: Installed) -> None:
    installed.portal("/seed", "POST", n=30)
    add_scenario(installed)
    phones, no_phone = contacts(installed)
    frame = open_launcher(page, installed)
    assert frame.locator(".scenario strong").inner_text() == "SMS offer"
    shot(page, "launcher", "en")

    choose(page, frame, [*phones, no_phone])
    assert frame.locator("#picked-count").inner_text() == "Chosen: 3"
    text = frame.locator("textarea[name=text]")
    text.fill("Hello friend")
    frame.locator(".sms-size[data-segments='1']").wait_for(timeout=TIMEOUT)
    frame.locator("details.placeholders summary").click()
    shot(page, "form", "en")

    frame.locator('[data-action="preview"]').click()
    reason = frame.locator('details.reason[data-reason="no_phone"]')
    reason.wait_for(timeout=TIMEOUT)
    assert "No phone (1)" in reason.locator("summary").inner_text()
    assert frame.locator('[data-stat="ready"] dd').inner_text() == "2"
    assert "Hello friend -10%" in frame.locator('.sample[data-type="send_sms"]').inner_text()
    reason.locator("a.record-link").click()  # the card opens through BX24.openPath
    shot(page, "preview", "en")

    frame.locator('[data-action="launch"]').dblclick()  # a double click: one launch
    frame.locator('#state[data-state="done"]').wait_for(timeout=60_000)
    frame.locator('#log tr[data-kind="skipped"]').wait_for(timeout=TIMEOUT)
    shot(page, "progress", "en")

    installed.settle()
    with installed.app.app.app_context():
        sent = db_session().scalars(select(SmsMessage)).all()
        assert sorted(m.entity_id for m in sent) == sorted(phones)
        assert {m.text for m in sent} == {"Hello friend -10%"}
        assert len(launches.list_launches(db_session(), _portal())) == 1
    assert installed.portal("/outbox") == []  # no e-mail in this scenario
    for contact_id in phones:
        lines = installed.portal(f"/timeline?entity=contact&id={contact_id}")["comments"]
        assert [c["COMMENT"] for c in lines if "Hello friend" in c["COMMENT"]], lines
    assert installed.portal(f"/timeline?entity=contact&id={no_phone}")["comments"] == []
    commands = [e["command"] for e in installed.emu("GET", "/ui-events")]
    assert {"selectCRM", "openPath", "reloadData", "fitWindow"} <= set(commands)


def test_stop_a_waiting_launch_from_a_row_menu(page: Page, installed: Installed) -> None:
    installed.portal("/seed", "POST", n=5)
    add_scenario(installed, WAITING)
    frame = open_launcher(page, installed, row=2)
    assert frame.locator('input[name="recipients"][value="record"]').is_checked()
    frame.locator('[data-action="launch"]').click()
    frame.locator('#c-waiting:text("1")').wait_for(timeout=60_000)
    frame.locator('[data-action="stop"]').click()
    frame.locator('#state[data-state="stopped"]').wait_for(timeout=TIMEOUT)
    assert frame.locator("#c-stopped").inner_text() == "1"
    assert installed.portal("/timeline?entity=contact&id=2")["comments"] == []


def test_russian_launcher_and_field_errors(page: Page, installed: Installed) -> None:
    installed.portal("/seed", "POST", n=10)
    add_scenario(installed)
    installed.devportal.emulator.portals[0].users[1].lang = "ru"
    frame = open_launcher(page, installed, row=1)
    assert frame.locator("html").get_attribute("lang") == "ru"
    assert frame.locator(".scenario strong").inner_text() == "SMS-предложение"
    shot(page, "launcher", "ru")
    frame.locator("textarea[name=text]").fill("Привет, друг")
    frame.locator(".sms-size[data-segments='1']").wait_for(timeout=TIMEOUT)
    frame.locator("input[name=discount]").fill("99")
    frame.locator('[data-action="preview"]').click()
    error = frame.locator('.field[data-param="discount"] .field-error')
    error.wait_for(timeout=TIMEOUT)
    assert any("а" <= ch <= "я" for ch in error.inner_text().lower())  # in Russian
    shot(page, "form", "ru")
    frame.locator("input[name=discount]").fill("20")
    frame.locator('[data-action="preview"]').click()
    frame.locator('.sample[data-type="send_sms"]').wait_for(timeout=TIMEOUT)
    shot(page, "preview", "ru")
    frame.locator('[data-action="launch"]').click()
    frame.locator('#state[data-state="done"]').wait_for(timeout=60_000)
    shot(page, "progress", "ru")
    frame.locator('[data-nav="/placements/launches"]').click()
    assert frame.locator('.state[data-state="done"]').inner_text(timeout=TIMEOUT) == "Завершён"


def test_an_ordinary_user_sees_only_their_own_launches(page: Page, installed: Installed) -> None:
    installed.portal("/seed", "POST", n=5)
    add_scenario(installed)
    with installed.app.app.app_context():
        session = db_session()
        portal = _portal()
        version = versions.latest_version(session, portal, "sms-offer")
        assert version is not None
        made = {}
        for user_id in (1, 2):
            row = launches.launch(
                session, portal, version, Selection("CONTACT", (user_id,)), {"text": "x"},
                user_id, None, secrets.token_hex(8),
            )  # fmt: skip
            made[user_id] = row.id
    frame = open_launcher(page, installed, user=2)
    frame.locator('[data-nav="/placements/launches"]').click()
    frame.locator("#launch-list").wait_for(timeout=TIMEOUT)
    rows = frame.locator("tr[data-launch]")
    assert [rows.nth(i).get_attribute("data-launch") for i in range(rows.count())] == [str(made[2])]
    frame.locator(f'[data-nav="/placements/launches/{made[2]}"]').click()
    frame.locator("#progress").wait_for(timeout=TIMEOUT)

    admin = open_launcher(page, installed, user=1)
    admin.locator('[data-nav="/placements/launches"]').click()
    admin.locator("#launch-list").wait_for(timeout=TIMEOUT)
    assert admin.locator("tr[data-launch]").count() == 2


def _portal() -> Portal:
    return db_session().scalars(select(Portal)).one()


XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
INJECTED = """() => document.querySelectorAll('img[src=x]').length
    + [...document.scripts].filter(s => s.textContent.includes('__xss=')).length"""


def assert_no_markup(page: Page) -> None:
    """Nothing of the record name ran or became an element, in the shell or the slider."""
    slider = page.frame(name="slider-frame")
    assert slider is not None
    for where in (page, slider):
        assert where.evaluate("() => window.__xss === undefined")
    assert slider.evaluate(INJECTED) == 0


def test_markup_in_record_names_is_text_and_polling_ends(page: Page, installed: Installed) -> None:
    """A contact named like markup shows as text in the dialog, preview, progress and log; the
    progress page stops asking for the status once the launch is done."""
    installed.portal("/seed", "POST", n=10)
    add_scenario(installed, {**SCENARIO, "steps": [
        {"type": "send_sms", "text": "{{ params.text }} {{ contact.NAME }}"},
    ]})  # fmt: skip
    phones, no_phone = contacts(installed)
    records = installed.devportal.emulator.portals[0].crm.records["contact"]
    for contact_id in (phones[0], no_phone):
        records[contact_id]["NAME"] = XSS
    frame = open_launcher(page, installed)
    choose(page, frame, [phones[0], no_phone])
    assert XSS in frame.locator("#picked").inner_text()
    frame.locator('[data-action="preview"]').click()
    reason = frame.locator('details.reason[data-reason="no_phone"]')
    reason.wait_for(timeout=TIMEOUT)
    assert XSS in reason.inner_text()
    assert XSS in frame.locator('.sample[data-type="send_sms"]').inner_text()
    assert_no_markup(page)
    statuses: list[str] = []
    page.on("request", lambda r: statuses.append(r.url) if r.url.endswith("/status") else None)
    frame.locator('[data-action="launch"]').click()
    frame.locator('#state[data-state="done"]').wait_for(timeout=60_000)
    skipped = frame.locator('#log tr[data-kind="skipped"]')
    skipped.wait_for(timeout=TIMEOUT)
    assert "No phone" in skipped.inner_text()  # the reason's label, not its code
    assert frame.locator("#steps li").inner_text().startswith("1. Send SMS · steps[0]")
    assert_no_markup(page)
    asked = len(statuses)
    page.wait_for_timeout(4_000)  # more than two poll intervals
    assert len(statuses) == asked, "the progress page kept polling a finished launch"
    frame.locator('[data-nav="/placements/launches"]').click()
    frame.locator("#launch-list").wait_for(timeout=TIMEOUT)
    assert_no_markup(page)


def test_progress_shows_a_lost_session_and_stops_polling(page: Page, installed: Installed) -> None:
    """An active launch whose page session ends (the app was reinstalled): the page says so
    in place of a silent freeze, and stops asking; Stop answers with the same message."""
    installed.portal("/seed", "POST", n=5)
    add_scenario(installed, WAITING)
    frame = open_launcher(page, installed, row=2)
    frame.locator('[data-action="launch"]').click()
    frame.locator('#c-waiting:text("1")').wait_for(timeout=60_000)
    with installed.app.app.app_context():
        _portal().session_epoch += 1
        db_session().commit()
    error = frame.locator("#progress-error")
    error.locator("text=This request could not be verified.").wait_for(timeout=TIMEOUT)
    statuses: list[str] = []
    page.on("request", lambda r: statuses.append(r.url) if r.url.endswith("/status") else None)
    page.wait_for_timeout(4_000)  # more than two poll intervals
    assert statuses == [], "the progress page kept polling with a dead session"
    frame.locator('[data-action="stop"]').click()
    error.locator("text=This request could not be verified.").wait_for(timeout=TIMEOUT)
    with installed.app.app.app_context():
        (row,) = launches.list_launches(db_session(), _portal())
        assert row.state.value != "stopped"  # nothing changed
