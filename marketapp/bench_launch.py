"""``marketapp bench launch``: a scenario launch (e-mail, SMS) over N contacts on the emulator.

The emulator runs in-process on loopback with the standard plan's limits (leaky bucket of 50,
2 requests/s, the operating-time budget), the app's database is a throw-away SQLite file (or
``--database-url``) and its job worker is a separate process (``marketapp worker``, the app's
configuration passed in ``MARKETAPP_*``), so its peak RSS can be read and tests can SIGKILL it.
Printed: wall time from ``launch()`` to the last record settled, HTTP requests by method, batch
commands per request, and two floors (with burst ``B`` and rate ``r``, ``R`` requests take at
least ``max(0, R - B) / r`` seconds): the floor for the requests we made, and the floor for the
workload itself (its writes packed 50 to a request, every record read once, 2,500 to a request),
with the ratio of wall time to it; then the same writes (per contact: the e-mail activity and
its timeline line, the SMS's timeline line, with our texts) made by ``fast-bitrix24`` through an
emulator webhook on a fresh bucket, and the ratio of the two.

:class:`WorkerProcess` and :class:`LaunchRig` are also what the acceptance tests build on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from pydantic import SecretStr

if TYPE_CHECKING:
    from flask import Flask

    from marketapp.config import Config
    from marketapp.devportal import DevportalServer

BURST, RATE = 50, 2.0  # the standard plan (marketapp/devportal/config.py PLANS)


# -- the worker process ---------------------------------------------------------------------


def worker_env(config: Config, **extra: str) -> dict[str, str]:
    """The environment that gives ``marketapp worker`` exactly ``config`` (secrets included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETAPP_")}
    for name, value in config.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"MARKETAPP_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    env.update(extra)
    return env


class WorkerProcess:
    """``marketapp worker`` in its own process group: started, SIGKILLed, restarted, measured."""

    def __init__(self, config: Config, threads: int = 2, log_path: Path | None = None) -> None:
        self.env = worker_env(config)
        self.threads = threads
        self.log_path = log_path or config.instance_path / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.peak_rss_kib = 0

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", "marketapp.cli", "worker", "--workers", str(self.threads)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        """Peak resident set size so far (``VmHWM``), remembered across restarts."""
        if self.alive and self.proc is not None:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
        return self.peak_rss_kib

    def kill(self) -> None:
        """SIGKILL: no cleanup, no release of leases, jobs in flight are lost."""
        if self.proc is not None and self.alive:
            self.rss_kib()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is None or not self.alive:
            return
        self.rss_kib()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- what the portal received -----------------------------------------------------------------


@dataclass
class Deliveries:
    """Per contact: e-mails in the emulator's outbox (activities by ORIGIN_ID) and SMS rows."""

    emails: Counter[int] = field(default_factory=Counter)
    sms: Counter[int] = field(default_factory=Counter)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.emails.values() if n > 1) + sum(
            n - 1 for n in self.sms.values() if n > 1
        )


def emu_get(server: DevportalServer, path: str) -> Any:
    resp = requests.get(f"{server.url}/_emulator{path}", timeout=120)
    resp.raise_for_status()
    return resp.json()


def emu_post(server: DevportalServer, path: str, **body: Any) -> Any:
    resp = requests.post(f"{server.url}/_emulator{path}", json=body, timeout=120)
    resp.raise_for_status()
    return resp.json()


def deliveries(server: DevportalServer, app: Flask, member_id: str) -> Deliveries:
    """E-mails: portal e-mail activities (TYPE_ID 4) per owner. SMS: the app's outbox rows."""
    from sqlalchemy import select

    from marketapp.db import db_session
    from marketapp.models import SmsMessage

    found = Deliveries()
    for activity in emu_get(server, f"/portals/{member_id}/activities"):
        if str(activity.get("TYPE_ID")) == "4":
            found.emails[int(activity["OWNER_ID"])] += 1
    with app.app_context():
        for entity_id in db_session().scalars(select(SmsMessage.entity_id)):
            found.sms[int(entity_id)] += 1
        db_session().close()
    return found


def request_summary(log: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str], int]:
    """(HTTP requests by method, batch commands by method, rejected with 503)."""
    by_method = Counter(str(r["method"]) for r in log)
    commands = Counter(c for r in log for c in r.get("commands", []))
    rejected = sum(1 for r in log if r.get("status") == 503)
    return by_method, commands, rejected


