"""Helpers of the stop / undo / launches CLI tests: a scenario launched on seeded contacts and
run by the test worker, a person's REST calls (an incoming webhook of user 1), the emulator's
request log."""

from __future__ import annotations

import secrets
from typing import Any

import requests
from sqlalchemy import func, select

from marketapp.bitrix.client import client_for
from marketapp.db import db_session
from marketapp.models import Enrollment, EnrollmentState, Portal
from marketapp.scenarios import launches, versions
from marketapp.scenarios.preview import Selection
from marketapp.scenarios.undo import UndoReport, undo
from tests.e2e.harness import Installed, wait_for
from tests.support import seeded_contacts

EDIT = {
    "type": "edit_fields",
    "fields": "POST = Customer {{ contact.ID }}\nLAST_NAME = {{ contact.LAST_NAME }} (spring)",
}
COMMENT = {"type": "timeline_comment", "text": "Spring campaign for {{ contact.NAME }}"}
TASK = {"type": "create_task", "title": "Call {{ contact.NAME }}"}
EMAIL = {"type": "send_email", "subject": "Spring", "body": "Dear {{ contact.NAME }}"}
SMS = {"type": "send_sms", "text": "Spring sale, {{ contact.NAME }}!"}
WAIT = {"type": "wait", "days": 1}


def definition(*steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": 1,
        "key": "spring",
        "name": {"en": "Spring", "ru": "Весна"},
        "description": {"en": "Spring campaign.", "ru": "Весенняя кампания."},
        "entity_types": ["CONTACT"],
        "steps": list(steps),
    }


def start(installed: Installed, steps: list[dict[str, Any]], ids: list[int]) -> int:
    """Save the scenario and launch it on contacts ``ids`` (as the CLI does: no user token)."""
    with installed.app.app.app_context():
        session = db_session()
        portal = portal_of(session)
        version = versions.save(session, portal, definition(*steps), author_id=1)
        session.commit()
        selection = Selection("CONTACT", ids=tuple(ids))
        row = launches.launch(
            session, portal, version, selection, {}, 1, None, secrets.token_hex(8)
        )
        return int(row.id)


def finished(installed: Installed, launch_id: int) -> None:
    """Let the worker run the launch until no enrollment is pending or running."""

    def settled() -> bool:
        installed.app.worker.idle()
        return not count(installed, launch_id, EnrollmentState.PENDING, EnrollmentState.RUNNING)

    wait_for(settled, timeout=120)


def run_undo(installed: Installed, launch_id: int) -> UndoReport:
    with installed.app.app.app_context():
        session = db_session()
        portal = portal_of(session)
        return undo(session, portal, launch_id, client_for(portal))


def portal_of(session: Any) -> Portal:
    """The installed portal (the first one: a test may add others)."""
    portal: Portal = session.scalars(select(Portal).order_by(Portal.id)).first()
    return portal


def count(installed: Installed, launch_id: int, *states: EnrollmentState) -> int:
    with installed.app.app.app_context():
        query = select(func.count(Enrollment.id)).where(
            Enrollment.launch_id == launch_id, Enrollment.state.in_(states)
        )
        return int(db_session().scalar(query) or 0)


def contacts(installed: Installed, n: int = 20) -> list[dict[str, Any]]:
    """``n`` contacts with an e-mail and a last name (each gets the e-mail and the edits)."""
    if len(seeded_contacts(installed)) < 3 * n:
        installed.portal("/seed", "POST", contacts=3 * n, companies=1, deals=0, leads=0)
    found = [c for c in seeded_contacts(installed) if c.get("EMAIL") and c["LAST_NAME"]]
    return [dict(c) for c in found[:n]]


def by_id(installed: Installed) -> dict[int, dict[str, Any]]:
    return {int(c["ID"]): c for c in seeded_contacts(installed)}


def as_person(installed: Installed, method: str, params: dict[str, Any]) -> Any:
    """A REST call by user 1 through an incoming webhook: a person working in the CRM."""
    hook = installed.portal("/webhooks", "POST", user_id=1, scopes=["crm", "task"])
    resp = requests.post(f"{hook['url']}{method}.json", json=params, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def comments_of(installed: Installed, ids: list[int]) -> list[dict[str, Any]]:
    """The timeline comment step's comments on contacts ``ids``."""
    every = installed.portal("/timeline")["comments"]
    return [
        c
        for c in every
        if c["ENTITY_TYPE"] == "contact"
        and int(c["ENTITY_ID"]) in ids
        and c["COMMENT"].startswith("Spring campaign")
    ]


def last_request(installed: Installed) -> int:
    log = installed.emu("GET", f"/requests?member_id={installed.member_id}")
    return int(log[-1]["id"]) if log else 0


def writes(installed: Installed, since: int) -> list[str]:
    """Write methods called (batch commands included) after request ``since``."""
    log = installed.emu("GET", f"/requests?member_id={installed.member_id}")
    methods = [c for r in log if r["id"] > since for c in (r.get("commands") or [r["method"]])]
    return [m for m in methods if not m.endswith((".list", ".get", "batch"))]
