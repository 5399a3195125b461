"""Access to the current app's settings."""

from __future__ import annotations

from flask import current_app

from marketapp.config import Settings


def get_settings() -> Settings:
    settings: Settings = current_app.extensions["marketapp.settings"]
    return settings
