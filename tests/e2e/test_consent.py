"""The unsubscribe round trip over HTTP: the app, its worker, the emulator and a real SMTP server.

A robot or a scenario step sends a message with ``{{ unsubscribe_url }}`` → the link's page
(GET) → confirm (POST) or RFC 8058 one-click → the record's consent field is "Y" in the
emulator's CRM and the record is on the suppression list → the next send is skipped
``unsubscribed``. Forged links change nothing (no row, no REST call) and say so.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from sqlalchemy import select

from marketapp import consent
from marketapp.db import db_session
from marketapp.models import Enrollment, Portal, SmsMessage, Suppression
from marketapp.scenarios import launches, versions
from marketapp.scenarios.preview import Selection
from tests.conftest import free_port
from tests.e2e.harness import Installed
from tests.support import has_mobile, run_robot, seeded_contacts, set_channels, workflow

pytestmark = pytest.mark.e2e

FIELDS = {"no_email_field": "UF_CRM_NO_EMAIL", "no_sms_field": "UF_CRM_NO_SMS"}
LETTER = {
    "subject": "News for {{ contact.NAME }}",
    "body": '<p>Hello</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
}
SMS_TEXT = "Sale today! Stop: {{ unsubscribe_url }}"


class Collect:
    """An SMTP handler keeping every message (aiosmtpd parses nothing: the test does)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@pytest.fixture
def seeded(installed: Installed) -> Installed:
    installed.portal("/seed", "POST", n=30)
    return installed


@pytest.fixture
def smtp(seeded: Installed) -> Iterator[Collect]:
    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    # The test server is on loopback: the operator's development setting allows that.
    seeded.app.app.extensions["marketapp.settings"].allow_private_smtp = True
    configure(
        seeded,
        email_channel="smtp",
        smtp_host="127.0.0.1",
        smtp_port=controller.port,
        smtp_starttls=False,
        smtp_from="Shop <shop@example.com>",
    )
    yield handler
    controller.stop()


def consenting_contact(inst: Installed) -> dict[str, Any]:
    """A seeded contact with an e-mail and a mobile that opted out of neither."""
    return next(
        dict(c)
        for c in seeded_contacts(inst)
        if c.get("EMAIL") and has_mobile(c) and c["UF_CRM_NO_EMAIL"] == c["UF_CRM_NO_SMS"] == "N"
    )


def in_app(inst: Installed, fn: Any) -> Any:
    with inst.app.app.app_context():
        try:
            return fn(db_session())
        finally:
            db_session().close()


def configure(inst: Installed, **values: Any) -> None:
    def apply(session: Any) -> None:
        set_channels(session, session.scalars(select(Portal)).one(), **values)

    in_app(inst, apply)


def set_language(inst: Installed, language: str) -> None:
    def apply(session: Any) -> None:
        session.scalars(select(Portal)).one().language = language
        session.commit()

    in_app(inst, apply)


def suppressions(inst: Installed) -> list[tuple[str, int, str, str, str]]:
    def read(session: Any) -> list[tuple[str, int, str, str, str]]:
        rows = session.scalars(select(Suppression).order_by(Suppression.id))
        return [(r.entity_type, r.entity_id, r.channel, r.source, r.crm_state) for r in rows]

    found: list[tuple[str, int, str, str, str]] = in_app(inst, read)
    return found


def record(inst: Installed, contact_id: Any) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in inst.portal("/crm/contact") if str(c["ID"]) == str(contact_id)
    )
    return found


def rest_writes(inst: Installed) -> list[str]:
    """Every crm.*.update the app sent to the portal (batched commands included)."""
    log = inst.emu("GET", f"/requests?member_id={inst.member_id}")
    methods = [m for e in log for m in (e.get("methods") or [e.get("method", "")])]
    return [m for m in methods if m.startswith("crm.") and m.endswith(".update")]


