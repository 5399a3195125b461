"""The web server of ``marketapp run``: waitress, in several processes sharing one socket.

A threaded server such as gunicorn's ``gthread`` gives a connection to a thread once its headers
arrive, and the thread then waits for the body: 16 clients that send their bodies slowly hold
every thread and ``/healthz`` stops answering. Waitress reads each request, body included, in its
event loop and hands it to a thread only when it is complete, so a slow client holds a socket and
a bounded buffer, never a thread. Bounds: the body size (413 beyond), the silence allowed on a
connection, the time one request may take to arrive (a client trickling a header line every few
seconds is never silent), the connections per process and per client address. The socket is
bound once and the processes are forked afterwards, so each core serves from the same port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
WsgiApp = Callable[..., Any]


@dataclass(frozen=True)
class Limits:
    threads: int = 8
    channel_timeout: int = 30
    connection_limit: int = 1000
    max_body_bytes: int = 1_048_576
    request_timeout: int = 30
    connections_per_client: int = 100

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        return cls(
            threads=config.web_threads,
            channel_timeout=config.web_channel_timeout,
            connection_limit=config.web_connection_limit,
            max_body_bytes=config.web_max_body_bytes,
            request_timeout=config.web_request_timeout,
            connections_per_client=config.web_connections_per_client,
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


def serve(
    factory: Callable[[], WsgiApp], sock: socket.socket, processes: int, limits: Limits
) -> None:
    """Serve ``factory()`` (called in each process) on ``sock`` until SIGTERM or SIGINT.

    Dead processes are replaced; on a signal every process is stopped and this returns.
    """
    children: set[int] = set()
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            while not stopping and len(children) < processes:
                children.add(_fork(factory, sock, limits))
            if not children:
                return
            pid, status = os.wait()
            children.discard(pid)
            if not stopping:
                log.warning("web process %s exited (status %s); starting another", pid, status)
                time.sleep(1)  # no tight loop if the app cannot start
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def _fork(factory: Callable[[], WsgiApp], sock: socket.socket, limits: Limits) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
        _run(factory(), sock, limits)
    except BaseException:  # the child must never return into the parent's code
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _run(app: WsgiApp, sock: socket.socket, limits: Limits) -> None:
    from waitress.server import create_server

    server = create_server(
        app,
        sockets=[sock],
        threads=limits.threads,
        channel_timeout=limits.channel_timeout,
        cleanup_interval=max(1, min(limits.channel_timeout, limits.request_timeout) // 2),
        connection_limit=limits.connection_limit,
        max_request_body_size=limits.max_body_bytes,
        ident="marketapp",
    )
    _guard(server, limits)
    server.run()


def _guard(server: Any, limits: Limits) -> None:
    """Close requests that take too long to arrive; cap the connections of one client address.

    Waitress closes only *silent* connections, so a client sending one header line every few
    seconds keeps its connection forever, and a few thousand of them fill ``connection_limit``.
    """
    from waitress.channel import HTTPChannel

    clients: dict[str, int] = {}

    class GuardedChannel(HTTPChannel):  # type: ignore[misc]
        started: float | None = None  # when the request being received began to arrive
        counted = ""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            peer = str(self.addr[0]) if isinstance(self.addr, tuple) else ""
            self.counted = peer
            clients[peer] = clients.get(peer, 0) + 1
            if clients[peer] > limits.connections_per_client:
                self.will_close = True  # closed by the event loop before reading anything

        def received(self, data: bytes) -> bool:
            if self.request is None and data:
                self.started = time.monotonic()
            accepted = bool(super().received(data))
            if self.request is None:
                self.started = None
            return accepted

        def del_channel(self, map: Any = None) -> None:
            if self.counted in clients:
                clients[self.counted] -= 1
                if clients[self.counted] <= 0:
                    del clients[self.counted]
            self.counted = ""
            super().del_channel(map)

    idle_check = server.maintenance

    def maintenance(now: float) -> None:
        idle_check(now)
        cutoff = time.monotonic() - limits.request_timeout
        for channel in list(server.active_channels.values()):
            started = getattr(channel, "started", None)
            if started is not None and started < cutoff:
                channel.will_close = True

    server.channel_class = GuardedChannel
    server.maintenance = maintenance
