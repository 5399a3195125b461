"""Blueprints that Bitrix24 (and load balancers) call server-to-server."""

from flask import Flask


def register(app: Flask) -> None:
    from handlers import health

    app.register_blueprint(health.bp)
