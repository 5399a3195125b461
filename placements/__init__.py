"""Blueprints rendered inside Bitrix24 (iframes and sliders)."""

from flask import Flask


def register(app: Flask) -> None:
    """Placements register here as they are built."""
