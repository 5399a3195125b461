"""The JSON API the app's pages call (``/api/*``), authenticated by the page session token.

Each view is ``@page_api(...)``: it receives the verified session and its portal, and reads or
changes only that portal's data (:func:`placements.web.tenant_get` for lookups by id).
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from marketapp.bitrix.errors import BitrixError
from marketapp.channel_settings import channel_settings, public_view, update_channel_settings
from marketapp.channels.phones import sms_size
from marketapp.db import db_session
from marketapp.errors import AppError
from marketapp.lifecycle import registration
from marketapp.lifecycle.install import sync_portal
from marketapp.models import Portal, SmsMessage
from marketapp.security import PortalSession
from placements.web import json_body, page_api

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)


@bp.post("/sms/size")
@page_api()
def sms_preview(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    """Length, encoding and segments of an SMS text (the settings page previews as you type)."""
    data = json_body()
    text = str(data.get("text", "") if isinstance(data, dict) else "")[:5000]
    size = sms_size(text)
    return jsonify(
        encoding=size.encoding, characters=size.characters, units=size.units, segments=size.segments
    )


@bp.get("/settings")
@page_api(admin=True)
def settings_get(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    return jsonify(public_view(channel_settings(db_session(), portal)))


@bp.post("/settings")
@page_api(admin=True)
def settings_post(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    """Admin action: channels, SMS gateway, consent fields (validated; secrets kept if blank)."""
    row = update_channel_settings(db_session(), portal, json_body())
    return jsonify(public_view(row))


@bp.get("/sms/outbox")
@page_api(admin=True)
def sms_outbox(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    """The portal's latest SMS (the development outbox shows here), newest first."""
    rows = db_session().scalars(
        select(SmsMessage)
        .where(SmsMessage.portal_id == portal.id)
        .order_by(SmsMessage.id.desc())
        .limit(50)
    )
    return jsonify(
        [
            {
                "phone": m.phone,
                "text": m.text,
                "segments": m.segments,
                "status": m.status,
                "provider": m.provider,
                "record": f"{m.entity_type}_{m.entity_id}",
                "created_at": m.created_at.isoformat(),
            }
            for m in rows
        ]
    )


@bp.post("/registration/sync")
@page_api(admin=True)
def resync(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    """Admin action: make the portal's registration match the manifest again."""
    try:
        report = sync_portal(db_session(), portal)
    except registration.SyncError as exc:
        raise AppError(
            _("Some items could not be registered: %(items)s", items=", ".join(exc.failures)),
            status=502,
            code="sync_incomplete",
        ) from exc
    except BitrixError as exc:  # not even the current registrations could be read
        log.warning("sync failed", extra={"member_id": portal.member_id, "why": str(exc)})
        raise AppError(
            _("Some items could not be registered: %(items)s", items=str(exc.code)),
            status=502,
            code="sync_incomplete",
        ) from exc
    return jsonify(applied=report.applied)


@bp.get("/session")
@page_api()
def whoami(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    return jsonify(
        member_id=session.member_id,
        user_id=session.user_id,
        is_admin=session.is_admin,
        language=session.language,
    )
