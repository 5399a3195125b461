"""Issue 9, red-team review: what was still open after the trust work, as an attacker tries it.

- A JSON body nested deeper than the parser recurses was a 500 with a traceback (``/api/settings``,
  ``/api/sms/size``): now a clear 400 that changes nothing.
- A NUL or other control character in a settings string was stored (PostgreSQL refuses it: a 500
  there; SQLite kept ``1.1.1.1\\x00.evil`` as the SMTP host): now a 400 naming the field.
"""

from __future__ import annotations

import pytest
import requests

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
