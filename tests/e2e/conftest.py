"""Fixtures for end-to-end tests: one emulator per module (reset per test), one app per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from marketapp.devportal import DevportalServer
from tests.e2e.harness import AppServer, Installed, install, start_app


@pytest.fixture(scope="module")
def devportal() -> Iterator[DevportalServer]:
    with DevportalServer({"limits_enabled": False, "portals": ["standard", "standard"]}) as server:
        yield server


@pytest.fixture
def app_server(
    tmp_path: Path, database_url: str, devportal: DevportalServer
) -> Iterator[AppServer]:
    devportal.emulator.reset()
    server = start_app(tmp_path, database_url, devportal)
    yield server
    server.close()


@pytest.fixture
def installed(devportal: DevportalServer, app_server: AppServer) -> Installed:
    return install(devportal, app_server)
