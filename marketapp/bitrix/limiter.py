"""Per-portal request limiting shared by every process.

Placeholder face; the shared backends follow.
"""

from __future__ import annotations

from typing import Protocol

from marketapp.models.portal import Portal


class Limiter(Protocol):
    """What the REST client needs from a limiter for one portal."""

    def acquire(self) -> float:
        """Wait for a request slot; return the seconds waited."""

    def paused_until(self, method: str) -> float | None:
        """Unix time until which ``method`` is blocked by ``OPERATION_TIME_LIMIT``, if any."""

    def pause(self, method: str, until: float) -> None:
        """Block ``method`` for every process until ``until`` (unix seconds)."""

    def record(self, method: str, operating: float, reset_at: float | None) -> None:
        """Remember the last ``time.operating`` figures of ``method``."""


class Unlimited:
    """A limiter that never waits (scripts and unit tests)."""

    def __init__(self) -> None:
        self.pauses: dict[str, float] = {}
        self.operating: dict[str, tuple[float, float | None]] = {}

    def acquire(self) -> float:
        return 0.0

    def paused_until(self, method: str) -> float | None:
        return self.pauses.get(method)

    def pause(self, method: str, until: float) -> None:
        self.pauses[method] = max(until, self.pauses.get(method, 0.0))

    def record(self, method: str, operating: float, reset_at: float | None) -> None:
        self.operating[method] = (operating, reset_at)


def limiter_for(portal: Portal) -> Limiter:
    """The shared limiter of ``portal`` (placeholder until the shared backends land)."""
    return Unlimited()
