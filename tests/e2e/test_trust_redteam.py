"""Issue 9, red-team review: what was still open after the trust work, as an attacker tries it.

- A JSON body nested deeper than the parser recurses was a 500 with a traceback (``/api/settings``,
  ``/api/sms/size``): now a clear 400 that changes nothing.
- A NUL or other control character in a settings string was stored (PostgreSQL refuses it: a 500
  there; SQLite kept ``1.1.1.1\\x00.evil`` as the SMTP host): now a 400 naming the field.
- In Chromium the admin's *Save* on the main page sent nothing (the form's script ran before the
  form existed).
- The emulator's *Run robot* on a card ignored the values saved in *Robot settings*: every robot
  answered ``invalid_settings``.
"""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import sync_playwright

from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.e2e.harness import Installed
from tests.e2e.test_settings import save, session_for

pytestmark = pytest.mark.e2e

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("path", ["/api/settings", "/api/sms/size"])
def test_deeply_nested_json_is_a_clear_400(installed: Installed, path: str) -> None:
    headers = {**session_for(installed), "Content-Type": "application/json"}
    before = requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10).json()
    resp = requests.post(f"{installed.app.url}{path}", data=DEEP, headers=headers, timeout=30)
    if path == "/api/settings":
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "invalid_settings"
    else:  # the preview of an unreadable body is the preview of no text
        assert resp.status_code == 200, resp.text
        assert resp.json()["characters"] == 0
    after = requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10).json()
    assert after == before


@pytest.mark.parametrize(
    "field, value",
    [
        ("smtp_host", "1.1.1.1\x00.evil"),
        ("smtp_from", "a\x00@example.com"),
        ("smtp_username", "user\x00"),
        ("smtp_password", "pw\x00"),
        ("smtp_from", "a@example.com\r\nBcc: victim@example.com"),
    ],
)
def test_control_characters_in_settings_are_refused(
    installed: Installed, field: str, value: str
) -> None:
    headers = session_for(installed)
    base = {"email_channel": "smtp", "smtp_host": "1.1.1.1", "smtp_from": "a@example.com"}
    resp = save(installed, headers, **{**base, field: value})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "invalid_settings"
    assert field in resp.json()["error_description"]
    stored = requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10).json()
    assert stored["email_channel"] == "portal"


def test_control_characters_in_sms_credentials_are_refused(installed: Installed) -> None:
    headers = session_for(installed)
    resp = save(
        installed,
        headers,
        sms_provider="twilio",
        sms_credentials={"account_sid": "AC1\x00", "auth_token": "t", "from": "+15005550006"},
    )
    assert resp.status_code == 400, resp.text
    assert "sms_credentials" in resp.json()["error_description"]


@pytest.mark.browser
@needs_chromium
def test_admin_saves_settings_from_the_main_page_in_a_browser(installed: Installed) -> None:
    """The settings form's script ran in <head>, before the form existed: Save did nothing."""
    base = installed.portal()["shell_url"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}marketplace/app/{installed.client_id}/?user=1")
            frame = page.frame_locator("#slider-frame")
            frame.locator("input[name=default_country]").fill("DE")
            frame.locator("#settings button[type=submit]").click()
            frame.locator("#settings-result:has-text('✓')").wait_for(timeout=15_000)
        finally:
            browser.close()
    headers = session_for(installed)
    stored = requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10).json()
    assert stored["default_country"] == "DE"


@pytest.mark.browser
@needs_chromium
def test_run_robot_on_a_card_uses_the_values_saved_in_its_settings(installed: Installed) -> None:
    """The shell's *Run robot* ran with empty properties: every robot answered invalid_settings."""
    installed.portal("/seed", "POST", n=3)
    base = installed.portal()["shell_url"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}crm/contact/details/1/?user=1")
            page.click("#robot-settings .menu-button")
            page.click("#robot-settings li[data-code=timeline_comment]")
            page.frame_locator("#slider-frame").locator("[name=text]").fill("Hi {{ contact.NAME }}")
            page.wait_for_timeout(500)
            page.click("#slider-close")
            page.click("#robots .menu-button")
            page.click("#robots li[data-code=timeline_comment]")
            started = page.locator("#robots li[data-code=timeline_comment]:has-text('→')")
            started.wait_for(state="attached")
        finally:
            browser.close()
    installed.settle()
    flows = [w for w in installed.emu("GET", "/workflows") if w["robot_code"] == "timeline_comment"]
    assert flows and flows[-1]["properties"]["text"] == "Hi {{ contact.NAME }}"
    assert flows[-1]["return_values"]["status"] == "sent", flows[-1]
