"""The web layer: tenant lookups filter by portal and answer 404 for anything else."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from marketapp.errors import AppError
from marketapp.models import SmsMessage
from placements.web import tenant_get
from tests.support import add_portal, add_sms


def test_tenant_get_finds_only_the_portals_own_rows(app: Flask, db: Session) -> None:
    mine, theirs = add_portal(db, "a" * 32), add_portal(db, "b" * 32)
    add_sms(db, theirs.id, "k", "sent")
    add_sms(db, mine.id, "k", "sent")
    db.commit()
    own = db.query(SmsMessage).filter_by(portal_id=mine.id).one()
    other = db.query(SmsMessage).filter_by(portal_id=theirs.id).one()
    with app.test_request_context():
        assert tenant_get(SmsMessage, own.id, mine) is own
        assert tenant_get(SmsMessage, str(own.id), mine) is own
        for ident in (other.id, 10**6, "x", None, 2**70, "1e3"):
            with pytest.raises(AppError) as refused:
                tenant_get(SmsMessage, ident, mine)
            assert refused.value.status == 404
