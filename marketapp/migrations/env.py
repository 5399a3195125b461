"""Alembic environment: runs on the connection or URL that marketapp.migrate passes in."""

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from marketapp.db import Encrypted
from marketapp.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run_on(conn)


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _render_item(type_, obj, autogen_context):  # type: ignore[no-untyped-def]
    # Encrypted columns are plain strings in the schema; keep migrations free of app imports.
    if type_ == "type" and isinstance(obj, Encrypted):
        return f"sa.String(length={getattr(obj.impl_instance, 'length', None)})"
    return False


run()
