"""Database engine, one session per app context (a request or a job), and the declarative base."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, current_app, g
from sqlalchemy import DateTime, Enum, ForeignKey, Integer, String, create_engine, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class TenantMixin:
    """Every tenant-owned row carries its portal; queries must filter on it."""

    portal_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("portals.id", ondelete="CASCADE"), index=True, nullable=False
    )


def enum_column(kind: type[enum.Enum], length: int = 32) -> Enum:
    """An enum stored as its string values (portable, readable in SQL, no native type)."""
    return Enum(
        kind, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


class Encrypted(TypeDecorator[str]):
    """A string stored Fernet-encrypted with the app's keys (the first key encrypts)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _cipher().encrypt(value.encode()).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        try:
            return _cipher().decrypt(value.encode()).decode()
        except InvalidToken as exc:  # wrong or rotated-away key: fail loudly, never leak
            raise RuntimeError(
                "stored secret cannot be decrypted with the configured keys"
            ) from exc


def _cipher() -> MultiFernet:
    cipher: MultiFernet = current_app.extensions["marketapp.cipher"]
    return cipher


class Database:
    """Engine and session factory for one application."""

    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(bind=self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the web and worker processes read while one writes; FKs make CASCADE work.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def init_app(app: Flask, url: str, keys: list[str]) -> Database:
    database = Database(url)
    app.extensions["marketapp.db"] = database
    app.extensions["marketapp.cipher"] = MultiFernet([Fernet(k) for k in keys])
    app.teardown_appcontext(_close_session)
    return database


def get_db() -> Database:
    database: Database = current_app.extensions["marketapp.db"]
    return database


def db_session() -> Session:
    """The session of the current app context (one per request, one per job)."""
    if "db_session" not in g:
        g.db_session = get_db().sessions()
    session: Session = g.db_session
    return session


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
