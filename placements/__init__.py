"""Blueprints rendered inside Bitrix24 (iframes and sliders)."""

from flask import Flask


def register(app: Flask) -> None:
    from placements import api, launch_api, launch_pages, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(launch_pages.bp)
    app.register_blueprint(launch_api.bp)
