"""Pages Bitrix24 opens in its iframe: installer, main page, CRM placements.

Every entry is a cross-site form POST from the user's browser (no CSRF cookie possible); it is
verified server-side and answered with a page that carries a short-lived signed session token.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from marketapp.bitrix.errors import BitrixError
from marketapp.bitrix.payloads import PlacementRequest, parse_placement, request_fields
from marketapp.channel_settings import channel_settings, public_view, update_channel_settings
from marketapp.channels.phones import sms_size
from marketapp.config import get_config
from marketapp.db import db_session
from marketapp.errors import AppError
from marketapp.i18n import normalize
from marketapp.lifecycle import registration, verify
from marketapp.lifecycle.entry import open_page
from marketapp.lifecycle.install import NotAdmin, find_portal, install_from_page, sync_portal
from marketapp.lifecycle.manifest import ROBOTS, build_manifest
from marketapp.models import Portal, PortalStatus, SmsMessage
from marketapp.security import (
    PortalSession,
    allow_framing_by,
    issue_session,
    reject,
    session_from_request,
)

bp = Blueprint("pages", __name__, template_folder="templates")
ROBOTS_BY_CODE = {robot.code: robot for robot in ROBOTS}
log = logging.getLogger(__name__)


@bp.route("/", methods=["GET", "POST"])
@bp.post("/install")
def main_page() -> ResponseReturnValue:
    """App URL and installer URL: install while the portal is new, else show the main page."""
    if request.method == "GET":
        return render_template("pages/outside.html")
    page = parse_placement(request_fields(request))
    g.language = normalize(page.lang)
    portal = find_portal(db_session(), page.member_id)
    if request.path == "/install" or portal is None or not portal.installed:
        return _install(page)
    portal, session = open_page(db_session(), page)
    channels = public_view(channel_settings(db_session(), portal)) if session.is_admin else {}
    return _page("pages/main.html", portal, session, manifest=_registered(), config=channels)


@bp.post("/placements/launch")
def launch() -> ResponseReturnValue:
    """A CRM placement (list toolbar, row menu, card toolbar) opened by a user."""
    page = parse_placement(request_fields(request))
    g.language = normalize(page.lang)
    portal, session = open_page(db_session(), page)
    return _page(
        "pages/launch.html",
        portal,
        session,
        placement=page.placement,
        options=page.placement_options,
    )


@bp.post("/placements/robot-settings")
def robot_settings() -> ResponseReturnValue:
    """Bitrix24 opens a robot's settings here with its current values (``USE_PLACEMENT``)."""
    page = parse_placement(request_fields(request))
    g.language = normalize(page.lang)
    portal, session = open_page(db_session(), page)
    options = page.placement_options
    robot = ROBOTS_BY_CODE.get(str(options.get("code", "")))
    if robot is None:
        raise AppError(
            _("This robot does not belong to Smart scenarios."), status=404, code="unknown_robot"
        )
    current = options.get("current_values")
    return _page(
        "pages/robot_settings.html",
        portal,
        session,
        robot=robot,
        values=current if isinstance(current, dict) else {},
        language=session.language,
    )


@bp.post("/api/sms/size")
def sms_preview() -> ResponseReturnValue:
    """Length, encoding and segments of an SMS text (the settings page previews as you type)."""
    current_session()
    data = _json_body()
    text = str(data.get("text", "") if isinstance(data, dict) else "")[:5000]
    size = sms_size(text)
    return jsonify(
        encoding=size.encoding, characters=size.characters, units=size.units, segments=size.segments
    )


@bp.get("/api/settings")
def settings_get() -> ResponseReturnValue:
    portal = _portal_of(current_session(admin=True))
    return jsonify(public_view(channel_settings(db_session(), portal)))


@bp.post("/api/settings")
def settings_post() -> ResponseReturnValue:
    """Admin action: channels, SMS gateway, consent fields (validated; secrets kept if blank)."""
    portal = _portal_of(current_session(admin=True))
    row = update_channel_settings(db_session(), portal, _json_body())
    return jsonify(public_view(row))


