"""`marketapp run` (the README's first command and its production recipe) over real sockets:
it serves with embedded defaults, and slow clients cannot stall it (issue 9, attack 9)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from marketapp.bench import DOMAIN, MEMBER_ID, ROBOT_PATH, robot_form
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
ANSWER_WITHIN = 10.0  # seconds: "answered", not a performance threshold
SLOW_CLIENTS = 24


def _env(instance: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETAPP_")}
    dead = f"127.0.0.1:{free_port()}"  # the embedded worker's REST calls go nowhere
    env.update(
        MARKETAPP_INSTANCE_PATH=str(instance),
        MARKETAPP_OAUTH_HOSTS=dead,
        MARKETAPP_ALLOW_INSECURE_LOOPBACK="true",
        **extra,
    )
    return env


@contextmanager
def running(env: dict[str, str], *args: str) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "marketapp.cli", "run", "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # bounded wait for the server to come up
            try:
                requests.get(f"{url}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def _installed_portal(env: dict[str, str]) -> str:
    """Migrate the instance and add one installed portal; return its application token."""
    subprocess.run(
        [sys.executable, "-m", "marketapp.cli", "db", "upgrade"], env=env, check=True, timeout=120
    )
    from marketapp import create_app
    from marketapp.db import db_session, get_db
    from marketapp.models import Portal

    app_token = secrets.token_hex(16)
    app = create_app({"instance_path": Path(env["MARKETAPP_INSTANCE_PATH"])})
    with app.app_context():
        db_session().add(
            Portal(
                member_id=MEMBER_ID,
                domain=DOMAIN,
                client_endpoint=f"http://{env['MARKETAPP_OAUTH_HOSTS']}/rest/",
                server_endpoint=f"http://{env['MARKETAPP_OAUTH_HOSTS']}/rest/",
                access_token=secrets.token_hex(32),
                refresh_token=secrets.token_hex(32),
                application_token=app_token,
                expires_at=datetime(2030, 1, 1, tzinfo=UTC),
                installed=True,
            )
        )
        db_session().commit()
        get_db().engine.dispose()
    return app_token


def _slow_clients(url: str, count: int, content_length: int = 1000) -> list[socket.socket]:
    """Connections that send a robot call's headers and 12 bytes of its body, then nothing."""
    port = int(url.rsplit(":", 1)[1])
    head = (
        f"POST {ROBOT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {content_length}\r\n\r\nworkflow_id="
    ).encode()
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
        sock.sendall(head)
        sockets.append(sock)
    return sockets


def test_run_serves_healthz_with_embedded_defaults(tmp_path: Path) -> None:
    with running(_env(tmp_path), "--workers", "1") as url:
        resp = requests.get(f"{url}/healthz", timeout=ANSWER_WITHIN)
        assert resp.status_code == 200
        assert resp.json()["checks"] == {"database": "ok", "queue": "ok"}
    assert (tmp_path / "marketapp.db").exists() and (tmp_path / "jobs.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("--workers", "1"),  # `marketapp run` (one machine, embedded job worker)
        ("--workers", "2", "--no-migrate", "--no-embedded-worker"),  # the production recipe
    ],
    ids=["run", "production"],
)
def test_slow_clients_do_not_stall_the_app(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = _env(tmp_path)
    app_token = _installed_portal(env)
    with running(env, *args) as url:
        slow = _slow_clients(url, SLOW_CLIENTS)
        try:
            for n in range(3):
                health = requests.get(f"{url}/healthz", timeout=ANSWER_WITHIN)
                assert health.status_code == 200
                call = requests.post(
                    f"{url}{ROBOT_PATH}",
                    data=robot_form(app_token, secrets.token_hex(16), n),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=ANSWER_WITHIN,
                )
                assert call.status_code == 200, call.text
                assert call.json()["result"] == "queued"
        finally:
            for sock in slow:
                sock.close()


def test_slow_clients_are_cut_off_and_bodies_are_capped(tmp_path: Path) -> None:
    env = _env(tmp_path, MARKETAPP_WEB_CHANNEL_TIMEOUT="2", MARKETAPP_WEB_MAX_BODY_BYTES="4096")
    with running(env, "--workers", "1", "--no-embedded-worker") as url:
        (silent,) = _slow_clients(url, 1)
        silent.settimeout(30)
        assert silent.recv(1024) == b""  # closed by the server after its silence timeout
        silent.close()
        (big,) = _slow_clients(url, 1, content_length=1_000_000)
        big.settimeout(ANSWER_WITHIN)
        assert big.recv(1024).startswith(b"HTTP/1.1 413 ")  # refused before reading the body
        big.close()


def _trickle(url: str) -> socket.socket:
    """A Slowloris client: a request line, then a header line now and then, never the end."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
    sock.sendall(f"POST {ROBOT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
    return sock


def test_a_trickling_request_is_cut_off_and_one_client_cannot_take_every_connection(
    tmp_path: Path,
) -> None:
    env = _env(
        tmp_path,
        MARKETAPP_WEB_CHANNEL_TIMEOUT="30",
        MARKETAPP_WEB_REQUEST_TIMEOUT="2",
        MARKETAPP_WEB_CONNECTIONS_PER_CLIENT="5",
    )
    with running(env, "--workers", "1", "--no-embedded-worker") as url:
        trickler = _trickle(url)
        trickler.settimeout(1)
        closed = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not closed:
            try:
                trickler.sendall(b"X-Keep: alive\r\n")  # never silent: only the deadline helps
                closed = trickler.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        trickler.close()
        assert closed, "a request that never finishes arriving must be closed"
        held = [_trickle(url) for _ in range(5)]
        extra = _trickle(url)  # the sixth connection of the same address
        extra.settimeout(ANSWER_WITHIN)
        with contextlib.suppress(ConnectionResetError):  # closed at once
            assert extra.recv(1024) == b""
        extra.close()
        for sock in held:
            sock.close()
        time.sleep(0.5)  # the server notices the closed connections
        assert requests.get(f"{url}/healthz", timeout=ANSWER_WITHIN).status_code == 200
