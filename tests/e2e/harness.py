"""End-to-end harness: the app over HTTP with a real queue and worker, beside the emulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from huey import Huey
from werkzeug.serving import BaseWSGIServer, make_server

from marketapp.db import get_db
from marketapp.devportal import DevportalServer
from marketapp.jobs import get_jobs
from marketapp.models import Base
from tests.conftest import make_app

SCOPES = ["crm", "placement", "bizproc", "user_basic", "task", "im", "messageservice"]


class Worker:
    """A job consumer thread: runs due tasks, retries at once (no waiting in tests)."""

    def __init__(self, huey: Huey):
        self.huey = huey
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        # Set from before a task is taken off the queue until it has run: a task in hand is
        # neither pending nor scheduled, and idle() must still wait for it.
        self.busy = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="test-worker")

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.busy.set()
            try:
                ran = self._step()
            finally:
                self.busy.clear()
            if not ran:
                self.stop.wait(0.01)

    def _step(self) -> bool:
        for task in self.huey.read_schedule():
            self.huey.enqueue(task)
        task = self.huey.dequeue()
        if task is None:
            return False
        try:
            self.huey.execute(task)
        except Exception as exc:  # noqa: BLE001 - recorded for the test to see
            self.errors.append(exc)
        return True

    def _quiet(self) -> bool:
        return (
            not self.busy.is_set()
            and self.huey.pending_count() == 0
            and self.huey.scheduled_count() == 0
        )

    def idle(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._quiet():
                time.sleep(0.05)
                if self._quiet():
                    return
            time.sleep(0.02)
        raise TimeoutError("jobs did not finish")


@dataclass
class AppServer:
    app: Flask
    url: str
    server: BaseWSGIServer
    worker: Worker

    def close(self) -> None:
        self.worker.stop.set()
        self.server.shutdown()
        self.server.server_close()
        with self.app.app_context():
            get_db().engine.dispose()


def start_app(
    tmp_path: Path, database_url: str, devportal: DevportalServer, **overrides: Any
) -> AppServer:
    server = make_server("127.0.0.1", 0, None, threaded=True)  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{server.server_port}"
    config: dict[str, Any] = {
        "public_url": url,
        "client_id": "app.smart_scenarios.test",
        "client_secret": "app-secret-for-tests-0123456789",
        "oauth_hosts": devportal.emulator.server_host,
        "bx24_js_url": f"{devportal.url}/bx24.js",
        "jobs_immediate": False,
        "jobs_retry_delay": 0.2,
        "robot_group_delay": 0.2,
        "http_timeout": 10.0,
    }
    config.update(overrides)
    app = make_app(tmp_path, database_url, **config)
    server.app = app  # type: ignore[assignment]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with app.app_context():
        worker = Worker(get_jobs().huey)
    worker.thread.start()
    return AppServer(app, url, server, worker)


@dataclass
class Installed:
    """The app installed on one emulator portal."""

    devportal: DevportalServer
    app: AppServer
    member_id: str
    client_id: str
    installer_page: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def emu(self, method: str, path: str, **json: Any) -> Any:
        resp = requests.request(
            method, f"{self.devportal.url}/_emulator{path}", json=json or None, timeout=30
        )
        resp.raise_for_status()
        return resp.json()

    def portal(self, path: str = "", method: str = "GET", **json: Any) -> Any:
        return self.emu(method, f"/portals/{self.member_id}{path}", **json)

    def registrations(self) -> dict[str, Any]:
        return self.portal("/registrations")

    def open(self, placement: str = "DEFAULT", user_id: int = 1, **options: Any) -> dict[str, Any]:
        form: dict[str, Any] = self.portal(
            "/open",
            "POST",
            client_id=self.client_id,
            placement=placement,
            user_id=user_id,
            options=options or None,
        )
        return form

    def post_form(self, form: dict[str, Any], **changes: str) -> requests.Response:
        return requests.post(form["action"], data={**form["fields"], **changes}, timeout=30)

    def settle(self) -> None:
        """Wait until emulator deliveries and app jobs are all done."""
        for _ in range(3):
            self.emu("GET", "/deliveries?wait=1")
            self.app.worker.idle()


def register_app(devportal: DevportalServer, app: AppServer, version: int = 1) -> str:
    body = devportal_post(
        devportal,
        "/apps",
        client_id=app.app.extensions["marketapp.settings"].client_id,
        client_secret=app.app.extensions["marketapp.settings"].client_secret.get_secret_value(),
        code="smart_scenarios",
        handler_url=f"{app.url}/",
        installer_url=f"{app.url}/install",
        scopes=SCOPES,
        version=version,
    )
    return str(body["client_id"])


def devportal_post(devportal: DevportalServer, path: str, **json: Any) -> Any:
    resp = requests.post(f"{devportal.url}/_emulator{path}", json=json, timeout=30)
    resp.raise_for_status()
    return resp.json()


def install(devportal: DevportalServer, app: AppServer, portal_number: int = 1) -> Installed:
    """Register and install the app on a portal the way an admin does, then installFinish."""
    client_id = register_app(devportal, app)
    state = requests.get(f"{devportal.url}/_emulator/state", timeout=10).json()
    member_id = state["portals"][portal_number - 1]["member_id"]
    installed = Installed(devportal, app, member_id, client_id)
    form = installed.portal("/install", "POST", client_id=client_id)["form"]
    page = installed.post_form(form)
    assert page.status_code == 200, page.text
    installed.installer_page = page.text
    installed.portal("/install-finish", "POST", client_id=client_id)
    installed.settle()
    return installed


def wait_for(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("condition not met")


__all__ = ["Base", "Installed", "install", "start_app", "wait_for"]
