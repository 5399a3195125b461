"""Blueprints rendered inside Bitrix24 (iframes and sliders)."""

from flask import Flask


def register(app: Flask) -> None:
    from placements import pages

    app.register_blueprint(pages.bp)
