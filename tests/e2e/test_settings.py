"""The admin settings API: validated, secrets never shown back, admin only, per portal."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import select

from marketapp.channel_settings import channel_settings
from marketapp.db import db_session
from marketapp.models import ChannelSettings, Portal
from tests.conftest import free_port
from tests.e2e.harness import Installed
from tests.support import contact_with, run_robot, session_for, workflow

pytestmark = pytest.mark.e2e


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
        row = db_session().scalars(select(ChannelSettings)).one()
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
        row = db_session().scalars(select(ChannelSettings)).one_or_none()
        assert row is None or row.sms_provider == "outbox"


def test_settings_are_admin_only(installed: Installed) -> None:
    resp = save(installed, session_for(installed, user_id=2), sms_max_length=100)
    assert resp.status_code == 403
    assert requests.get(f"{installed.app.url}/api/settings", timeout=10).status_code == 401


# --- attack 7: channel settings must not reach the app's own network (SSRF) ----------------


class _Internal:
    """A fake internal HTTP service on loopback that must never be reached."""

    def __init__(self) -> None:
        import http.server
        import threading

        hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                hits.append(self.path + " " + str(self.headers.get("Authorization")))
                self.send_response(201)
                self.end_headers()
                self.wfile.write(b'{"sid": "SM1", "status": "queued"}')

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.hits = hits
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/internal-service"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal() -> Iterator[_Internal]:
    service = _Internal()
    yield service
    service.close()


TWILIO = {"account_sid": "AC123", "auth_token": "tw-secret-9", "from": "+15005550006"}


def test_sms_gateway_url_is_not_a_portal_setting(installed: Installed, internal: _Internal) -> None:
    headers = session_for(installed)
    creds = {**TWILIO, "base_url": internal.url}
    resp = save(installed, headers, sms_provider="twilio", sms_credentials=creds)
    assert resp.status_code == 400
    assert "base_url" in resp.json()["error_description"]
    assert (
        requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10).json()[
            "sms_provider"
        ]
        == "outbox"
    )
    # A row stored before this rule (base_url among the credentials) still never reaches it.
    with installed.app.app.app_context():
        session = db_session()
        row = channel_settings(session, session.scalars(select(Portal)).one())
        row.sms_provider, row.sms_credentials = "twilio", json.dumps(creds)
        session.commit()
    installed.portal("/seed", "POST", n=10)
    contact = contact_with(installed)
    wid = run_robot(installed, "send_sms", f"CONTACT_{contact['ID']}", text="Hi")
    installed.settle()
    assert internal.hits == []
    assert workflow(installed, wid)["return_values"]["status"] != "sent"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "[::1]", "::ffff:127.0.0.1"]
)
def test_smtp_host_on_the_app_network_is_a_clear_400(installed: Installed, host: str) -> None:
    headers = session_for(installed)
    resp = save(
        installed,
        headers,
        email_channel="smtp",
        smtp_host=host,
        smtp_port=1,
        smtp_from="shop@example.com",
    )
    assert resp.status_code == 400, resp.text
    assert "smtp_host" in resp.json()["error_description"]
    after = requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10).json()
    assert after["email_channel"] == "portal" and after["smtp_host"] == ""


def test_smtp_connect_refuses_private_address_without_details(installed: Installed) -> None:
    """A row pointing at loopback (saved before the rule, or a DNS change) is refused at
    connect time, and the robot log names no internal address, port or errno."""
    with installed.app.app.app_context():
        session = db_session()
        row = channel_settings(session, session.scalars(select(Portal)).one())
        row.email_channel, row.smtp_host, row.smtp_port = "smtp", "127.0.0.1", free_port()
        row.smtp_from, row.smtp_starttls = "shop@example.com", False
        session.commit()
    installed.portal("/seed", "POST", n=10)
    contact = contact_with(installed)
    wid = run_robot(installed, "send_email", f"CONTACT_{contact['ID']}", subject="Hi", body="Hello")
    installed.settle()
    flow = workflow(installed, wid)
    assert flow["return_values"]["status"] == "failed"
    log = json.dumps(flow["log"]) + json.dumps(flow["return_values"])
    assert "could not connect to the SMTP server" in log
    for detail in ("127.0.0.1", "ConnectionRefused", "Errno", str(row.smtp_port)):
        assert detail not in log


def test_private_smtp_allowed_by_the_operator_setting(installed: Installed) -> None:
    installed.app.app.extensions["marketapp.settings"].allow_private_smtp = True
    resp = save(
        installed,
        session_for(installed),
        email_channel="smtp",
        smtp_host="127.0.0.1",
        smtp_port=2525,
        smtp_from="shop@example.com",
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["smtp_host"] == "127.0.0.1"


# --- attack 8: a body that is not a JSON object changes nothing ----------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("not json", "text/plain"),
        ("not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"text"', "application/json"),
        ("null", "application/json"),
        ("sms_provider=outbox", "application/x-www-form-urlencoded"),
        ("", "application/json"),
    ],
)
def test_body_that_is_not_a_json_object_is_a_400_and_changes_nothing(
    installed: Installed, body: str, content_type: str
) -> None:
    headers = session_for(installed)
    assert save(installed, headers, sms_provider="twilio", sms_credentials=TWILIO).ok
    before = requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10)
    resp = requests.post(
        f"{installed.app.url}/api/settings",
        data=body.encode(),
        headers={**headers, "Content-Type": content_type},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_settings"
    after = requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10)
    assert after.json() == before.json()
    assert after.json()["sms_secrets_set"] == ["auth_token"]


def test_partial_body_updates_only_the_named_fields(installed: Installed) -> None:
    headers = session_for(installed)
    assert save(installed, headers, sms_provider="twilio", sms_credentials=TWILIO).ok
    before = requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10).json()
    resp = save(installed, headers, sms_max_length=70)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {**before, "sms_max_length": 70}
    # The credentials object is partial too: a named field changes, the others stay.
    resp = save(installed, headers, sms_credentials={"from": "+15005550007"})
    assert resp.status_code == 200, resp.text
    creds = resp.json()["sms_credentials"]
    assert creds == {"account_sid": "AC123", "auth_token": "", "from": "+15005550007"}
    assert resp.json()["sms_secrets_set"] == ["auth_token"]
    assert save(installed, headers).json() == resp.json()  # {} changes nothing
