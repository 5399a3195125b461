"""The README's first command: `marketapp run` serves the app on localhost with its defaults."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port


@pytest.mark.e2e
def test_run_serves_healthz_with_embedded_defaults(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETAPP_")}
    env["MARKETAPP_INSTANCE_PATH"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketapp.cli", "run", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        resp = None
        for _ in range(150):  # bounded wait for gunicorn to bind
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert resp is not None, "app did not come up"
        assert resp.status_code == 200
        assert resp.json()["checks"] == {"database": "ok", "queue": "ok"}
        assert (tmp_path / "marketapp.db").exists() and (tmp_path / "jobs.db").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
