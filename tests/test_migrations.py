"""`marketapp db upgrade` from an empty database reaches exactly the models' schema."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from marketapp.cli import main
from marketapp.migrate import alembic_config, upgrade
from marketapp.models import Base
from tests.conftest import PG_SKIP, PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    if not PG_URL:
        pytest.skip(PG_SKIP)
    schema = f"mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_upgrade_from_empty_matches_models(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []
    assert set(Base.metadata.tables) <= set(inspect(empty_engine).get_table_names())


def test_upgrade_twice_is_a_no_op(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is not None


def test_db_upgrade_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETAPP_INSTANCE_PATH", str(tmp_path))
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (
        "portals"
        in inspect(create_engine(f"sqlite:///{tmp_path / 'marketapp.db'}")).get_table_names()
    )
    assert os.path.exists(tmp_path / "secret_key")


def test_percent_encoded_password_reaches_alembic() -> None:
    engine = create_engine("postgresql+psycopg://app:p%40ss@127.0.0.1:1/db")  # never connects
    cfg = alembic_config(engine)
    assert cfg.get_main_option("sqlalchemy.url") == "postgresql+psycopg://app:p%40ss@127.0.0.1:1/db"
