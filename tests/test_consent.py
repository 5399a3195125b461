"""Unsubscribe tokens and the public page's refusals (no Bitrix24 needed: nothing is called).

The round trip against the emulator and a real SMTP server is in tests/e2e/test_consent.py.
"""

from __future__ import annotations

import base64
import string

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketapp import consent
from marketapp.consent import InvalidLink, Link
from marketapp.models import Portal, PortalStatus, Suppression
from tests.support import add_portal

ALPHABET = string.ascii_letters + string.digits + "-_"


@pytest.fixture
def portals(db: Session) -> tuple[Portal, Portal]:
    return add_portal(db, "a" * 32), add_portal(db, "b" * 32, domain="other.bitrix24.com")


def _flip(token: str, at: int) -> str:
    """``token`` with the character at ``at`` replaced by the next one of the alphabet."""
    other = ALPHABET[(ALPHABET.index(token[at]) + 1) % len(ALPHABET)]
    return token[:at] + other + token[at + 1 :]


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_link_is_short_and_names_its_record(db: Session, portals: tuple[Portal, Portal]) -> None:
    portal = portals[0]
    url = consent.unsubscribe_url(portal, "CONTACT", 123456, "sms")
    assert url.startswith("http://127.0.0.1:8000/u/")
    token = url.rsplit("/", 1)[1]
    assert len(token) <= 32  # 16 bytes of tag (128 bits) and a few bytes of payload
    assert consent.read_link(db, token) == (portal, Link(portal.id, "CONTACT", 123456, "sms"))
    for entity in ("COMPANY", "LEAD", "DEAL"):
        for channel in consent.CHANNELS:
            link = Link(portal.id, entity, 2**31 - 1, channel)
            assert consent.read_link(db, consent.make_token(link, portal.member_id))[1] == link


def test_changing_any_character_invalidates_the_token(
    db: Session, portals: tuple[Portal, Portal]
) -> None:
    token = consent.make_token(Link(portals[0].id, "CONTACT", 42, "email"), portals[0].member_id)
    for at in range(len(token)):
        with pytest.raises(InvalidLink):
            consent.read_link(db, _flip(token, at))
    for bad in ("", token[:-1], token + "A", token + "=", "A" * 65, "é" + token[1:]):
        with pytest.raises(InvalidLink):
            consent.read_link(db, bad)


def test_another_portals_signature_or_channel_does_not_verify(
    db: Session, portals: tuple[Portal, Portal]
) -> None:
    mine, theirs = portals
    # Signed with the other portal's identity but naming mine (a link of a purged portal
    # whose row id came back): refused.
    with pytest.raises(InvalidLink):
        consent.read_link(db, consent.make_token(Link(mine.id, "CONTACT", 7, "email"), "x" * 32))
    # The other portal's genuine token relabelled to my portal id, or to the other channel.
    raw = _raw(consent.make_token(Link(theirs.id, "CONTACT", 7, "email"), theirs.member_id))
    relabelled = raw[:1] + bytes([mine.id]) + raw[2:]
    other_channel = bytes([raw[0] ^ 1]) + raw[1:]
    for forged in (relabelled, other_channel):
        with pytest.raises(InvalidLink):
            consent.read_link(db, _encode(forged))


def test_suppression_list_lookup_is_per_portal_and_channel(
    db: Session, portals: tuple[Portal, Portal]
) -> None:
    mine, theirs = portals
    db.add(Suppression(portal_id=mine.id, entity_type="CONTACT", entity_id=1, channel="email"))
    db.add(Suppression(portal_id=theirs.id, entity_type="CONTACT", entity_id=2, channel="email"))
    db.add(Suppression(portal_id=mine.id, entity_type="LEAD", entity_id=3, channel="sms"))
    db.commit()
    refs = {("CONTACT", 1), ("CONTACT", 2), ("LEAD", 3), ("COMPANY", 1)}
    assert consent.is_suppressed(db, mine.id, refs, "email") == {("CONTACT", 1)}
    assert consent.is_suppressed(db, mine.id, refs, "sms") == {("LEAD", 3)}
    assert consent.is_suppressed(db, theirs.id, refs, "email") == {("CONTACT", 2)}
    assert consent.is_suppressed(db, mine.id, set(), "email") == set()


def _rows(app: Flask) -> int:
    from marketapp.db import db_session

    with app.app_context():
        return int(db_session().scalar(select(func.count()).select_from(Suppression)) or 0)


def test_a_forged_link_changes_nothing_and_says_so(
    app: Flask, client: FlaskClient, db: Session, portals: tuple[Portal, Portal]
) -> None:
    token = consent.make_token(Link(portals[0].id, "CONTACT", 42, "email"), portals[0].member_id)
    forged = _flip(token, len(token) // 2)
    page = client.get(f"/u/{forged}", headers={"Accept-Language": "ru"})
    assert page.status_code == 404
    # The visitor's language (no portal is known); the Russian texts come with the catalog.
    assert '<html lang="ru">' in page.text
    for body in ({"token": forged}, {"List-Unsubscribe": "One-Click"}):
        answer = client.post(f"/u/{forged}", data=body)
        assert answer.status_code == 404
        assert "Traceback" not in answer.text
    assert _rows(app) == 0


def test_the_page_post_needs_the_token_in_the_form(
    app: Flask, client: FlaskClient, db: Session, portals: tuple[Portal, Portal]
) -> None:
    token = consent.make_token(Link(portals[0].id, "CONTACT", 42, "email"), portals[0].member_id)
    for body in ({}, {"token": ""}, {"token": _flip(token, 3)}, {"List-Unsubscribe": "yes"}):
        answer = client.post(f"/u/{token}", data=body)
        assert answer.status_code == 400, body
    assert _rows(app) == 0


def test_an_uninstalled_portal_is_a_clear_page(
    app: Flask, client: FlaskClient, db: Session, portals: tuple[Portal, Portal]
) -> None:
    portal = portals[0]
    portal.status = PortalStatus.UNINSTALLED
    portal.language = "ru"
    db.commit()
    token = consent.make_token(Link(portal.id, "CONTACT", 42, "email"), portal.member_id)
    page = client.get(f"/u/{token}")
    assert page.status_code == 410 and '<html lang="ru">' in page.text
    assert client.post(f"/u/{token}", data={"token": token}).status_code == 410
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 410
    assert _rows(app) == 0


def test_the_page_loads_nothing_from_elsewhere(
    client: FlaskClient, db: Session, portals: tuple[Portal, Portal]
) -> None:
    token = consent.make_token(Link(portals[0].id, "CONTACT", 42, "email"), portals[0].member_id)
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    assert "<script" not in page.text and "http" not in page.text.split("<main>")[0]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in page.headers


def test_definitions_accept_unsubscribe_url_in_email_and_sms(app: Flask) -> None:
    from marketapp.scenarios.definition import DefinitionError, validate_definition

    def scenario(*steps: dict[str, str]) -> dict[str, object]:
        return {
            "schema": 1,
            "key": "consent",
            "name": {"en": "Sale", "ru": "Распродажа"},
            "description": {"en": "A test.", "ru": "Тест."},
            "entity_types": ["CONTACT"],
            "steps": list(steps),
        }

    with app.app_context():
        validate_definition(
            scenario(
                {"type": "send_sms", "text": "Stop: {{ unsubscribe_url }}"},
                {"type": "send_email", "subject": "Hi", "body": "<a href='{{ unsubscribe_url }}'>"},
            )
        )
        with pytest.raises(DefinitionError, match="unsubscribe_link"):
            validate_definition(scenario({"type": "send_sms", "text": "{{ unsubscribe_link }}"}))
