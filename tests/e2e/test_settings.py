"""The admin settings API: validated, secrets never shown back, admin only, per portal."""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.models import PortalSettings
from tests.e2e.harness import Installed
from tests.e2e.test_lifecycle import _token_from

pytestmark = pytest.mark.e2e


def session_for(installed: Installed, user_id: int = 1) -> dict[str, str]:
    resp = installed.post_form(installed.open("DEFAULT", user_id=user_id))
    return {"X-Session-Token": _token_from(resp.text)}


def save(installed: Installed, headers: dict[str, str], **data: object) -> requests.Response:
    return requests.post(
        f"{installed.app.url}/api/settings", json=data, headers=headers, timeout=10
    )


def test_settings_round_trip_keeps_secrets_hidden(installed: Installed) -> None:
    headers = session_for(installed)
    resp = save(
        installed,
        headers,
        sms_provider="twilio",
        no_sms_field="uf_crm_no_sms",
        sms_credentials={
            "account_sid": "AC123",
            "auth_token": "tw-secret-9",
            "from": "+15005550006",
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["no_sms_field"] == "UF_CRM_NO_SMS"
    assert body["sms_credentials"] == {
        "account_sid": "AC123",
        "auth_token": "",
        "from": "+15005550006",
    }
    assert body["sms_secrets_set"] == ["auth_token"]
    assert "tw-secret-9" not in resp.text
    # Saving again with the secret left blank keeps it.
    again = save(
        installed,
        headers,
        sms_provider="twilio",
        sms_credentials={"account_sid": "AC123", "auth_token": ""},
    )
    assert again.status_code == 200
    with installed.app.app.app_context():
        row = db_session().scalars(select(PortalSettings)).one()
        assert json.loads(row.sms_credentials or "{}")["auth_token"] == "tw-secret-9"
    page = installed.post_form(installed.open("DEFAULT"))
    assert "tw-secret-9" not in page.text and 'name="cred.account_sid" value="AC123"' in page.text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sms_provider": "nexmo"}, "sms_provider"),
        ({"sms_provider": "smsru"}, "smsru needs api_id"),
        ({"email_channel": "smtp"}, "SMTP needs a host"),
        ({"sms_max_length": 0}, "sms_max_length"),
        ({"no_email_field": "DROP TABLE"}, "CRM field code"),
        ({"default_country": "Russia"}, "default_country"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_settings_are_a_clear_400_and_change_nothing(
    installed: Installed, data: dict[str, object], message: str
) -> None:
    resp = save(installed, session_for(installed), **data)
    assert resp.status_code == 400
    assert message in resp.json()["error_description"]
    with installed.app.app.app_context():
        row = db_session().scalars(select(PortalSettings)).one_or_none()
        assert row is None or row.sms_provider == "outbox"


def test_settings_are_admin_only(installed: Installed) -> None:
    resp = save(installed, session_for(installed, user_id=2), sms_max_length=100)
    assert resp.status_code == 403
    assert requests.get(f"{installed.app.url}/api/settings", timeout=10).status_code == 401