@bp.get("/api/sms/outbox")
def sms_outbox() -> ResponseReturnValue:
    """The portal's latest SMS (the development outbox shows here), newest first."""
    portal = _portal_of(current_session(admin=True))
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


@bp.post("/api/registration/sync")
def resync() -> ResponseReturnValue:
    """Admin action: make the portal's registration match the manifest again."""
    session = current_session(admin=True)
    portal = _portal_of(session)
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


@bp.get("/api/session")
def whoami() -> ResponseReturnValue:
    session = current_session()
    return jsonify(
        member_id=session.member_id,
        user_id=session.user_id,
        is_admin=session.is_admin,
        language=session.language,
    )


def _json_body() -> Any:
    """The request's JSON, or None when it is not JSON (nested past the parser's recursion
    limit included: that is bad input, not a server error)."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def current_session(admin: bool = False) -> PortalSession:
    """The verified page session; refuses other portals' ids and non-admins where required."""
    session = session_from_request()
    claimed = request.args.get("member_id") or request.form.get("member_id")
    if claimed and claimed != session.member_id:
        raise reject("session used for another portal", member_id=claimed, status=403)
    _portal_of(session)  # an uninstall ends every session minted before it
    if admin and not session.is_admin:
        raise AppError(_("Only a portal administrator can do this."), status=403, code="forbidden")
    g.language = session.language
    return session


def _portal_of(session: PortalSession) -> Portal:
    """The session's portal, unless it was removed or uninstalled since the session was minted.

    (A primary-key get: the second one in a request comes from the session's identity map.)
    """
    portal = db_session().get(Portal, session.portal_id)
    if portal is None or portal.member_id != session.member_id:
        raise reject("session for a removed portal", member_id=session.member_id)
    if portal.status is PortalStatus.UNINSTALLED or portal.session_epoch != session.epoch:
        raise reject("session of an uninstalled portal", member_id=session.member_id)
    return portal


def _install(page: PlacementRequest) -> ResponseReturnValue:
    try:
        report = install_from_page(db_session(), page)
    except verify.VerificationError as exc:
        log.warning("install not verified", extra={"member_id": page.member_id, "why": str(exc)})
        return _install_failed(page, _("The installation request could not be verified."), 401)
    except NotAdmin:
        return _install_failed(
            page, _("The application is not fully installed: ask an administrator to open it."), 403
        )
    except registration.SyncError as exc:
        return _install_failed(
            page,
            _("Some items could not be registered: %(items)s", items=", ".join(exc.failures)),
            502,
        )
    except BitrixError as exc:
        log.warning("install sync failed", extra={"member_id": page.member_id, "why": str(exc)})
        return _install_failed(
            page, _("Some items could not be registered: %(items)s", items=str(exc.code)), 502
        )
    response = make_response(
        render_template(
            "pages/install.html",
            manifest=_registered(),
            applied=report.applied,
            bx24_js_url=get_config().bx24_js_url,
        )
    )
    return allow_framing_by(response, page.domain)


def _install_failed(page: PlacementRequest, message: str, status: int) -> ResponseReturnValue:
    # No page carries a token: "Try again" asks Bitrix24 to reload the app (BX24.reloadWindow),
    # which posts the installer a fresh form with fresh tokens.
    response = make_response(
        render_template(
            "pages/install_failed.html",
            message=message,
            bx24_js_url=get_config().bx24_js_url,
        ),
        status,
    )
    return allow_framing_by(response, page.domain)


def _page(template: str, portal: Portal, session: PortalSession, **context: Any) -> Response:
    response = make_response(
        render_template(
            template,
            session=session,
            session_token=issue_session(session),
            bx24_js_url=get_config().bx24_js_url,
            **context,
        )
    )
    return allow_framing_by(response, portal.domain)


def _registered() -> dict[str, list[str]]:
    manifest = build_manifest(get_config().public_url)
    return {
        "robots": sorted(manifest.robots),
        "placements": sorted(manifest.placements),
        "events": sorted(manifest.events),
    }
