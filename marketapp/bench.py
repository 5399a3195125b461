"""``marketapp bench robots``: how fast the app ingests robot calls from Bitrix24.

The real app runs under the server ``marketapp run`` uses (:mod:`marketapp.server`: waitress,
2 processes sharing one socket, 8 threads each by default) on a free loopback port, against a
throw-away instance folder with one installed portal. The same server also exposes
``POST /_bench/parse``, which only parses the form the way the robot handler does; it is
registered by :func:`bench_app` only, never by :func:`marketapp.create_app`.

A load generator on the same machine (spawned processes, each with threads holding persistent
``http.client`` connections) sends N robot calls with distinct ``event_token``\\ s plus a share
of repeats to ``/robots/send_email``, then the very same bodies to ``/_bench/parse``, after a
warm-up of both. Jobs go to the SQLite Huey queue with nobody consuming them, so the figures
are ingestion only: parse, verify the application token, store, commit, enqueue, answer.
Afterwards the database must hold exactly one row per distinct call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import multiprocessing
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

HOST = "127.0.0.1"
ROBOT_CODE = "send_email"
ROBOT_PATH = f"/robots/{ROBOT_CODE}"
PARSE_PATH = "/_bench/parse"
MEMBER_ID = "bench0000000000000000000000000001"
DOMAIN = "bench.bitrix24.com"
REQUEST_TIMEOUT = 30.0


# --- the server side ---------------------------------------------------------------------------


def bench_app() -> Flask:
    """The product app (configuration from ``MARKETAPP_*``) plus the minimal parse-only endpoint.

    The server process (``python -m marketapp.bench PORT PROCESSES THREADS``) serves it.
    """
    from flask import Blueprint, jsonify, request
    from flask.typing import ResponseReturnValue

    from marketapp import create_app
    from marketapp.bitrix.payloads import parse_robot_call, request_fields

    app = create_app()
    bp = Blueprint("bench", __name__)

    @bp.post(PARSE_PATH)
    def parse_only() -> ResponseReturnValue:
        payload = parse_robot_call(request_fields(request))
        return jsonify(result="parsed", code=payload.code)

    app.register_blueprint(bp)
    return app


# --- request bodies ----------------------------------------------------------------------------


def robot_form(app_token: str, token: str, number: int) -> bytes:
    """A robot call as Bitrix24 posts it (PHP bracket keys, form encoded)."""
    workflow_id = f"{token[:14]}.{10_000_000 + number}"
    pairs = [
        ("workflow_id", workflow_id),
        ("code", ROBOT_CODE),
        ("document_id[0]", "crm"),
        ("document_id[1]", "CCrmDocumentContact"),
        ("document_id[2]", f"CONTACT_{number + 1}"),
        ("document_type[0]", "crm"),
        ("document_type[1]", "CCrmDocumentContact"),
        ("document_type[2]", "CONTACT"),
        ("event_token", f"{workflow_id}|A12345_1_2_3|{token}.{'0' * 64}"),
        ("properties[subject]", "Hello {{NAME}}"),
        ("properties[body]", "<p>Dear {{NAME}},</p><p>your order is on its way.</p>"),
        ("properties[sender]", ""),
        ("use_subscription", "Y"),
        ("timeout_duration", "0"),
        ("ts", str(int(time.time()))),
        ("auth[access_token]", "a" * 70),
        ("auth[expires]", str(int(time.time()) + 3600)),
        ("auth[expires_in]", "3600"),
        ("auth[scope]", "crm,bizproc,user,im"),
        ("auth[domain]", DOMAIN),
        ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
        ("auth[status]", "L"),
        ("auth[client_endpoint]", f"https://{DOMAIN}/rest/"),
        ("auth[member_id]", MEMBER_ID),
        ("auth[user_id]", "1"),
        ("auth[refresh_token]", "r" * 70),
        ("auth[application_token]", app_token),
    ]
    return urllib.parse.urlencode(pairs).encode()


# (form body, number of the distinct call within its shard, whether it is a repeat)
Item = tuple[bytes, int, bool]


def plan_shards(
    app_token: str,
    prefix: str,
    unique: int,
    repeat_share: float,
    weights: list[int],
    seed: int = 1,
) -> list[list[Item]]:
    """Split ``unique`` distinct calls plus repeats over shards in proportion to ``weights``.

    Items are ``(body, k, repeat)``, ``k`` numbering the distinct calls of a shard. A repeat
    stays in its original's shard, at least ``2 x threads`` places later, and is sent only
    once the original has been answered: a repeated delivery, not two copies in flight.
    """
    rng = random.Random(seed)
    total = sum(weights)
    shards: list[list[Item]] = []
    start = 0
    for i, weight in enumerate(weights):
        count = unique * weight // total if i < len(weights) - 1 else unique - start
        numbers = range(start, start + count)
        start += count
        bodies = [
            robot_form(app_token, f"{prefix}{n:08d}{secrets.token_hex(8)}", n) for n in numbers
        ]
        gap = 2 * weight
        keyed = [(float(k), (body, k, False)) for k, body in enumerate(bodies)]
        if count > gap:
            for _ in range(round(count * repeat_share)):
                k = rng.randrange(0, count - gap)
                keyed.append((k + gap + 0.5, (bodies[k], k, True)))
        keyed.sort(key=lambda pair: pair[0])
        shards.append([item for _key, item in keyed])
    return shards


# --- the load generator ------------------------------------------------------------------------


@dataclass
class ShardResult:
    completed: int = 0
    errors: int = 0
    not_sent: int = 0
    duplicates: int = 0
    first_start: float = float("inf")
    last_end: float = 0.0
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _drive_shard(
    port: int,
    path: str,
    items: list[Item],
    threads: int,
    time_limit: float,
    barrier: Any,
    results: Any,
) -> None:
    """Child process: ``threads`` persistent connections send ``bodies`` in order."""
    todo: deque[Item] = deque(items)
    answered = [threading.Event() for item in items if not item[2]]
    lock = threading.Lock()
    total = ShardResult()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    barrier.wait(timeout=120)
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        mine = ShardResult()
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        while True:
            try:
                body, k, repeat = todo.popleft()
            except IndexError:
                break
            if repeat:
                answered[k].wait(REQUEST_TIMEOUT + 5)
            if time.monotonic() > deadline:
                mine.not_sent += 1 + len(todo)
                todo.clear()
                for event in answered:
                    event.set()
                break
            started = time.monotonic()
            mine.first_start = min(mine.first_start, started)
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
                status, data = 0, repr(exc).encode()
            finally:
                if not repeat:
                    answered[k].set()
            ended = time.monotonic()
            mine.last_end = max(mine.last_end, ended)
            mine.completed += 1
            mine.latencies.append(ended - started)
            if status != 200:
                mine.errors += 1
                if len(mine.problems) < 3:
                    mine.problems.append(f"{status}: {data[:200].decode(errors='replace')}")
            elif b'"duplicate"' in data:
                mine.duplicates += 1
        conn.close()
        with lock:
            _merge(total, mine)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    results.put(total)


def _merge(into: ShardResult, part: ShardResult) -> None:
    into.completed += part.completed
    into.errors += part.errors
    into.not_sent += part.not_sent
    into.duplicates += part.duplicates
    into.first_start = min(into.first_start, part.first_start)
    into.last_end = max(into.last_end, part.last_end)
    into.latencies.extend(part.latencies)
    into.problems.extend(part.problems[: max(0, 5 - len(into.problems))])


@dataclass
class PhaseResult:
    endpoint: str
    result: ShardResult

    @property
    def elapsed(self) -> float:
        return max(self.result.last_end - self.result.first_start, 1e-9)

    @property
    def rps(self) -> float:
        return self.result.completed / self.elapsed

    def percentile_ms(self, p: float) -> float:
        ordered = sorted(self.result.latencies)
        if not ordered:
            return float("nan")
        rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        return ordered[rank] * 1000


def run_phase(
    port: int, path: str, shards: list[list[Item]], threads: list[int], time_limit: float
) -> PhaseResult:
    """Send every shard from its own process at once; bounded by ``time_limit`` seconds."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(shards) + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_drive_shard,
            args=(port, path, items, n, time_limit, barrier, results),
            daemon=True,
        )
        for items, n in zip(shards, threads, strict=True)
    ]
    for proc in procs:
        proc.start()
    total = ShardResult()
    try:
        barrier.wait(timeout=120)
        for _ in procs:
            _merge(total, results.get(timeout=time_limit + REQUEST_TIMEOUT + 30))
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return PhaseResult(f"POST {path}", total)


