"""The Bitrix24 portal emulator: portals, OAuth server and queue server in one Flask app.

Public API: ``create_devportal`` (the WSGI app), ``DevportalServer`` (serves it on loopback),
``DevportalConfig``, ``FakeClock``; the inspection API lives under ``/_emulator/``.
"""

from marketapp.devportal.app import create_devportal
from marketapp.devportal.clock import FakeClock, SystemClock
from marketapp.devportal.config import DevportalConfig
from marketapp.devportal.server import DevportalServer

__all__ = ["DevportalConfig", "DevportalServer", "FakeClock", "SystemClock", "create_devportal"]
