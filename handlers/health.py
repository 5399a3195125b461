"""``GET /healthz``: the database and the job queue answer."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from marketapp.db import db_session
from marketapp.jobs import get_jobs

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    checks: dict[str, str] = {}
    try:
        db_session().execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:
        log.exception("health: database check failed")
        checks["database"] = "error"
    try:
        get_jobs().pending_count()
        checks["queue"] = "ok"
    except Exception:
        log.exception("health: queue check failed")
        checks["queue"] = "error"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "error", checks=checks), 200 if healthy else 503
