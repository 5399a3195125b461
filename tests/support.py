"""Factories and shared helpers for the tests: one place, so that a new model needs one change.

Database factories (an app context and session are the caller's): :func:`add_portal`,
:func:`set_channels`, :func:`add_robot_call`, :func:`add_sms`. End-to-end helpers over the
emulator (:class:`tests.e2e.harness.Installed`): seeded records, robot runs, page sessions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from marketapp.channel_settings import channel_settings
from marketapp.db import db_session
from marketapp.devportal.seed import INVALID_PHONES
from marketapp.models import ChannelSettings, Portal, RobotCall, RobotCallState, SmsMessage
from tests.e2e.harness import Installed

# --- database factories ----------------------------------------------------------------------


def add_portal(session: Session, member_id: str = "a" * 32, **fields: Any) -> Portal:
    """An installed-looking portal with (encrypted) tokens; ``fields`` override the defaults."""
    values: dict[str, Any] = {
        "member_id": member_id,
        "domain": "portal.bitrix24.com",
        "client_endpoint": "https://portal.bitrix24.com/rest/",
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "access_token": "plain-access-token-123",
        "refresh_token": "plain-refresh-token-456",
        "application_token": "plain-app-token-789",
        "expires_at": datetime(2030, 1, 1, tzinfo=UTC),
        **fields,
    }
    portal = Portal(**values)
    session.add(portal)
    session.commit()
    return portal


def set_channels(session: Session, portal: Portal, **values: Any) -> ChannelSettings:
    """The portal's channel settings with ``values`` applied (committed)."""
    row = channel_settings(session, portal)
    for name, value in values.items():
        setattr(row, name, value)
    session.commit()
    return row


def add_robot_call(
    portal: Portal, n: int, state: RobotCallState = RobotCallState.QUEUED, **fields: Any
) -> RobotCall:
    """Robot call number ``n`` (its token and record derive from it), added, not committed."""
    values: dict[str, Any] = {
        "portal_id": portal.id,
        "event_token_hash": f"{n:064d}",
        "event_token": f"t{n}",
        "code": "send_sms",
        "workflow_id": "w",
        "document_id": f"CONTACT_{n}",
        "entity_type": "CONTACT",
        "entity_id": n,
        "properties": {},
        "state": state,
        **fields,
    }
    call = RobotCall(**values)
    db_session().add(call)
    return call


def add_sms(db: Session, portal_id: int, key: str, status: str, provider: str = "twilio") -> None:
    db.add(
        SmsMessage(
            portal_id=portal_id,
            key=key,
            provider=provider,
            phone="+15005550006",
            text="hi",
            segments=1,
            encoding="GSM-7",
            status=status,
            provider_message_id=f"SM{key}",
        )
    )


# --- end to end over the emulator ------------------------------------------------------------

EMAIL = {
    "subject": "Hello {{ contact.NAME }}",
    "body": "<p>Dear <b>{{ contact.NAME }}</b></p><script>alert(1)</script>",
}


def seeded_contacts(installed: Installed) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = installed.emu(
        "GET", f"/portals/{installed.member_id}/crm/contact"
    )
    return found


def has_mobile(contact: dict[str, Any]) -> bool:
    """A mobile number the gateway accepts (the seed also has numbers no plan accepts)."""
    return any(
        p["VALUE_TYPE"] == "MOBILE" and p["VALUE"] not in INVALID_PHONES
        for p in contact.get("PHONE") or []
    )


def contact_with(installed: Installed, *, email: bool = True, phone: bool = True) -> dict[str, Any]:
    """A seeded contact that has (or lacks) an e-mail and a usable mobile, not opted out."""
    for contact in seeded_contacts(installed):
        wanted = bool(contact.get("EMAIL")) == email and has_mobile(contact) == phone
        if wanted and contact["UF_CRM_NO_EMAIL"] == "N":
            return dict(contact)
    raise LookupError("no such seeded contact")


def sms_contacts(installed: Installed, n: int) -> list[dict[str, Any]]:
    return [dict(c) for c in seeded_contacts(installed) if has_mobile(c)][:n]


def run_robot(installed: Installed, code: str, document: str, **properties: Any) -> str:
    """Start a one-robot workflow on ``document``; its id."""
    wf = installed.portal(
        "/robots/run",
        "POST",
        client_id=installed.client_id,
        code=code,
        document_id=document,
        properties=properties,
    )
    return str(wf["id"])


def workflow(installed: Installed, wid: str) -> dict[str, Any]:
    found: dict[str, Any] = next(w for w in installed.emu("GET", "/workflows") if w["id"] == wid)
    return found


def token_from(html: str) -> str:
    """The page session token a rendered page carries."""
    marker = 'name="session-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def session_for(installed: Installed, user_id: int = 1) -> dict[str, str]:
    """Headers of a page session of ``user_id`` (opened through the emulator's main page)."""
    resp = installed.post_form(installed.open("DEFAULT", user_id=user_id))
    return {"X-Session-Token": token_from(resp.text)}
