"""Errors answered as JSON or HTML by what the caller accepts; never a stack trace."""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, Response, jsonify, render_template_string, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{{ code }} {{ name }}</title>
<link rel="stylesheet" href="{{ url_for('static', filename='app.css') }}"></head>
<body class="error-page"><main><h1>{{ code }} {{ name }}</h1><p>{{ message }}</p></main>
</body></html>"""


class AppError(Exception):
    """An expected failure with a message safe to show to the caller."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


# Blueprints called by machines (Bitrix24, load balancers, page scripts) always get JSON,
# also for their URLs that match no route (a robot code with a slash: 404).
JSON_BLUEPRINTS = {"events", "robots", "health"}
JSON_PATHS = ("/api/", "/robots/")


def wants_json() -> bool:
    if (
        request.is_json
        or request.blueprint in JSON_BLUEPRINTS
        or request.path.startswith(JSON_PATHS)
    ):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and not request.accept_mimetypes.accept_html


def error_response(status: int, code: str, message: str) -> tuple[Response | str, int]:
    if wants_json():
        return jsonify(error=code, error_description=message), status
    name = _reason(status)
    return render_template_string(_PAGE, code=status, name=name, message=message), status


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def init_app(app: Flask) -> None:
    @app.errorhandler(AppError)
    def _app_error(exc: AppError) -> tuple[Response | str, int]:
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int]:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        if status == 413:  # Werkzeug's text is English; this one is in the user's language
            return error_response(status, code, _("The request is too large."))
        return error_response(status, code, exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response | str, int]:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", InternalServerError.description)
