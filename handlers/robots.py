"""``POST /robots/<code>``: robot calls from Bitrix24 automation (answered at once).

The application token only names the portal: every employee can read it. The call is stored
and answered without REST traffic; the worker confirms it with Bitrix24 before it can act
(:mod:`marketapp.robot_origin`) and rejects it otherwise.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from marketapp.bitrix.payloads import parse_robot_call, request_fields
from marketapp.db import db_session
from marketapp.errors import AppError
from marketapp.lifecycle.install import find_portal
from marketapp.models import PortalStatus
from marketapp.robots import accept_call
from marketapp.security import reject, tokens_match

bp = Blueprint("robots", __name__)


@bp.post("/robots/<code>")
def robot_call(code: str) -> ResponseReturnValue:
    payload = parse_robot_call(request_fields(request))
    if payload.code != code:
        raise AppError("The robot code does not match the handler URL.", code="invalid_payload")
    session = db_session()
    portal = find_portal(session, payload.auth.member_id)
    if (
        portal is None
        or portal.status is PortalStatus.UNINSTALLED
        or not tokens_match(portal.application_token, payload.auth.application_token)
    ):
        raise reject("robot call with a wrong application_token", member_id=payload.auth.member_id)
    accepted = accept_call(session, portal, payload)
    return jsonify(result="queued" if accepted else "duplicate")
