"""Clocks: the real one and a fake one tests can move (token expiry, limiters, robot timeouts)."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Anything with ``now()`` returning unix seconds as a float."""

    def now(self) -> float: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to; ``step`` advances it on every read (load tests)."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 0.0) -> None:
        self._t = start
        self.step = step
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            value = self._t
            self._t += self.step
            return value

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        with self._lock:
            self._t += seconds

    def set(self, value: float) -> None:
        """Jump to the unix time ``value``."""
        with self._lock:
            self._t = value
