"""A consent write left pending (its job gave up: the portal was unavailable) is written to the
CRM by the sweeper once the portal works, against the emulator; a recent one, one of a portal
that does not work, and one already written are left alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from marketapp import consent
from marketapp.db import db_session
from marketapp.models import Portal, PortalStatus, Suppression
from tests.e2e.harness import Installed
from tests.support import seeded_contacts

pytestmark = pytest.mark.e2e


def in_app(inst: Installed, fn: Any) -> Any:
    with inst.app.app.app_context():
        try:
            return fn(db_session())
        finally:
            db_session().close()


def pending(inst: Installed, contact_id: int, age: timedelta) -> int:
    def add(session: Any) -> int:
        portal = session.scalars(select(Portal)).one()
        row = Suppression(
            portal_id=portal.id,
            entity_type="CONTACT",
            entity_id=contact_id,
            channel="sms",
            source="page",
            crm_field="UF_CRM_NO_SMS",
            crm_state="pending",
        )
        session.add(row)
        session.flush()
        row.updated_at = datetime.now(UTC) - age  # as the job that gave up left it
        session.commit()
        return int(row.id)

    found: int = in_app(inst, add)
    return found


def crm_states(inst: Installed) -> dict[int, str]:
    def read(session: Any) -> dict[int, str]:
        return {r.entity_id: r.crm_state for r in session.scalars(select(Suppression))}

    found: dict[int, str] = in_app(inst, read)
    return found


def opted_out(inst: Installed, contact_id: int) -> str:
    rows = inst.portal("/crm/contact")
    return str(next(c for c in rows if int(c["ID"]) == contact_id)["UF_CRM_NO_SMS"])


def sweep(inst: Installed) -> None:
    in_app(inst, lambda _s: consent.sweep_pending_consent())
    inst.settle()


def test_a_pending_consent_write_is_made_by_the_sweeper(installed: Installed) -> None:
    installed.portal("/seed", "POST", n=10)
    old, recent = [int(c["ID"]) for c in seeded_contacts(installed) if c["UF_CRM_NO_SMS"] == "N"][
        :2
    ]
    pending(installed, old, timedelta(hours=1))
    pending(installed, recent, timedelta(minutes=1))  # its own job may still be on it

    def portal_status(status: PortalStatus) -> None:
        def apply(session: Any) -> None:
            session.scalars(select(Portal)).one().status = status
            session.commit()

        in_app(installed, apply)

    portal_status(PortalStatus.SUSPENDED)
    sweep(installed)
    assert crm_states(installed) == {old: "pending", recent: "pending"}
    portal_status(PortalStatus.ACTIVE)
    sweep(installed)
    assert crm_states(installed) == {old: "written", recent: "pending"}
    assert opted_out(installed, old) == "Y" and opted_out(installed, recent) == "N"
