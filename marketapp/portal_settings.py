"""A portal's channel settings row, created with defaults on first use."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from marketapp.models import Portal, PortalSettings


def portal_settings(session: Session, portal: Portal) -> PortalSettings:
    """The portal's settings; a missing row is created (defaults apply on insert)."""
    query = select(PortalSettings).where(PortalSettings.portal_id == portal.id)
    found = session.scalar(query)
    if found is not None:
        return found
    session.add(PortalSettings(portal_id=portal.id))
    try:
        session.commit()
    except IntegrityError:  # created by another worker meanwhile
        session.rollback()
    row = session.scalar(query)
    assert row is not None
    return row
