"""The two cloud limits (§3.7): leaky bucket per portal, operating-time budget per method."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LeakyBucket:
    """Each request adds 1, the level drains ``rate`` per second; above ``capacity`` → 503."""

    capacity: int
    rate: float
    level: float = 0.0
    last: float | None = None
    # (arrival time, accepted) of every request, so tests can replay the algorithm.
    arrivals: list[tuple[float, bool]] = field(default_factory=list)

    def hit(self, now: float, count_rejected: bool) -> bool:
        """Record a request arriving at ``now``; ``False`` means it is over the limit."""
        if self.last is not None:
            self.level = max(0.0, self.level - (now - self.last) * self.rate)
        self.last = max(now, self.last or now)
        accepted = self.level <= self.capacity
        if accepted or count_rejected:
            self.level += 1
        self.arrivals.append((now, accepted))
        return accepted

    def state(self) -> dict[str, Any]:
        rejected = sum(1 for _, ok in self.arrivals if not ok)
        return {
            "capacity": self.capacity,
            "rate": self.rate,
            "level": self.level,
            "last": self.last,
            "requests": len(self.arrivals),
            "rejected": rejected,
            "arrivals": [[t, ok] for t, ok in self.arrivals],
        }

    def clear(self) -> None:
        self.level = 0.0
        self.last = None
        self.arrivals.clear()


@dataclass
class _Bucket:
    minute: int
    first_call: float
    total: float


class OperatingBudget:
    """Summed execution time per (portal, app, method) in 10 one-minute buckets."""

    WINDOW = 600.0

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str, str], list[_Bucket]] = {}

    def _live(self, key: tuple[str, str, str], now: float) -> list[_Bucket]:
        # A bucket drops out 600 s after its first call (operating_reset_at).
        buckets = [b for b in self._buckets.get(key, []) if b.first_call + self.WINDOW > now]
        self._buckets[key] = buckets
        return buckets

    def blocked(self, key: tuple[str, str, str], now: float, limit: float) -> bool:
        """Checked before a call: the call after the one that crossed ``limit`` is refused."""
        return sum(b.total for b in self._live(key, now)) >= limit

    def charge(
        self, key: tuple[str, str, str], now: float, seconds: float, min_recorded: float
    ) -> None:
        """Add ``seconds`` of work done at ``now``; cheap calls are not recorded (observed)."""
        if seconds < min_recorded:
            return
        buckets = self._live(key, now)
        minute = math.floor(now / 60)
        if buckets and buckets[-1].minute == minute:
            buckets[-1].total += seconds
        else:
            buckets.append(_Bucket(minute, now, seconds))

    def status(self, key: tuple[str, str, str], now: float) -> tuple[float, int]:
        """(operating seconds in the window, operating_reset_at unix time)."""
        buckets = self._live(key, now)
        operating = sum(b.total for b in buckets)
        reset_at = buckets[0].first_call + self.WINDOW if buckets else now + self.WINDOW
        return round(operating, 6), math.ceil(reset_at)

    def state(self, now: float) -> list[dict[str, Any]]:
        out = []
        for key in list(self._buckets):
            operating, reset_at = self.status(key, now)
            if operating:
                out.append(
                    {
                        "member_id": key[0],
                        "client": key[1],
                        "method": key[2],
                        "operating": operating,
                        "operating_reset_at": reset_at,
                        "buckets": [[b.minute, b.first_call, b.total] for b in self._buckets[key]],
                    }
                )
        return out
