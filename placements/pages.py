"""Pages Bitrix24 opens in its iframe: installer, main page, CRM placements.

Every entry is a cross-site form POST from the user's browser (no CSRF cookie possible); it is
verified server-side and answered with a page that carries a short-lived signed session token.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from marketapp.bitrix.errors import BitrixError
from marketapp.bitrix.payloads import PlacementRequest, parse_placement, request_fields
from marketapp.channel_settings import channel_settings, public_view
from marketapp.config import get_config
from marketapp.db import db_session
from marketapp.errors import AppError
from marketapp.i18n import normalize
from marketapp.lifecycle import registration, verify
from marketapp.lifecycle.entry import open_page
from marketapp.lifecycle.install import NotAdmin, find_portal, install_from_page
from marketapp.lifecycle.manifest import ROBOTS, build_manifest
from marketapp.models import Portal
from marketapp.scenarios.robot import CODE as RUN_SCENARIO
from marketapp.scenarios.robot import scenario_choices
from marketapp.security import (
    PortalSession,
    allow_framing_by,
    issue_session,
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
    from placements.launch_pages import render_launcher

    return render_launcher(portal, session, page)


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
    scenarios = (
        scenario_choices(db_session(), portal, session.language)
        if robot.code == RUN_SCENARIO
        else None
    )
    return _page(
        "pages/robot_settings.html",
        portal,
        session,
        robot=robot,
        values=current if isinstance(current, dict) else {},
        language=session.language,
        scenarios=scenarios,
    )


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
