"""Serve the emulator on 127.0.0.1 (OAuth + inspection) and 127.0.0.2.. (one per portal), one port.

with DevportalServer(config={"limits_enabled": False}) as server:
    server.url              # http://127.0.0.1:<port>  (OAuth server, /_emulator/)
    server.portal_url(1)    # http://127.0.0.2:<port>  (portal 1: /rest/, CRM shell)
    server.emulator         # the in-process state, for direct assertions
"""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from marketapp.devportal.app import create_devportal
from marketapp.devportal.clock import Clock
from marketapp.devportal.config import DevportalConfig
from marketapp.devportal.state import Emulator
from marketapp.devportal.tls import make_certificate


def _free_port(addresses: list[str]) -> int:
    """A port that is free on every address (bound and released; retried by the caller)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        if all(_bindable(a, port) for a in addresses[1:]):
            return port
    raise OSError("no common free port on the loopback addresses")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


class _QuietHandler(WSGIRequestHandler):
    """No per-request access log (the emulator keeps its own request log)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class DevportalServer:
    """Run the emulator's WSGI app on threaded werkzeug servers, one per loopback address."""

    def __init__(
        self,
        config: DevportalConfig | dict[str, Any] | None = None,
        *,
        clock: Clock | None = None,
        port: int = 0,
        tls: bool = False,
        spare_portals: int = 2,
        app: Flask | None = None,
        quiet: bool = True,
    ) -> None:
        self.app = app or create_devportal(config, clock)
        self.emulator: Emulator = self.app.extensions["devportal"]
        self._port = port
        self._tls = tls
        self._spare = spare_portals
        self._handler = _QuietHandler if quiet else WSGIRequestHandler
        self._servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file: Path | None = None

    @property
    def addresses(self) -> list[str]:
        count = len(self.emulator.portals) + self._spare
        return [self.emulator.config.host] + [f"127.0.0.{i + 2}" for i in range(count)]

    @property
    def url(self) -> str:
        return f"{self.emulator.config.scheme}://{self.emulator.server_host}"

    def portal_url(self, number: int = 1) -> str:
        """Base URL of portal ``number`` (1-based)."""
        return f"{self.emulator.config.scheme}://127.0.0.{number + 1}:{self.emulator.config.port}"

    def start(self) -> DevportalServer:
        addresses = self.addresses
        port = self._port or _free_port(addresses)
        config = self.emulator.config
        config.port = port
        config.scheme = "https" if self._tls else "http"
        ssl_context: Any = None
        if self._tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="devportal-tls-")
            cert, key = make_certificate(Path(self._tmp.name), addresses)
            self.ca_file = cert
            ssl_context = (str(cert), str(key))
        for address in addresses:
            server = make_server(
                address,
                port,
                self.app,
                threaded=True,
                request_handler=self._handler,
                ssl_context=ssl_context,
            )
            thread = threading.Thread(
                target=server.serve_forever, name=f"devportal-{address}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def serve_forever(self) -> None:
        """Block until interrupted (for the CLI)."""
        try:
            for thread in self._threads:
                thread.join()
        finally:
            self.stop()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        self.emulator.deliveries.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> DevportalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
