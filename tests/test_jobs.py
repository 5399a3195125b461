from pathlib import Path

import pytest
import redis
from flask import Flask, g
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.jobs import enqueue, get_jobs, job
from marketapp.models import Portal
from tests.conftest import make_app
from tests.support import add_portal

runs: list[tuple[str, bool]] = []


@job()
def record_run(label: str) -> None:
    """Test job: notes that it ran, and whether it had an app context and a session."""
    runs.append((label, "db_session" not in g and db_session() is not None))


@job()
def count_portals(expected: int) -> None:
    assert len(db_session().scalars(select(Portal)).all()) == expected
    runs.append(("counted", True))


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    runs.clear()


def test_job_runs_after_commit(app: Flask) -> None:
    with app.app_context():
        enqueue(record_run, "committed")
        assert runs == []
        db_session().commit()
    assert runs == [("committed", True)]


def test_job_in_rolled_back_transaction_never_runs(app: Flask) -> None:
    with app.app_context():
        session = db_session()
        add_portal(session)
        session.add(Portal(member_id="b" * 32, domain="x", client_endpoint="", server_endpoint=""))
        enqueue(record_run, "rolled back")
        session.rollback()
        session.commit()
    assert runs == []


def test_job_enqueued_in_failing_request_never_runs(app: Flask) -> None:
    def failing_view() -> str:
        session = db_session()
        session.add(Portal(member_id="c" * 32, domain="x", client_endpoint="", server_endpoint=""))
        enqueue(record_run, "request")
        raise RuntimeError("boom after enqueue")

    app.add_url_rule("/_test/fail", view_func=failing_view, methods=["POST"])
    resp = app.test_client().post("/_test/fail")
    assert resp.status_code == 500
    assert b"boom" not in resp.data
    with app.app_context():
        db_session().commit()  # a later commit on a fresh session must not send it either
        assert db_session().scalars(select(Portal)).all() == []
    assert runs == []


def test_job_sees_the_committed_rows(app: Flask) -> None:
    with app.app_context():
        add_portal(db_session())  # commits
        enqueue(count_portals, 1)
        db_session().commit()
    assert runs == [("counted", True)]


def test_unregistered_function_is_refused(app: Flask) -> None:
    with app.app_context(), pytest.raises(KeyError, match="not a registered job"):
        enqueue(print, "x")


def test_sqlite_queue_holds_jobs_until_a_worker_runs_them(
    tmp_path: Path, database_url: str
) -> None:
    app = make_app(tmp_path, database_url, jobs_immediate=False)
    with app.app_context():
        huey = get_jobs().huey
        enqueue(record_run, "queued")
        assert huey.pending_count() == 0
        db_session().commit()
        assert huey.pending_count() == 1
    task = huey.dequeue()
    huey.execute(task)
    assert runs == [("queued", True)]
    assert (tmp_path / "instance" / "jobs.db").exists()


def test_redis_queue(tmp_path: Path, database_url: str) -> None:
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/15").ping()
    except redis.RedisError:
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    app = make_app(
        tmp_path, database_url, jobs_immediate=False, redis_url="redis://127.0.0.1:6379/15"
    )
    with app.app_context():
        huey = get_jobs().huey
        huey.flush()
        enqueue(record_run, "redis")
        db_session().commit()
        assert huey.pending_count() == 1
    huey.execute(huey.dequeue())
    assert runs == [("redis", True)]
    huey.flush()
