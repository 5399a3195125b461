"""``POST /events``: Bitrix24 event deliveries (install, update, uninstall)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from handlers.inbound import inbound_fields
from marketapp.db import db_session
from marketapp.lifecycle.install import receive_event

bp = Blueprint("events", __name__)


@bp.post("/events")
def events() -> ResponseReturnValue:
    outcome = receive_event(db_session(), inbound_fields())
    return jsonify(result=outcome)
