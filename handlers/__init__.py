"""Blueprints that Bitrix24 (and load balancers) call server-to-server."""

from flask import Flask
from flask.typing import ResponseReturnValue

from marketapp.bitrix.payloads import PayloadError
from marketapp.errors import error_response


def register(app: Flask) -> None:
    from handlers import events, health, robots, unsubscribe

    app.register_blueprint(health.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(robots.bp)
    app.register_blueprint(unsubscribe.bp)

    @app.errorhandler(PayloadError)
    def _bad_payload(exc: PayloadError) -> ResponseReturnValue:
        return error_response(400, "invalid_payload", str(exc))
