"""Chromium: the app's pages inside the emulator's CRM shell, as a person uses them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.e2e.harness import Installed

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    needs_chromium,
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    yield page
    page.close()


def open_sms_settings(page: Page, installed: Installed) -> None:
    base = installed.portal()["shell_url"].rstrip("/")
    page.goto(f"{base}/crm/contact/details/1/?user=1")
    page.click("#robot-settings .menu-button")
    page.click("#robot-settings li[data-code=send_sms]")


def test_robot_settings_page_saves_values_and_previews_segments(
    page: Page, installed: Installed, tmp_path: Path
) -> None:
    installed.portal("/seed", "POST", n=3)
    open_sms_settings(page, installed)
    frame = page.frame_locator("#slider-frame")
    text = frame.locator("textarea[name=text]")
    text.fill("Привет, {{ contact.NAME }}! " + "x" * 60)
    preview = frame.locator("#sms-size[data-segments='2']")
    preview.wait_for(timeout=10_000)
    assert "UCS-2" in preview.inner_text()
    frame.locator("select[name=phone_type]").select_option("WORK")
    page.screenshot(path=str(tmp_path / "robot_settings.png"))

    commands = [e for e in installed.emu("GET", "/ui-events") if e["command"] == "setPropertyValue"]
    assert commands and commands[-1]["params"] == {"phone_type": "WORK"}
    assert any(c["params"].get("text", "").startswith("Привет") for c in commands)

    page.click("#slider-close")
    open_sms_settings(page, installed)
    reopened = page.frame_locator("#slider-frame")
    assert reopened.locator("textarea[name=text]").input_value().startswith("Привет, {{")
    assert reopened.locator("select[name=phone_type]").input_value() == "WORK"
