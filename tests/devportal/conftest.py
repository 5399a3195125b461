"""Fixtures: one emulator server per module (reset per test), a delivery receiver, helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from flask import Flask, request
from werkzeug.serving import make_server

from marketapp.devportal import DevportalServer, FakeClock
from marketapp.devportal.phpform import parse


@dataclass
class Receiver:
    """A tiny HTTP server that records every POST it gets (events, robot calls, SMS, pages)."""

    url: str
    hits: list[dict[str, Any]] = field(default_factory=list)
    page: str = "<html><body>ok</body></html>"

    def last(self, path: str | None = None) -> dict[str, Any]:
        hits = [h for h in self.hits if path is None or h["path"] == path]
        return hits[-1]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    app = Flask("receiver")
    rec = Receiver(url="")

    @app.route("/<path:path>", methods=["GET", "POST"])
    def catch(path: str) -> str:
        pairs = parse_qsl(request.get_data(as_text=True), keep_blank_values=True)
        rec.hits.append(
            {
                "path": "/" + path,
                "query": dict(request.args),
                "pairs": pairs,
                "form": parse(pairs),
                "content_type": request.mimetype,
            }
        )
        return rec.page

    server = make_server("127.0.0.1", 0, app, threaded=True)
    rec.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def server(clock: FakeClock) -> Iterator[DevportalServer]:
    with DevportalServer({"limits_enabled": False}, clock=clock) as srv:
        yield srv


@dataclass
class Portal:
    """A test-side view of an installed app on one portal."""

    harness: Harness
    number: int
    member_id: str
    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str
    application_token: str

    @property
    def rest(self) -> str:
        return f"{self.harness.server.portal_url(self.number)}/rest/"

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        as_form: bool = False,
    ) -> requests.Response:
        """POST ``method`` with JSON (or a PHP-bracket form) and ``auth`` in the body."""
        body = dict(params or {})
        body["auth"] = token or self.access_token
        if as_form:
            from marketapp.devportal.phpform import flatten

            return requests.post(self.rest + method, data=flatten(body), timeout=10)
        return requests.post(self.rest + method, json=body, timeout=10)

    def ok(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        resp = self.call(method, params, **kw)
        assert resp.status_code == 200, resp.text
        return resp.json()["result"]

    def token_for(self, user_id: int) -> str:
        return self.harness.post(
            f"/portals/{self.member_id}/tokens", {"client_id": self.client_id, "user_id": user_id}
        )["access_token"]


@dataclass
class Harness:
    server: DevportalServer
    receiver: Receiver
    clock: FakeClock

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = requests.post(self.server.url + "/_emulator" + path, json=body or {}, timeout=10)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def get(self, path: str) -> Any:
        resp = requests.get(self.server.url + "/_emulator" + path, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def register(self, scopes: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        body = {
            "code": "smart_scenarios",
            "handler_url": self.receiver.url + "/app",
            "installer_url": self.receiver.url + "/install",
            "scopes": scopes
            or ["crm", "placement", "bizproc", "user", "task", "im", "messageservice"],
            **extra,
        }
        return dict(self.post("/apps", body))

    def install(
        self, number: int = 1, finish: bool = True, scopes: list[str] | None = None, **extra: Any
    ) -> Portal:
        app = self.register(scopes, **extra)
        state = self.get(f"/portals/{number}")
        result = self.post(
            f"/portals/{state['member_id']}/install", {"client_id": app["client_id"]}
        )
        fields = result["form"]["fields"]
        if finish:
            self.post(
                f"/portals/{state['member_id']}/install-finish", {"client_id": app["client_id"]}
            )
        return Portal(
            self,
            number,
            state["member_id"],
            app["client_id"],
            app["client_secret"],
            fields["AUTH_ID"],
            fields["REFRESH_ID"],
            fields["APPLICATION_TOKEN"],
        )

    def deliveries(self) -> list[dict[str, Any]]:
        return list(self.get("/deliveries?wait=1"))


@pytest.fixture
def harness(server: DevportalServer, receiver: Receiver, clock: FakeClock) -> Iterator[Harness]:
    server.emulator.reset()
    server.emulator.config.limits_enabled = False
    receiver.hits.clear()
    yield Harness(server, receiver, clock)
    server.emulator.deliveries.wait_idle(5)