def floor_seconds(requests_made: int, burst: int = BURST, rate: float = RATE) -> float:
    """The least time the leaky bucket allows for ``requests_made`` requests from empty."""
    return max(0.0, (requests_made - burst) / rate)


READS = {"crm.contact.list"}


def workload_requests(commands: Counter[str], records: int) -> int:
    """The fewest requests that can do this work: the writes 50 to a batch, each record read
    once (50 ids a list command, 50 commands a batch)."""
    writes = sum(n for method, n in commands.items() if method not in READS)
    return -(-writes // 50) + -(-records // 2500)


# -- the benchmark ----------------------------------------------------------------------------

STEPS: dict[str, dict[str, Any]] = {
    "email": {"type": "send_email", "subject": "Hello {{ contact.NAME }}", "body": "Dear friend"},
    "sms": {"type": "send_sms", "text": "Hi {{ contact.NAME }}, see you!"},
}


def bench_definition(steps: list[str]) -> dict[str, Any]:
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise ValueError(f"--steps: choose from {', '.join(STEPS)} (got {', '.join(unknown)})")
    return {
        "schema": 1,
        "key": "bench-launch",
        "name": {"en": "Bench launch", "ru": "Замер запуска"},
        "description": {"en": "E-mail and SMS.", "ru": "Письмо и SMS."},
        "entity_types": ["CONTACT"],
        "steps": [STEPS[s] for s in steps],
    }


@dataclass
class LaunchRun:
    contacts: int
    limited: bool
    launch_seconds: float  # launch() itself: writing the enrollments, committing, queueing
    seconds: float  # launch() to the last enrollment final
    requests: Counter[str]
    commands: Counter[str]
    rejected: int
    states: dict[str, int]
    peak_rss_kib: int
    delivered: Deliveries

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def commands_per_request(self) -> float:
        batches = self.requests.get("batch", 0)
        singles = self.total_requests - batches
        return (sum(self.commands.values()) + singles) / max(1, self.total_requests)


@dataclass
class FastRun:
    seconds: float
    read_seconds: float
    requests: Counter[str]
    commands: Counter[str]
    rejected: int
    error: str = ""  # fast-bitrix24 gave up (its retries exhausted)
    patient: bool = False  # its cap of 10 failed attempts in a row lifted


class LaunchRig:
    """A throw-away app + emulator portal with N seeded contacts and a worker process."""

    def __init__(self, folder: Path, contacts: int, limited: bool, database_url: str = "") -> None:
        from marketapp.bench_preview import make_app, open_portal
        from marketapp.devportal import DevportalServer

        config = {"portals": ["standard"], "limits_enabled": limited, "request_log_size": 10**7}
        self.server = DevportalServer(config).start()
        self.app = make_app(folder, database_url, self.server)
        self.portal = open_portal(self.server, self.app)
        self.portal.seed(contacts=contacts, companies=1, deals=0, leads=0)
        self.contacts = contacts
        self.limited = limited
        if not limited:  # functional run: lift the app's own pacing too
            self._set_pacing(10_000, 100_000)
        from marketapp.config import get_config

        with self.app.app_context():
            self.worker = WorkerProcess(get_config(), threads=2, log_path=folder / "worker.log")

    def _set_pacing(self, rate: int, burst: int) -> None:
        from marketapp.db import db_session
        from marketapp.models import Portal

        with self.app.app_context():
            portal = db_session().get(Portal, self.portal.portal_id)
            assert portal is not None
            portal.rate_per_second, portal.rate_burst = rate, burst
            db_session().commit()

    def log_size(self) -> int:
        return len(self.portal.requests())

    def reset_bucket(self) -> None:
        emu_post(self.server, f"/portals/{self.portal.member_id}/limiter/reset")

    def launch(self, steps: list[str]) -> tuple[int, float]:
        """Save the scenario and launch it on every seeded contact; (launch id, seconds)."""
        from sqlalchemy import select

        from marketapp.db import db_session
        from marketapp.models import Portal
        from marketapp.scenarios import versions
        from marketapp.scenarios.launches import launch
        from marketapp.scenarios.preview import Selection

        records = emu_get(self.server, f"/portals/{self.portal.member_id}/crm/contact")
        ids = tuple(int(r["ID"]) for r in records)
        with self.app.app_context():
            session = db_session()
            portal = session.scalars(select(Portal).where(Portal.id == self.portal.portal_id)).one()
            version = versions.save(session, portal, bench_definition(steps), author_id=1)
            session.commit()
            token = self.portal.token(1)
            began = time.perf_counter()
            started = launch(
                session, portal, version, Selection("CONTACT", ids=ids), {}, 1, token, "bench"
            )
            session.commit()
            seconds = time.perf_counter() - began
            launch_id = int(started.id)
            session.close()
        return launch_id, seconds

    def unfinished(self, launch_id: int) -> int:
        from sqlalchemy import func, select

        from marketapp.db import db_session
        from marketapp.models.launch import FINAL_STATES, Enrollment

        with self.app.app_context():
            count = db_session().scalar(
                select(func.count(Enrollment.id)).where(
                    Enrollment.launch_id == launch_id, Enrollment.state.not_in(FINAL_STATES)
                )
            )
            db_session().close()
        return int(count or 0)

    def states(self, launch_id: int) -> dict[str, int]:
        from sqlalchemy import func, select

        from marketapp.db import db_session
        from marketapp.models.launch import Enrollment

        with self.app.app_context():
            rows = db_session().execute(
                select(Enrollment.state, Enrollment.reason, func.count(Enrollment.id))
                .where(Enrollment.launch_id == launch_id)
                .group_by(Enrollment.state, Enrollment.reason)
            )
            found = {f"{s}{':' + r if r else ''}": int(n) for s, r, n in rows}
            db_session().close()
        return found

    def close(self) -> None:
        self.worker.stop()
        from marketapp.db import get_db

        with self.app.app_context():
            get_db().engine.dispose()
        self.server.stop()


def run_launch(rig: LaunchRig, steps: list[str], timeout: float) -> LaunchRun:
    """One launch from ``launch()`` to the last record final, the worker running throughout."""
    rig.worker.start()
    try:
        start = rig.log_size()
        rig.reset_bucket()
        began = time.perf_counter()
        launch_id, launch_seconds = rig.launch(steps)
        while rig.unfinished(launch_id):
            rig.worker.rss_kib()
            if time.perf_counter() - began > timeout:
                raise TimeoutError(f"unfinished after {timeout:.0f} s: {rig.states(launch_id)}")
            if not rig.worker.alive:
                raise RuntimeError(f"the worker exited:\n{rig.worker.log_tail()}")
            time.sleep(0.1)
        seconds = time.perf_counter() - began
        rig.worker.rss_kib()
    finally:
        rig.worker.stop()
    made = rig.portal.requests()[start:]
    by_method, commands, rejected = request_summary(made)
    return LaunchRun(
        contacts=rig.contacts,
        limited=rig.limited,
        launch_seconds=launch_seconds,
        seconds=seconds,
        requests=by_method,
        commands=commands,
        rejected=rejected,
        states=rig.states(launch_id),
        peak_rss_kib=rig.worker.rss_kib(),
        delivered=deliveries(rig.server, rig.app, rig.portal.member_id),
    )


def run_fast_bitrix24(
    rig: LaunchRig, steps: list[str], patient: bool = False, timeout: float = 600.0
) -> FastRun | None:
    """The same writes with fast-bitrix24 through a webhook: read the contacts (``get_all``),
    then per contact the e-mail's ``crm.activity.add`` and the ``crm.timeline.comment.add``
    lines our engine writes (one per e-mail, one per SMS), on a fresh bucket. By default it
    gives up after 10 failures in a row; ``patient`` lifts that cap so that it completes."""
    try:
        from fast_bitrix24 import Bitrix, srh
    except ImportError:
        return None
    logging.getLogger("fast_bitrix24").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # its abandoned tasks' tracebacks
    srh.MAX_RETRIES = 10**6 if patient else 10
    member = rig.portal.member_id
    hook = emu_post(rig.server, f"/portals/{member}/webhooks", scopes=["crm"])
    bitrix = Bitrix(hook["url"], verbose=False, ssl=False)
    time.sleep(BURST / RATE)  # our run's requests drain out of the bucket first
    rig.reset_bucket()
    start = rig.log_size()
    began = time.perf_counter()
    read_at: list[float] = []
    errors: list[str] = []

    def work() -> None:
        try:
            contacts = bitrix.get_all(
                "crm.contact.list",
                {"select": ["ID", "NAME", "EMAIL", "PHONE"], "filter": {">ID": 0}},
            )
            read_at.append(time.perf_counter())
            with_email = [c for c in contacts if c.get("EMAIL")] if "email" in steps else []
            with_phone = [c for c in contacts if c.get("PHONE")] if "sms" in steps else []
            if with_email:
                bitrix.call("crm.activity.add", [_activity(c) for c in with_email])
            lines = [_email_line(c) for c in with_email] + [_sms_line(c) for c in with_phone]
            if lines:
                bitrix.call("crm.timeline.comment.add", lines)
        except Exception as exc:  # noqa: BLE001 - "All attempts to get data from server exhausted"
            errors.append(str(exc) or type(exc).__name__)

    # A thread, so that a run that does not finish is reported, not waited for forever.
    thread = threading.Thread(target=work, daemon=True, name="fast-bitrix24")
    thread.start()
    thread.join(timeout)
    seconds = time.perf_counter() - began
    read_seconds = read_at[0] - began if read_at else 0.0
    error = (
        errors[0] if errors else f"not finished after {timeout:.0f} s" if thread.is_alive() else ""
    )
    by_method, commands, rejected = request_summary(rig.portal.requests()[start:])
    return FastRun(seconds, read_seconds, by_method, commands, rejected, error, patient)


def _activity(contact: dict[str, Any]) -> dict[str, Any]:
    cid = int(contact["ID"])
    return {
        "fields": {
            "OWNER_TYPE_ID": 3,
            "OWNER_ID": cid,
            "TYPE_ID": 4,
            "DIRECTION": 2,
            "COMPLETED": "Y",
            "RESPONSIBLE_ID": 1,
            "SUBJECT": f"Hello {contact.get('NAME', '')}",
            "DESCRIPTION": "Dear friend",
            "COMMUNICATIONS": [
                {"VALUE": contact["EMAIL"][0]["VALUE"], "ENTITY_ID": cid, "ENTITY_TYPE_ID": 3}
            ],
            "ORIGINATOR_ID": "fast_bitrix24",
            "ORIGIN_ID": f"fast:{cid}",
        }
    }


def _email_line(contact: dict[str, Any]) -> dict[str, Any]:
    text = f"Scenario 'Bench launch': E-mail sent to {contact['EMAIL'][0]['VALUE']}."
    return _comment(contact, text)


def _sms_line(contact: dict[str, Any]) -> dict[str, Any]:
    text = (
        f"Scenario 'Bench launch': SMS to {contact['PHONE'][0]['VALUE']} (1 segments): "
        f"Hi {contact.get('NAME', '')}, see you!"
    )
    return _comment(contact, text)


def _comment(contact: dict[str, Any], text: str) -> dict[str, Any]:
    return {"fields": {"ENTITY_ID": int(contact["ID"]), "ENTITY_TYPE": "contact", "COMMENT": text}}


# -- the whole run ----------------------------------------------------------------------------


@dataclass
class BenchReport:
    ours: LaunchRun
    fast: list[FastRun]  # as shipped; then without its retry cap if it gave up
    memory: list[LaunchRun]

    @property
    def floor(self) -> float:
        """The floor for the requests we made."""
        return floor_seconds(self.ours.total_requests)

    @property
    def workload(self) -> int:
        return workload_requests(self.ours.commands, self.ours.contacts)

    @property
    def workload_floor(self) -> float:
        return floor_seconds(self.workload)

    @property
    def floor_ratio(self) -> float:
        """Wall time / the workload's floor (nan within the burst: no floor to speak of)."""
        floor = self.workload_floor
        return self.ours.seconds / floor if floor else float("nan")

    @property
    def fast_ratio(self) -> float:
        """Ours / the first fast-bitrix24 run that completed; when none did, ours / the time
        the longest one ran without finishing (an upper bound: it would have taken longer)."""
        done = [f for f in self.fast if not f.error]
        if done:
            return self.ours.seconds / done[0].seconds
        longest = max((f.seconds for f in self.fast), default=0.0)
        return self.ours.seconds / longest if longest else float("nan")


def run_launch_bench(
    contacts: int,
    steps: list[str],
    memory_sizes: list[int] | None = None,
    database_url: str = "",
    fast: bool = True,
    timeout: float = 3600.0,
    echo: Callable[[str], None] = print,
) -> BenchReport:
    """The launch under the standard plan's limits, fast-bitrix24 on the same portal, then
    one limits-off launch per size in ``memory_sizes`` for the worker's peak RSS."""
    bench_definition(steps)  # refuse unknown steps before seeding anything
    with (
        tempfile.TemporaryDirectory(prefix="marketapp-launch-") as folder,
        contextlib.ExitStack() as stack,
    ):
        rig = _rig(stack, Path(folder) / "limited", contacts, True, database_url)
        try:
            ours = run_launch(rig, steps, timeout)
            fast_runs = [run_fast_bitrix24(rig, steps)] if fast else []
            if fast_runs and fast_runs[0] is not None and fast_runs[0].error:
                bound = max(60.0, 1.5 * ours.seconds)  # enough to tell which is faster
                fast_runs.append(run_fast_bitrix24(rig, steps, patient=True, timeout=bound))
        finally:
            rig.close()
        memory = []
        for n, size in enumerate(memory_sizes or []):
            sized = _rig(stack, Path(folder) / f"memory{n}", size, False, database_url)
            try:
                memory.append(run_launch(sized, steps, timeout))
            finally:
                sized.close()
    report = BenchReport(ours, [r for r in fast_runs if r is not None], memory)
    print_report(report, steps, echo)
    return report


def _rig(
    stack: contextlib.ExitStack, folder: Path, contacts: int, limited: bool, database_url: str
) -> LaunchRig:
    """A rig on SQLite in ``folder``, or on a fresh PostgreSQL database dropped at the end."""
    from marketapp.bench import bench_database

    folder.mkdir(parents=True)
    url = stack.enter_context(bench_database(database_url, folder)) if database_url else ""
    return LaunchRig(folder, contacts, limited, url)


def print_report(report: BenchReport, steps: list[str], echo: Callable[[str], None]) -> None:
    ours = report.ours
    echo(
        f"launch of {'+'.join(steps)} on {ours.contacts:,} contacts, standard plan "
        f"(burst {BURST}, {RATE:g} req/s, operating budget on)"
    )
    echo(f"  launch() returned in {ours.launch_seconds * 1000:.0f} ms")
    echo(f"  wall time: {ours.seconds:.1f} s; records {ours.states}")
    _print_requests(ours.requests, ours.commands, ours.rejected, echo)
    echo(f"  commands per request: {ours.commands_per_request:.1f}")
    echo(
        f"  floor for our {ours.total_requests} requests: {report.floor:.1f} s; for the "
        f"workload ({report.workload} requests at the least): {report.workload_floor:.1f} s"
    )
    echo(f"  wall / workload floor: {report.floor_ratio:.3f}")
    got = ours.delivered
    echo(
        f"  delivered: e-mails to {len(got.emails):,} contacts, SMS to {len(got.sms):,}; "
        f"duplicates {got.duplicates()}"
    )
    if not report.fast:
        echo("fast-bitrix24: not run (--no-fast-bitrix24, or not installed)")
    for fast in report.fast:
        bucket = "retry cap lifted" if fast.patient else "as shipped"
        outcome = f"GAVE UP ({fast.error})" if fast.error else "completed"
        echo(
            f"fast-bitrix24 (same portal, webhook, {bucket}): {outcome} in {fast.seconds:.1f} s "
            f"(reading the contacts {fast.read_seconds:.1f} s)"
        )
        _print_requests(fast.requests, fast.commands, fast.rejected, echo)
        made = sum(fast.requests.values())
        echo(f"  floor for {made} requests: {floor_seconds(made):.1f} s")
    if any(not f.error for f in report.fast):
        echo(f"ratio ours/fast-bitrix24 (completed run): {report.fast_ratio:.3f}")
    elif report.fast:
        echo(
            f"ratio ours/fast-bitrix24 < {report.fast_ratio:.3f}: fast-bitrix24 did not finish "
            "(the ratio to its unfinished run is an upper bound)"
        )
    for run in report.memory:
        echo(
            f"peak worker RSS at {run.contacts:,} enrollments (limits off): "
            f"{run.peak_rss_kib / 1024:.0f} MiB; wall {run.seconds:.1f} s, "
            f"{sum(run.requests.values())} requests, records {run.states}, "
            f"duplicates {run.delivered.duplicates()}"
        )


def _print_requests(
    by_method: Counter[str], commands: Counter[str], rejected: int, echo: Callable[[str], None]
) -> None:
    echo(f"  HTTP requests: {sum(by_method.values())} (503: {rejected})")
    for method, count in sorted(by_method.items()):
        echo(f"    {method}: {count}")
    for method, count in sorted(commands.items()):
        echo(f"      batch command {method}: {count}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        run_launch_bench(200, ["email", "sms"], [200])
