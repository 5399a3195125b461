"""The queue server: outbound form POSTs (events, robot calls, SMS) on a background thread.

Every delivery is tried once (Bitrix24 never retries), its response ignored, and logged.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from marketapp.devportal import phpform

Poster = Callable[[str, list[tuple[str, str]], float], int]


def _post(url: str, pairs: list[tuple[str, str]], timeout: float) -> int:
    resp = requests.post(url, data=pairs, timeout=timeout, allow_redirects=False)
    return resp.status_code


class DeliveryQueue:
    """A FIFO of deliveries worked by one daemon thread; ``wait_idle`` lets tests synchronise."""

    def __init__(
        self, delay: Callable[[], float], timeout: Callable[[], float], poster: Poster = _post
    ) -> None:
        self._delay = delay
        self._timeout = timeout
        self._poster = poster
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self.log: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None

    def enqueue(
        self, kind: str, url: str, payload: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> int:
        """Queue a form POST of ``payload`` (nested, PHP-bracket encoded) to ``url``."""
        with self._lock:
            entry = {
                "id": len(self.log) + 1,
                "kind": kind,
                "url": url,
                "payload": payload,
                "form": phpform.flatten(payload),
                "status": "queued",
                **(meta or {}),
            }
            self.log.append(entry)
            self._pending += 1
            self._ensure_thread()
        self._queue.put(entry)
        return int(entry["id"])

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="devportal-delivery", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            delay = self._delay()
            if delay > 0:
                time.sleep(delay)
            began = time.perf_counter()
            try:
                entry["http_status"] = self._poster(entry["url"], entry["form"], self._timeout())
                entry["status"] = "delivered"
            except requests.RequestException as exc:
                # Lost for good: no retries, as in Bitrix24.
                entry["status"] = "failed"
                entry["error"] = type(exc).__name__
            entry["duration_ms"] = round((time.perf_counter() - began) * 1000, 3)
            with self._lock:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery has been attempted; ``False`` on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def clear(self) -> None:
        with self._lock:
            self.log.clear()

    def stop(self) -> None:
        self._queue.put(None)