# --- the database ------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(database_url: str, instance: Path) -> Iterator[str]:
    """SQLite in ``instance`` by default; on PostgreSQL a fresh database, dropped afterwards.

    (A database rather than a schema: a ``search_path`` in the URL would need ``%``-escapes,
    which Alembic's config file syntax does not accept.)
    """
    if not database_url:
        yield f"sqlite:///{instance / 'marketapp.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("--database-url: SQLite (the default) or PostgreSQL only")
    name = f"marketapp_bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _prepare(config: dict[str, Any], app_token: str) -> None:
    from marketapp import create_app
    from marketapp.db import db_session, get_db
    from marketapp.migrate import upgrade
    from marketapp.models import Portal

    app = create_app(config)
    with app.app_context():
        upgrade(get_db().engine)
        session = db_session()
        session.add(
            Portal(
                member_id=MEMBER_ID,
                domain=DOMAIN,
                client_endpoint=f"https://{DOMAIN}/rest/",
                server_endpoint="https://oauth.bitrix.info/rest/",
                access_token=secrets.token_hex(32),
                refresh_token=secrets.token_hex(32),
                application_token=app_token,
                expires_at=datetime(2030, 1, 1, tzinfo=UTC),
                installed=True,
            )
        )
        session.commit()
        session.close()
        get_db().engine.dispose()