def link_in(text: str, inst: Installed) -> str:
    match = re.search(re.escape(inst.app.url) + r"/u/[A-Za-z0-9_-]+", text)
    assert match, text
    return match.group(0)


def test_email_round_trip_through_smtp(seeded: Installed, smtp: Collect) -> None:
    configure(seeded, **FIELDS)
    contact = consenting_contact(seeded)
    doc = f"CONTACT_{contact['ID']}"
    wid = run_robot(seeded, "send_email", doc, **LETTER)
    seeded.settle()
    assert workflow(seeded, wid)["return_values"]["status"] == "sent"
    (message,) = smtp.messages
    url = link_in(message["List-Unsubscribe"], seeded)
    assert message["List-Unsubscribe"] == f"<{url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",))
    assert html is not None and f'href="{url}"' in html.get_content()
    assert len(url) - len(seeded.app.url) <= 40  # short: /u/ and about 30 characters

    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert "Stop e-mails from" in page.text and "saved in the company" in page.text
    assert record(seeded, contact["ID"])["UF_CRM_NO_EMAIL"] == "N"  # a GET changes nothing
    assert suppressions(seeded) == [] and rest_writes(seeded) == []

    token = url.rsplit("/", 1)[1]
    done = requests.post(url, data={"token": token}, timeout=10)
    assert done.status_code == 200 and "You are unsubscribed." in done.text
    seeded.settle()
    assert record(seeded, contact["ID"])["UF_CRM_NO_EMAIL"] == "Y"
    entry = ("CONTACT", int(contact["ID"]), "email", "page", "written")
    assert suppressions(seeded) == [entry]
    assert rest_writes(seeded) == ["crm.contact.update"]

    again = requests.post(url, data={"token": token}, timeout=10)
    assert again.status_code == 200 and "already unsubscribed" in again.text
    assert "already unsubscribed" in requests.get(url, timeout=10).text
    seeded.settle()
    assert suppressions(seeded) == [entry] and rest_writes(seeded) == ["crm.contact.update"]

    wid = run_robot(seeded, "send_email", doc, **LETTER)
    seeded.settle()
    skipped = {"status": "skipped", "reason": "unsubscribed"}
    assert workflow(seeded, wid)["return_values"] == skipped
    assert len(smtp.messages) == 1


def test_sms_one_click_in_russian_and_the_other_channel_still_works(seeded: Installed) -> None:
    configure(seeded, **FIELDS)
    set_language(seeded, "ru")
    contact = consenting_contact(seeded)
    doc = f"CONTACT_{contact['ID']}"
    run_robot(seeded, "send_sms", doc, text=SMS_TEXT)
    seeded.settle()
    sms = in_app(seeded, lambda s: s.scalars(select(SmsMessage)).one().text)
    url = link_in(sms, seeded)
    assert sms.startswith("Sale today! Stop: ")

    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and '<html lang="ru">' in page.text

    answer = requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    seeded.settle()
    assert record(seeded, contact["ID"])["UF_CRM_NO_SMS"] == "Y"
    assert suppressions(seeded) == [("CONTACT", int(contact["ID"]), "sms", "one_click", "written")]

    skipped = run_robot(seeded, "send_sms", doc, text=SMS_TEXT)
    still = run_robot(seeded, "send_email", doc, subject="Hi", body="An e-mail")
    seeded.settle()
    assert workflow(seeded, skipped)["return_values"]["reason"] == "unsubscribed"
    assert workflow(seeded, still)["return_values"]["status"] == "sent"


