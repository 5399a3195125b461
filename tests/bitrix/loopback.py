"""A counting fake of the portal and OAuth server on loopback, and worker functions that child
processes (spawned, so they import this module afresh) run against it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Recorder:
    """What the server saw: refresh hits and REST arrival times per portal path."""

    refreshes: int = 0
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_wsgi(rec: Recorder) -> Any:
    @Request.application  # type: ignore[misc]
    def app(request: Request) -> Response:
        path = request.path
        if path == "/oauth/token/":
            return _refresh(rec, request)
        if path == "/count":
            with rec.lock:
                return _json({k: len(v) for k, v in rec.arrivals.items()})
        portal = path.split("/")[1]
        with rec.lock:
            rec.arrivals.setdefault(portal, []).append(time.time())
        body = request.get_json(silent=True) or {}
        if body.get("auth") == "stale-token":
            return _json({"error": "expired_token", "error_description": "expired"}, 401)
        return _json({"result": {"ID": "1"}, "time": {"operating": 0.0}})

    return app


def _refresh(rec: Recorder, request: Request) -> Response:
    with rec.lock:
        rec.refreshes += 1
    time.sleep(0.3)  # a slow OAuth server widens the race window
    if request.form.get("refresh_token") != "refresh-1" or not request.form.get("client_secret"):
        return _json({"error": "invalid_grant", "error_description": "Invalid refresh token"}, 400)
    return _json(
        {
            "access_token": "fresh-token",
            "refresh_token": "refresh-2",
            "expires_in": 3600,
            "user_id": 1,
            "domain": "127.0.0.1",
            "member_id": "m1",
        }  # fmt: skip
    )


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def start(rec: Recorder) -> tuple[BaseWSGIServer, threading.Thread]:
    server = make_server("127.0.0.1", 0, make_wsgi(rec), threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


# --- worker processes ------------------------------------------------------------------


def _app(config: dict[str, Any]) -> Any:
    from marketapp import create_app

    return create_app(config)


def refresh_worker(config: dict[str, Any], portal_id: int) -> Any:
    """Call ``user.current`` through the real factory with a stale stored token."""
    from marketapp.bitrix.client import client_for
    from marketapp.db import db_session
    from marketapp.models import Portal

    app = _app(config)
    with app.app_context():
        portal = db_session().get(Portal, portal_id)
        assert portal is not None
        return client_for(portal).call("user.current").result


def limiter_worker(
    config: dict[str, Any], portal_id: int, calls: int, redis_prefix: str, after: int
) -> list[float]:
    """Make ``calls`` calls for a portal through the shared limiter; return each limiter wait.

    With ``after`` > 0 the worker first waits until the server has seen that many requests in
    total, so that it runs while another portal is saturated.
    """
    import requests

    from marketapp.bitrix.client import PortalClient
    from marketapp.bitrix.http import shared_session
    from marketapp.bitrix.limiter import (
        Bucket,
        DatabaseBackend,
        PortalLimiter,
        RedisBackend,
        redis_client,
    )
    from marketapp.bitrix.oauth import OAuthRefresher, PortalTokens
    from marketapp.db import db_session, get_db
    from marketapp.models import Portal

    app = _app(config)
    base = config["_server"]
    while after and sum(requests.get(base + "/count", timeout=5).json().values()) < after:
        time.sleep(0.01)
    with app.app_context():
        portal = db_session().get(Portal, portal_id)
        assert portal is not None
        backend: Any = (
            RedisBackend(redis_client(config["redis_url"]), redis_prefix)
            if redis_prefix
            else DatabaseBackend(get_db().sessions)
        )
        limiter = PortalLimiter(
            backend, portal.id, Bucket(portal.rate_burst, portal.rate_per_second)
        )
        waits: list[float] = []

        class Recording:
            def acquire(self) -> float:
                waits.append(limiter.acquire())
                return waits[-1]

            def __getattr__(self, name: str) -> Any:
                return getattr(limiter, name)

        refresher = OAuthRefresher("id", "secret", ["127.0.0.1"], shared_session())
        tokens = PortalTokens(get_db().sessions, portal.id, refresher)
        client = PortalClient(tokens, Recording(), shared_session(), allow_insecure_loopback=True)
        for i in range(calls):
            client.call("crm.contact.get", {"id": i})
        return waits