@dataclass
class StoredCounts:
    rows: int
    distinct_tokens: int
    jobs_waiting: int


def _count(config: dict[str, Any]) -> StoredCounts:
    from sqlalchemy import distinct, func, select

    from marketapp import create_app
    from marketapp.db import db_session, get_db
    from marketapp.jobs import get_jobs
    from marketapp.models import RobotCall

    app = create_app(config)
    with app.app_context():
        session = db_session()
        rows = session.scalar(select(func.count(RobotCall.id))) or 0
        tokens = session.scalar(select(func.count(distinct(RobotCall.event_token_hash)))) or 0
        huey = get_jobs().huey
        waiting = int(huey.scheduled_count()) + int(huey.pending_count())
        session.close()
        get_db().engine.dispose()
    return StoredCounts(rows, tokens, waiting)


# --- the server process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def app_server(env: dict[str, str], log_path: Path, processes: int, threads: int) -> Iterator[int]:
    """The bench app served like ``marketapp run`` serves the product, on a free port."""
    port = free_port()
    cmd = [sys.executable, "-m", "marketapp.bench", str(port), str(processes), str(threads)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(proc, port, log_path)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serve(port: int, processes: int, threads: int) -> None:
    from marketapp.config import Config
    from marketapp.server import Limits, bind, serve

    limits = dataclasses.replace(Limits.from_config(Config()), threads=threads)
    serve(bench_app, bind(HOST, port), processes, limits)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited:\n{_tail(log_path)}")
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer /healthz within 60 s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- the whole run -----------------------------------------------------------------------------


@dataclass
class BenchReport:
    full: PhaseResult
    minimal: PhaseResult
    expected_rows: int
    counts: StoredCounts
    measured_duplicates: int

    @property
    def check_ok(self) -> bool:
        return (
            self.counts.rows == self.expected_rows
            and self.counts.distinct_tokens == self.counts.rows
            and self.counts.jobs_waiting == self.expected_rows
            and self.full.result.duplicates == self.measured_duplicates
            and self.full.result.errors == 0
        )


def run_robots_bench(
    requests: int = 5000,
    concurrency: int = 16,
    database_url: str = "",
    repeat_share: float = 0.1,
    warmup: int = 0,
    time_limit: float = 300.0,
    processes: int = 2,
    threads: int = 8,
    echo: Callable[[str], None] = print,
) -> BenchReport:
    """Run the benchmark and print its table; see the module docstring."""
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be positive")
    warmup = warmup or max(20, min(500, requests // 10))
    processes = max(1, min(concurrency, os.cpu_count() or 1, 4))
    per_process = [
        concurrency // processes + (1 if i < concurrency % processes else 0)
        for i in range(processes)
    ]
    app_token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="marketapp-bench-") as tmp:
        instance = Path(tmp) / "instance"
        with bench_database(database_url, instance) as url:
            config: dict[str, Any] = {
                "instance_path": instance,
                "database_url": url,
                "redis_url": "",
                "jobs_immediate": False,
            }
            quiet = {**config, "log_level": "WARNING"}  # no migration chatter
            _prepare(quiet, app_token)  # also writes the instance's generated keys for the workers
            env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETAPP_")}
            env.update(
                {f"MARKETAPP_{k.upper()}": str(v) for k, v in config.items()},
                MARKETAPP_JOBS_IMMEDIATE="false",
            )
            for key in ("MARKETAPP_LOG_LEVEL", "MARKETAPP_ENCRYPTION_KEYS", "MARKETAPP_SECRET_KEY"):
                if key in os.environ:
                    env[key] = os.environ[key]
            backend = "postgresql" if url.startswith("postgresql") else "sqlite"
            echo(
                f"server: waitress, {processes} processes x {threads} threads"
                f"; database: {backend}; job queue: SQLite Huey, not consumed"
            )
            echo(
                f"load: {concurrency} persistent connections in {processes} processes; "
                f"{requests} distinct calls + {repeat_share:.0%} repeats, warm-up {warmup}"
            )
            warm = plan_shards(app_token, "warm", warmup, 0.0, per_process, seed=2)
            shards = plan_shards(app_token, "call", requests, repeat_share, per_process)
            sent = sum(len(s) for s in shards)
            with app_server(env, Path(tmp) / "server.log", processes, threads) as port:
                warm_full = run_phase(port, ROBOT_PATH, warm, per_process, time_limit)
                run_phase(port, PARSE_PATH, warm, per_process, time_limit)
                full = run_phase(port, ROBOT_PATH, shards, per_process, time_limit)
                minimal = run_phase(port, PARSE_PATH, shards, per_process, time_limit)
            server_errors = _logged_errors(Path(tmp) / "server.log")
            counts = _count(quiet)
    report = BenchReport(
        full=full,
        minimal=minimal,
        expected_rows=warmup + requests,
        counts=counts,
        measured_duplicates=sent - requests,
    )
    if warm_full.result.errors:
        echo(f"warm-up errors: {warm_full.result.errors} {warm_full.result.problems[:1]}")
    print_report(report, echo)
    for line in server_errors[:3]:
        echo(f"  server log: {line}")
    return report


def _logged_errors(path: Path) -> list[str]:
    """The server's logged errors (JSON lines at ERROR), shortened for the report."""
    lines = path.read_text(errors="replace").splitlines()
    return [line[:2000] for line in lines if '"level": "ERROR"' in line]


def print_report(report: BenchReport, echo: Callable[[str], None]) -> None:
    head = f"{'endpoint':<26}{'requests':>9}{'errors':>8}{'req/s':>9}"
    head += "".join(f"{h:>9}" for h in ("p50 ms", "p90 ms", "p99 ms", "max ms"))
    echo(head)
    for phase in (report.full, report.minimal):
        r = phase.result
        line = f"{phase.endpoint:<26}{r.completed:>9}{r.errors:>8}{phase.rps:>9.1f}"
        line += "".join(f"{phase.percentile_ms(p):>9.1f}" for p in (50, 90, 99, 100))
        if r.not_sent:
            line += f"  ({r.not_sent} not sent: time limit)"
        echo(line)
    full, minimal = report.full, report.minimal
    echo(
        f"ratio full/minimal: req/s {full.rps / minimal.rps:.2f}, "
        f"p50 {full.percentile_ms(50) / minimal.percentile_ms(50):.2f}, "
        f"p99 {full.percentile_ms(99) / minimal.percentile_ms(99):.2f}"
    )
    for phase in (full, minimal):
        for problem in phase.result.problems[:3]:
            echo(f"  {phase.endpoint} error: {problem}")
    c = report.counts
    verdict = "OK" if report.check_ok else "FAILED"
    echo(
        f"check: robot_calls rows {c.rows}, distinct event tokens {c.distinct_tokens}, "
        f"expected {report.expected_rows} (incl. warm-up); jobs waiting {c.jobs_waiting}; "
        f"answered duplicate {full.result.duplicates} of {report.measured_duplicates} repeats"
        f": {verdict}"
    )


if __name__ == "__main__":
    _serve(*(int(arg) for arg in sys.argv[1:4]))
