"""``POST /events``: Bitrix24 event deliveries (install, update, uninstall)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from marketapp.bitrix.payloads import request_fields
from marketapp.db import db_session
from marketapp.lifecycle.install import receive_event

bp = Blueprint("events", __name__)


@bp.post("/events")
def events() -> ResponseReturnValue:
    outcome = receive_event(db_session(), request_fields(request))
    return jsonify(result=outcome)
