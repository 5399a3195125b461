"""Smart Scenarios for Bitrix24."""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the application; ``overrides`` replace configuration read from ``MARKETAPP_*``."""
    from marketapp import db, errors, i18n, jobs, logging
    from marketapp.config import load_config

    config = load_config(overrides)
    logging.configure(config.log_level)
    app = Flask(
        __name__,
        instance_path=str(config.instance_path),
        static_folder="../static",
        template_folder="templates",
    )
    app.config.update(
        SECRET_KEY=config.secret_key.get_secret_value(),
        TESTING=config.testing,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    app.extensions["marketapp.settings"] = config
    db.init_app(app, config.sqlalchemy_url, config.fernet_keys)
    jobs.init_app(app, config)
    errors.init_app(app)
    i18n.init_app(app)

    from handlers import register as register_handlers
    from placements import register as register_placements

    register_handlers(app)
    register_placements(app)
    return app
