"""Per-portal request limiting shared by every process on every machine.

Bitrix24 keeps a leaky bucket per portal: each request adds 1, the level drains ``Y``/s, and a
request arriving above ``X`` gets ``503 QUERY_LIMIT_EXCEEDED``. We mirror it client-side as GCRA
(the leaky bucket expressed as a "theoretical arrival time"): one atomic step books the next slot
for the caller and says how long to sleep until it, so waiting processes queue fairly instead of
polling. The capacity is ``X`` minus a margin, because our send time and the server's arrival time
differ by network and scheduling jitter.

State lives in Redis (one Lua script) when ``MARKETAPP_REDIS_URL`` is set, else in the database
(a row per portal updated under a row lock / SQLite write lock). The same backend keeps each
method's ``OPERATION_TIME_LIMIT`` pause and its last ``time.operating`` figures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from marketapp.bitrix.errors import RateLimitTimeout
from marketapp.models.portal import Portal
from marketapp.models.ratelimit import MethodBudget, RateBucket

log = logging.getLogger(__name__)

DEFAULT_MAX_WAIT = 60.0


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


@dataclass(frozen=True)
class Bucket:
    """A portal's bucket: server burst ``X``, drain ``Y``/s, and our safety margin below ``X``."""

    burst: int
    per_second: float
    margin: int | None = None

    @property
    def capacity(self) -> int:
        margin = self.margin if self.margin is not None else max(2, self.burst // 10)
        return max(1, self.burst - margin)

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second

    @property
    def tolerance(self) -> float:
        """How far ahead of now the booked slots may run: ``capacity - 1`` intervals."""
        return (self.capacity - 1) * self.interval


def gcra(tat: float, now: float, bucket: Bucket, max_wait: float) -> tuple[float, float | None]:
    """One GCRA step: ``(wait, new_tat)``; ``new_tat`` is None if the wait exceeds ``max_wait``."""
    start = max(tat, now)
    wait = max(0.0, start - bucket.tolerance - now)
    if wait > max_wait:
        return wait, None
    return wait, start + bucket.interval


class Backend(Protocol):
    """Shared storage of buckets, pauses and operating figures."""

    def reserve(self, portal_id: int, bucket: Bucket, max_wait: float) -> tuple[float, bool]:
        """Book a slot: ``(seconds to wait, booked)``; not booked when the wait is too long."""

    def paused_until(self, portal_id: int, method: str) -> float | None: ...

    def pause(self, portal_id: int, method: str, until: float) -> None: ...

    def record(
        self, portal_id: int, method: str, operating: float, reset_at: float | None
    ) -> None: ...

    def operating(self, portal_id: int, method: str) -> tuple[float, float | None] | None:
        """The last recorded ``(operating, operating_reset_at)`` of ``method``."""


class PortalLimiter:
    """The :class:`Limiter` of one portal over a shared :class:`Backend`."""

    def __init__(
        self,
        backend: Backend,
        portal_id: int,
        bucket: Bucket,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.backend = backend
        self.portal_id = portal_id
        self.bucket = bucket
        self.max_wait = max_wait
        self.sleep = sleep

    def acquire(self) -> float:
        """Book the next slot of this portal and sleep until it; raise if over ``max_wait``."""
        wait, booked = self.backend.reserve(self.portal_id, self.bucket, self.max_wait)
        if not booked:
            raise RateLimitTimeout(
                f"portal {self.portal_id}: next request slot in {wait:.1f}s, "
                f"more than the allowed {self.max_wait:.0f}s"
            )
        if wait > 0:
            self.sleep(wait)
        return wait

    def paused_until(self, method: str) -> float | None:
        return self.backend.paused_until(self.portal_id, method)

    def pause(self, method: str, until: float) -> None:
        log.warning("portal %s: %s paused until %.0f", self.portal_id, method, until)
        self.backend.pause(self.portal_id, method, until)

    def record(self, method: str, operating: float, reset_at: float | None) -> None:
        self.backend.record(self.portal_id, method, operating, reset_at)

    def operating(self, method: str) -> tuple[float, float | None] | None:
        """The last ``(time.operating, operating_reset_at)`` seen for ``method``, for pacing."""
        return self.backend.operating(self.portal_id, method)


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


# --- Redis ------------------------------------------------------------------------------

# Redis' own clock, so that machines with drifting clocks still share one timeline.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local interval, tolerance, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {tostring(wait), 0} end
local ttl = math.ceil(tat + interval - now + 1)
redis.call('SET', KEYS[1], tostring(tat + interval), 'EX', ttl)
return {tostring(wait), 1}
"""

_PAUSE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0')
local until_ = tonumber(ARGV[1])
if until_ > current then
  redis.call('HSET', KEYS[1], 'paused_until', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""


class RedisBackend:
    """Limiter state in Redis; every step is one atomic script."""

    def __init__(self, client: redis.Redis, prefix: str = "marketapp:b24") -> None:
        self.client = client
        self.prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._pause = client.register_script(_PAUSE)

    def _bucket_key(self, portal_id: int) -> str:
        return f"{self.prefix}:bucket:{portal_id}"

    def _method_key(self, portal_id: int, method: str) -> str:
        return f"{self.prefix}:method:{portal_id}:{method}"

    def reserve(self, portal_id: int, bucket: Bucket, max_wait: float) -> tuple[float, bool]:
        wait, booked = self._reserve(
            keys=[self._bucket_key(portal_id)],
            args=[repr(bucket.interval), repr(bucket.tolerance), repr(max_wait)],
        )
        return float(wait), bool(int(booked))

    def paused_until(self, portal_id: int, method: str) -> float | None:
        value = self.client.hget(self._method_key(portal_id, method), "paused_until")
        return float(value) if value else None

    def pause(self, portal_id: int, method: str, until: float) -> None:
        self._pause(keys=[self._method_key(portal_id, method)], args=[repr(until)])

    def record(self, portal_id: int, method: str, operating: float, reset_at: float | None) -> None:
        key = self._method_key(portal_id, method)
        pipe = self.client.pipeline()
        pipe.hset(key, "operating", repr(operating))
        if reset_at is not None:
            pipe.hset(key, "operating_reset_at", repr(reset_at))
        pipe.expire(key, 86400)
        pipe.execute()

    def operating(self, portal_id: int, method: str) -> tuple[float, float | None] | None:
        data = self.client.hgetall(self._method_key(portal_id, method))
        if not data or b"operating" not in data:
            return None
        reset = data.get(b"operating_reset_at")
        return float(data[b"operating"]), float(reset) if reset else None


# --- database ---------------------------------------------------------------------------


class DatabaseBackend:
    """Limiter state in the app database, updated under a row lock (SQLite: write lock).

    Uses its own short transactions, so callers must not hold a SQLite write transaction open
    across REST calls (that would wait on itself).
    """

    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], float] = time.time
    ) -> None:
        self.sessions = sessions
        self.clock = clock

    def reserve(self, portal_id: int, bucket: Bucket, max_wait: float) -> tuple[float, bool]:
        with self._locked(RateBucket, portal_id=portal_id) as (session, row):
            wait, tat = gcra(row.tat or 0.0, self.clock(), bucket, max_wait)
            if tat is None:
                return wait, False
            row.tat = tat
            session.commit()
            return wait, True

    def paused_until(self, portal_id: int, method: str) -> float | None:
        with self.sessions() as session:
            row = session.get(MethodBudget, (portal_id, method))
            return row.paused_until if row is not None and row.paused_until else None

    def pause(self, portal_id: int, method: str, until: float) -> None:
        with self._locked(MethodBudget, portal_id=portal_id, method=method) as (session, row):
            row.paused_until = max(row.paused_until or 0.0, until)
            session.commit()

    def record(self, portal_id: int, method: str, operating: float, reset_at: float | None) -> None:
        with self._locked(MethodBudget, portal_id=portal_id, method=method) as (session, row):
            row.operating = operating
            row.operating_reset_at = reset_at
            session.commit()

    def operating(self, portal_id: int, method: str) -> tuple[float, float | None] | None:
        with self.sessions() as session:
            row = session.get(MethodBudget, (portal_id, method))
            return (row.operating, row.operating_reset_at) if row is not None else None

    @contextmanager
    def _locked(self, model: Any, **key: Any) -> Iterator[tuple[Session, Any]]:
        """The row ``key`` of ``model`` (created if missing), locked until commit or rollback."""
        with self.sessions() as session:
            dialect = session.get_bind().dialect.name
            if dialect == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            elif dialect == "postgresql":
                session.execute(pg_insert(model).values(**key).on_conflict_do_nothing())
            query = select(model).filter_by(**key)
            row = session.execute(
                query if dialect == "sqlite" else query.with_for_update()
            ).scalar_one_or_none()
            if row is None:
                row = model(**key)
                session.add(row)
            try:
                yield session, row
            finally:
                session.rollback()


# --- wiring -----------------------------------------------------------------------------

_redis_lock = threading.Lock()
_redis_clients: dict[str, redis.Redis] = {}


def redis_client(url: str) -> redis.Redis:
    """One Redis connection pool per URL per process."""
    with _redis_lock:
        if url not in _redis_clients:
            _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=5)
        return _redis_clients[url]


def backend_for_app() -> Backend:
    """Redis when ``MARKETAPP_REDIS_URL`` is set, else the app database."""
    from marketapp.config import get_config
    from marketapp.db import get_db

    config = get_config()
    if config.redis_url:
        return RedisBackend(redis_client(config.redis_url))
    return DatabaseBackend(get_db().sessions)


def limiter_for(portal: Portal) -> PortalLimiter:
    """The shared limiter of ``portal`` with its own burst and rate (50/2, Enterprise 250/5)."""
    bucket = Bucket(burst=portal.rate_burst, per_second=float(portal.rate_per_second))
    return PortalLimiter(backend_for_app(), portal.id, bucket)
