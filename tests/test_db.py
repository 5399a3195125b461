from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from marketapp.db import db_session
from marketapp.models import Portal, PortalStatus
from tests.conftest import make_app
from tests.support import add_portal


def test_tokens_are_not_stored_as_plain_text(db: Session) -> None:
    add_portal(db)
    raw = db.execute(
        text("SELECT access_token, refresh_token, application_token FROM portals")
    ).one()
    for column in raw:
        assert "plain" not in column
        assert column.startswith("gAAAA")  # a Fernet token
    db.expire_all()
    portal = db.scalars(select(Portal)).one()
    assert portal.access_token == "plain-access-token-123"
    assert portal.status is PortalStatus.ACTIVE
    assert "plain" not in repr(portal)


def test_key_rotation_keeps_old_tokens_readable(tmp_path: Path, database_url: str) -> None:
    old_key = Fernet.generate_key().decode()
    app = make_app(tmp_path / "a", database_url, encryption_keys=old_key)
    with app.app_context():
        add_portal(db_session())
    rotated = make_app(
        tmp_path / "b", database_url, encryption_keys=f"{Fernet.generate_key().decode()},{old_key}"
    )
    with rotated.app_context():
        assert db_session().scalars(select(Portal)).one().refresh_token == "plain-refresh-token-456"


def test_unknown_key_fails_loudly_without_leaking(tmp_path: Path, database_url: str) -> None:
    app = make_app(tmp_path / "a", database_url)
    with app.app_context():
        add_portal(db_session())
    other = make_app(tmp_path / "b", database_url)
    with other.app_context(), pytest.raises(RuntimeError, match="cannot be decrypted") as info:
        db_session().scalars(select(Portal)).one()
    assert "plain" not in str(info.value)


def test_each_app_context_gets_its_own_session(app: Flask) -> None:
    with app.app_context():
        first = db_session()
        assert db_session() is first
    with app.app_context():
        assert db_session() is not first
