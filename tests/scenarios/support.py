"""Definitions and portals for the versions / transfer / CLI tests."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy.orm import Session

from marketapp.models import Portal


def definition(key: str = "welcome", text: str = "Hello {{ record.NAME }}") -> dict[str, Any]:
    """A small valid definition: one e-mail step whose body is ``text``."""
    return copy.deepcopy(
        {
            "schema": 1,
            "key": key,
            "name": {"en": "Welcome", "ru": "Приветствие"},
            "description": {"en": "Greets new contacts.", "ru": "Приветствует новые контакты."},
            "entity_types": ["CONTACT"],
            "steps": [{"type": "send_email", "subject": "Hi", "body": text}],
        }
    )


def add_portal(session: Session, member_id: str, language: str = "en") -> Portal:
    portal = Portal(
        member_id=member_id,
        domain=f"{member_id}.example",
        client_endpoint=f"https://{member_id}.example/rest/",
        server_endpoint="https://oauth.example/rest/",
        installed=True,
        language=language,
    )
    session.add(portal)
    session.commit()
    return portal
