"""Single-flight refresh and the shared limiter under real concurrency (threads and processes)
against a counting loopback server; the limiter is checked from the server's arrival times."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from marketapp.bitrix import errors
from marketapp.bitrix.client import client_for
from marketapp.db import db_session
from marketapp.models import Portal, PortalStatus

from . import loopback

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def server() -> Iterator[tuple[str, loopback.Recorder]]:
    rec = loopback.Recorder()
    srv, thread = loopback.start(rec)
    yield f"http://127.0.0.1:{srv.server_port}", rec
    srv.shutdown()
    thread.join()


@pytest.fixture
def config(tmp_path: Path, database_url: str, server: tuple[str, Any]) -> dict[str, Any]:
    base, _ = server
    return {
        "instance_path": tmp_path / "instance",
        "database_url": database_url,
        "jobs_immediate": True,
        "testing": True,
        "allow_insecure_loopback": True,
        "client_secret": "test-client-secret",
        "oauth_hosts": base.removeprefix("http://"),
        "_server": base,
    }


@pytest.fixture
def b24app(config: dict[str, Any]) -> Iterator[Flask]:
    from marketapp import create_app
    from marketapp.db import get_db
    from marketapp.models import Base

    app = create_app(_settings(config))
    if config["database_url"].startswith("sqlite"):
        with app.app_context():
            Base.metadata.create_all(get_db().engine)
    yield app
    with app.app_context():
        from marketapp.db import get_db

        get_db().engine.dispose()


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def add_portal(app: Flask, base: str, name: str, burst: int = 50, rate: int = 2) -> int:
    with app.app_context():
        session = db_session()
        portal = Portal(
            member_id=f"member-{name}",
            domain="127.0.0.1",
            client_endpoint=f"{base}/{name}/rest/",
            server_endpoint=f"{base}/rest/",
            access_token="stale-token",
            refresh_token="refresh-1",
            rate_burst=burst,
            rate_per_second=rate,
        )
        session.add(portal)
        session.commit()
        return portal.id


def stored(app: Flask, portal_id: int) -> Portal:
    with app.app_context():
        portal = db_session().get(Portal, portal_id)
        assert portal is not None
        return portal


def test_16_threads_refresh_once(b24app: Flask, server: tuple[str, loopback.Recorder]) -> None:
    base, rec = server
    portal_id = add_portal(b24app, base, "p1")

    def work(_: int) -> Any:
        with b24app.app_context():
            portal = db_session().get(Portal, portal_id)
            assert portal is not None
            db_session().commit()  # as job code does: no transaction open across REST calls
            return client_for(portal).call("user.current").result

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(work, range(16)))
    assert results == [{"ID": "1"}] * 16
    assert rec.refreshes == 1
    portal = stored(b24app, portal_id)
    assert (portal.access_token, portal.refresh_token) == ("fresh-token", "refresh-2")
    assert portal.expires_at is not None and portal.token_user_id == 1


def test_4_processes_refresh_once(
    b24app: Flask, config: dict[str, Any], server: tuple[str, loopback.Recorder]
) -> None:
    base, rec = server
    portal_id = add_portal(b24app, base, "p1")
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(loopback.refresh_worker, _child(config), portal_id) for _ in range(4)
        ]
        results = [f.result(timeout=120) for f in futures]
    assert results == [{"ID": "1"}] * 4
    assert rec.refreshes == 1
    assert stored(b24app, portal_id).access_token == "fresh-token"


def test_invalid_grant_marks_needs_reauth_and_stops(
    b24app: Flask, server: tuple[str, loopback.Recorder]
) -> None:
    base, rec = server
    portal_id = add_portal(b24app, base, "p1")
    with b24app.app_context():
        portal = db_session().get(Portal, portal_id)
        assert portal is not None
        portal.refresh_token = "already-used"
        db_session().commit()
        with pytest.raises(errors.NeedsReauth):
            client_for(portal).call("user.current")
    assert stored(b24app, portal_id).status == PortalStatus.NEEDS_REAUTH
    with b24app.app_context():
        portal = db_session().get(Portal, portal_id)
        assert portal is not None
        with pytest.raises(errors.PortalUnavailable):  # jobs stop; no further refresh attempts
            client_for(portal).call("user.current")
    assert rec.refreshes == 1


def test_oauth_host_outside_allow_list_never_gets_the_secret(
    b24app: Flask, server: tuple[str, loopback.Recorder]
) -> None:
    base, rec = server
    portal_id = add_portal(b24app, base, "p1")
    with b24app.app_context():
        portal = db_session().get(Portal, portal_id)
        assert portal is not None
        portal.server_endpoint = "http://localhost:1/rest/"
        db_session().commit()
        with pytest.raises(errors.ConfigError, match="allow-list"):
            client_for(portal).call("user.current")
    assert rec.refreshes == 0


def _child(config: dict[str, Any]) -> dict[str, Any]:
    # Children get the same settings; "_server" is only for workers.
    return dict(config)


def replay_bucket(arrivals: list[float], burst: int, rate: float) -> float:
    """Bitrix24's leaky bucket over server-side arrivals; returns the highest level seen.

    A request arriving while the level is above ``burst`` would have been refused (503).
    """
    level, last, highest = 0.0, None, 0.0
    for t in sorted(arrivals):
        if last is not None:
            level = max(0.0, level - (t - last) * rate)
        assert level <= burst, f"bucket overflow: level {level:.2f} > {burst}"
        level += 1
        highest = max(highest, level)
        last = t
    return highest


@pytest.fixture(params=["database", "redis"])
def limiter_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        try:
            redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
        except redis.RedisError:
            pytest.skip(
                "Redis not reachable at 127.0.0.1:6379: the Redis limiter backend is untested"
            )
        return f"test-{uuid.uuid4().hex}"
    return ""


def test_limiter_4_processes_never_overflow_and_portals_are_independent(
    b24app: Flask,
    config: dict[str, Any],
    server: tuple[str, loopback.Recorder],
    limiter_backend: str,
) -> None:
    base, rec = server
    # Scaled up so the test takes seconds: burst 10, 20/s (client capacity 8).
    busy = add_portal(b24app, base, "busy", burst=10, rate=20)
    quiet = add_portal(b24app, base, "quiet", burst=10, rate=20)
    with b24app.app_context():  # tokens are valid here; the limiter is under test
        for pid in (busy, quiet):
            portal = db_session().get(Portal, pid)
            assert portal is not None
            portal.access_token = "good-token"
        db_session().commit()
    child = {**_child(config), "redis_url": REDIS_URL if limiter_backend else ""}
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        busy_runs = [
            pool.submit(loopback.limiter_worker, child, busy, 15, limiter_backend, 0)
            for _ in range(3)
        ]
        # The quiet portal starts once the busy one is well past its burst.
        quiet_run = pool.submit(loopback.limiter_worker, child, quiet, 6, limiter_backend, 20)
        busy_waits = [w for f in busy_runs for w in f.result(timeout=120)]
        quiet_waits = quiet_run.result(timeout=120)
    highest = replay_bucket(rec.arrivals["busy"], burst=10, rate=20)
    replay_bucket(rec.arrivals["quiet"], burst=10, rate=20)
    assert len(rec.arrivals["busy"]) == 45 and len(rec.arrivals["quiet"]) == 6
    assert max(busy_waits) > 0  # the busy portal was throttled...
    assert quiet_waits == [0.0] * 6  # ...and the quiet one never waited for it
    print(f"limiter[{limiter_backend or 'database'}]: highest server-side level {highest:.2f}/10")
