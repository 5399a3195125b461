"""``create_devportal``: one Flask app playing every portal, the OAuth and the queue server.

Requests are routed by their Host header: ``127.0.0.N:<port>`` (N ≥ 2) is portal N-1, anything else
is the OAuth/inspection host.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import fields
from typing import Any

from flask import Flask, Response, abort, request

from marketapp.devportal import faults, inspect, oauth, rest, shell
from marketapp.devportal import methods as _methods  # noqa: F401  (registers every method)
from marketapp.devportal.clock import Clock
from marketapp.devportal.config import DevportalConfig
from marketapp.devportal.state import Emulator, Portal


def create_devportal(
    config: DevportalConfig | dict[str, Any] | None = None, clock: Clock | None = None
) -> Flask:
    """Build the emulator app; its state is ``app.extensions["devportal"]`` (an ``Emulator``)."""
    if not isinstance(config, DevportalConfig):
        known = {f.name for f in fields(DevportalConfig)}
        config = DevportalConfig(**{k: v for k, v in (config or {}).items() if k in known})
    emu = Emulator(config, clock)
    app = Flask(__name__, static_folder=None)
    app.extensions["devportal"] = emu
    app.register_blueprint(inspect.bp)
    app.register_blueprint(shell.bp)

    def _portal() -> Portal | None:
        return emu.portal_by_host(request.host)

    @app.route("/rest/<path:name>", methods=["GET", "POST"])
    def rest_call(name: str) -> Response:
        portal = _portal()
        if portal is None:
            if name.removesuffix(".json") == "app.info":
                return oauth.app_info(emu, request)
            return rest.json_response(
                {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}, 404
            )
        return _guarded(portal, name, None)

    @app.route("/rest/<int:user_id>/<code>/<path:name>", methods=["GET", "POST"])
    def webhook_call(user_id: int, code: str, name: str) -> Response:
        portal = _portal()
        if portal is None:
            abort(404)
        return _guarded(portal, name, (user_id, code))

    def _guarded(portal: Portal, name: str, hook: tuple[int, str] | None) -> Response:
        try:
            return rest.handle(emu, portal, request, name, hook)
        except faults.DropConnection:
            _drop_connection()
            return Response(status=500)

    @app.route("/oauth/token/", methods=["GET", "POST"])
    def token() -> Response:
        return oauth.token_endpoint(emu, request)

    @app.before_request
    def _inspection_on_server_host_only() -> None:
        if request.path.startswith("/_emulator/") and _portal() is not None:
            abort(404)

    return app


def _drop_connection() -> None:
    """Close the client socket without an answer (werkzeug's server exposes it in the environ)."""
    sock = request.environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