def test_without_a_consent_field_the_list_still_holds_and_the_page_says_so(
    seeded: Installed,
) -> None:
    contact = consenting_contact(seeded)
    url = in_app(
        seeded,
        lambda s: consent.unsubscribe_url(
            s.scalars(select(Portal)).one(), "CONTACT", int(contact["ID"]), "email"
        ),
    )
    assert "has not set up a consent field" in requests.get(url, timeout=10).text
    done = requests.post(url, data={"token": url.rsplit("/", 1)[1]}, timeout=10)
    assert done.status_code == 200 and "has not set up a consent field" in done.text
    seeded.settle()
    assert suppressions(seeded) == [
        ("CONTACT", int(contact["ID"]), "email", "page", "not_configured")
    ]
    assert rest_writes(seeded) == []
    wid = run_robot(seeded, "send_email", f"CONTACT_{contact['ID']}", **LETTER)
    seeded.settle()
    assert workflow(seeded, wid)["return_values"]["reason"] == "unsubscribed"


def _flip(token: str, at: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return token[:at] + alphabet[(alphabet.index(token[at]) + 1) % 64] + token[at + 1 :]


def _other_channel(token: str) -> str:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    forged = bytes([raw[0] ^ 1]) + raw[1:]  # the channel bit: the sms link of the same record
    return base64.urlsafe_b64encode(forged).rstrip(b"=").decode()


def test_tampered_links_change_nothing_and_say_so(seeded: Installed) -> None:
    configure(seeded, **FIELDS)
    contact = consenting_contact(seeded)

    def tokens(session: Any) -> list[str]:
        portal = session.scalars(select(Portal)).one()
        link = consent.Link(portal.id, "CONTACT", int(contact["ID"]), "email")
        good = consent.make_token(link, portal.member_id)
        other_portal = consent.make_token(link, "f" * 32)  # signed as another portal
        return [_flip(good, 5), _flip(good, len(good) - 1), other_portal, _other_channel(good)]

    for token in in_app(seeded, tokens):
        url = f"{seeded.app.url}/u/{token}"
        page = requests.get(url, timeout=10)
        assert page.status_code == 404 and "This unsubscribe link is not valid." in page.text
        assert "Nothing was changed" in page.text
        form = requests.post(url, data={"token": token}, timeout=10)
        assert form.status_code == 404 and "not valid" in form.text
        click = requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert click.status_code == 404
    seeded.settle()
    assert suppressions(seeded) == [] and rest_writes(seeded) == []
    assert record(seeded, contact["ID"])["UF_CRM_NO_EMAIL"] == "N"


def test_a_scenario_step_renders_the_link_and_then_skips_unsubscribed(seeded: Installed) -> None:
    configure(seeded, **FIELDS)
    contact = consenting_contact(seeded)
    definition = {
        "schema": 1,
        "key": "consent",
        "name": {"en": "Sale", "ru": "Распродажа"},
        "description": {"en": "An SMS.", "ru": "SMS."},
        "entity_types": ["CONTACT"],
        "steps": [{"type": "send_sms", "text": SMS_TEXT}],
    }

    def start(session: Any) -> int:
        portal = session.scalars(select(Portal)).one()
        version = versions.save(session, portal, definition, author_id=1)
        session.commit()
        user_token = seeded.portal("/tokens", "POST", client_id=seeded.client_id, user_id=1)
        selection = Selection("CONTACT", (int(contact["ID"]),))
        row = launches.launch(
            session,
            portal,
            version,
            selection,
            {},
            1,
            str(user_token["access_token"]),
            secrets.token_hex(8),
            user={"ID": 1, "NAME": "Admin"},
        )
        return int(row.id)

    def outcome(launch_id: int) -> tuple[str, str]:
        def read(session: Any) -> tuple[str, str]:
            row = session.scalars(select(Enrollment).where(Enrollment.launch_id == launch_id)).one()
            return row.state.value, row.reason

        result: tuple[str, str] = in_app(seeded, read)
        return result

    first = in_app(seeded, start)
    seeded.settle()
    assert outcome(first)[0] == "done"
    url = link_in(in_app(seeded, lambda s: s.scalars(select(SmsMessage)).one().text), seeded)
    assert requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10).ok
    seeded.settle()

    second = in_app(seeded, start)
    seeded.settle()
    assert outcome(second) == ("skipped", "unsubscribed")
