"""Shared fixtures: an isolated app per test, its client, CLI runner and database session.

The backend is SQLite unless ``MARKETAPP_TEST_DATABASE_URL`` names a PostgreSQL database
(``make test`` sets it in CI). Network access is refused except to loopback.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from marketapp import create_app
from marketapp.db import get_db
from marketapp.models import Base

PG_URL = os.environ.get("MARKETAPP_TEST_DATABASE_URL", "")
PG_SKIP = "PostgreSQL not configured: set MARKETAPP_TEST_DATABASE_URL (CI sets it)"


def pytest_report_header() -> str:
    return f"marketapp database backend: {'postgresql' if PG_URL else 'sqlite'}"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's MARKETAPP_* variables must not leak into tests."""
    for key in list(os.environ):
        if key.startswith("MARKETAPP_") and not key.startswith("MARKETAPP_TEST_"):
            monkeypatch.delenv(key)


_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConnectionRefusedError(f"tests may not reach the network ({host})")
    return _real_connect(self, address)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True, scope="session")
def _refuse_network() -> Iterator[None]:
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    """Create the models' tables once per session in PostgreSQL."""
    if not PG_URL:
        yield ""
        return
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        Base.metadata.create_all(conn)
    engine.dispose()
    yield PG_URL


@pytest.fixture
def database_url(tmp_path: Path, pg_schema: str) -> Iterator[str]:
    if not pg_schema:
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    yield pg_schema
    engine = create_engine(pg_schema)
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


def make_app(tmp_path: Path, database_url: str, **overrides: Any) -> Flask:
    config: dict[str, Any] = {
        "instance_path": tmp_path / "instance",
        "database_url": database_url,
        "jobs_immediate": True,
        "testing": True,
        "allow_insecure_loopback": True,
        "client_secret": "test-client-secret",
    }
    config.update(overrides)
    app = create_app(config)
    if database_url.startswith("sqlite"):
        with app.app_context():
            Base.metadata.create_all(get_db().engine)
    return app


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    app = make_app(tmp_path, database_url)
    yield app
    with app.app_context():
        get_db().engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def db(app: Flask) -> Iterator[Session]:
    """A session inside an app context, for tests that work below the HTTP layer."""
    from marketapp.db import db_session

    with app.app_context():
        yield db_session()
