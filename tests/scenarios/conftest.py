"""The end-to-end fixtures (emulator over HTTP, app server, installed app) for scenario tests."""

from tests.e2e.conftest import app_server, devportal, installed

__all__ = ["app_server", "devportal", "installed"]
