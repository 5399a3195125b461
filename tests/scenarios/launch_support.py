"""Acceptance rig for launches: the app over HTTP, its job worker as a separate process that
can be SIGKILLed, and the emulator with its standard-plan limits, faults and outbox."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from marketapp.bench_launch import Deliveries, WorkerProcess, deliveries
from marketapp.config import get_config
from marketapp.db import db_session
from marketapp.devportal import DevportalServer
from tests.e2e.harness import AppServer, Installed, install, start_app

EMAIL_STEP = {"type": "send_email", "subject": "Hello {{ contact.NAME }}", "body": "Dear friend"}
SMS_STEP = {"type": "send_sms", "text": "Hi {{ contact.NAME }}, see you!"}
WAIT_STEP = {"type": "wait", "minutes": 1}


def definition(*steps: dict[str, Any], key: str = "acceptance") -> dict[str, Any]:
    return {
        "schema": 1,
        "key": key,
        "name": {"en": "Acceptance", "ru": "Приёмка"},
        "description": {"en": "E-mail, then SMS.", "ru": "Письмо, затем SMS."},
        "entity_types": ["CONTACT"],
        "steps": list(steps),
    }


@pytest.fixture(scope="module")
def limited_portal() -> Iterator[DevportalServer]:
    """The emulator with the cloud's limits on: standard plan, 2 req/s, burst 50, budget."""
    with DevportalServer({"portals": ["standard"]}) as server:
        yield server


@dataclass
class Rig:
    installed: Installed
    worker: WorkerProcess

    @property
    def app(self) -> Any:
        return self.installed.app.app

    @property
    def server(self) -> DevportalServer:
        return self.installed.devportal

    def contacts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.installed.portal("/crm/contact")
        return found

    def token(self, user_id: int = 1) -> str:
        body = self.installed.portal(
            "/tokens", "POST", client_id=self.installed.client_id, user_id=user_id
        )
        return str(body["access_token"])

    def launch(self, steps: list[dict[str, Any]], ids: list[int], **kw: Any) -> int:
        """Save the scenario and launch it on contacts ``ids`` as user 1; the launch id."""
        from marketapp.models import Portal
        from marketapp.scenarios import versions
        from marketapp.scenarios.launches import launch
        from marketapp.scenarios.preview import Selection

        with self.app.app_context():
            session = db_session()
            portal = session.scalars(select(Portal)).one()
            version = versions.save(session, portal, definition(*steps), author_id=1)
            session.commit()
            started = launch(
                session,
                portal,
                version,
                Selection("CONTACT", ids=tuple(ids)),
                {},
                1,
                self.token(),
                kw.get("idempotency_key", secrets.token_hex(8)),
            )
            launch_id = int(started.id)
            session.commit()
            session.close()
        return launch_id

    def unfinished(self, launch_id: int) -> int:
        from marketapp.models.launch import FINAL_STATES, Enrollment

        with self.app.app_context():
            session = db_session()
            count = session.scalar(
                select(func.count(Enrollment.id)).where(
                    Enrollment.launch_id == launch_id, Enrollment.state.not_in(FINAL_STATES)
                )
            )
            session.close()
        return int(count or 0)

    def states(self, launch_id: int) -> dict[str, int]:
        from marketapp.models.launch import Enrollment

        with self.app.app_context():
            session = db_session()
            rows = session.execute(
                select(Enrollment.state, func.count(Enrollment.id))
                .where(Enrollment.launch_id == launch_id)
                .group_by(Enrollment.state)
            ).all()
            session.close()
        return {str(state): int(n) for state, n in rows}

    def reasons(self, launch_id: int) -> dict[str, int]:
        """Final skips and failures by reason."""
        from marketapp.models.launch import Enrollment, EnrollmentState

        with self.app.app_context():
            session = db_session()
            rows = session.execute(
                select(Enrollment.state, Enrollment.reason, func.count(Enrollment.id))
                .where(
                    Enrollment.launch_id == launch_id,
                    Enrollment.state.in_([EnrollmentState.SKIPPED, EnrollmentState.FAILED]),
                )
                .group_by(Enrollment.state, Enrollment.reason)
            ).all()
            session.close()
        return {f"{state}:{reason}": int(n) for state, reason, n in rows}

    def failures(self, launch_id: int) -> list[tuple[int, str, str]]:
        """(record id, reason, message) of the enrollments that ended failed."""
        from marketapp.models.launch import Enrollment, EnrollmentState

        with self.app.app_context():
            session = db_session()
            rows = session.execute(
                select(Enrollment.entity_id, Enrollment.reason, Enrollment.message).where(
                    Enrollment.launch_id == launch_id,
                    Enrollment.state == EnrollmentState.FAILED,
                )
            ).all()
            session.close()
        return [(int(i), str(r), str(m)) for i, r, m in rows]

    def advance_waits(self, seconds: float) -> int:
        """Let ``seconds`` pass for waiting enrollments: their due time moves back, and the
        engine is woken as its timer would (the worker's own clock cannot be moved)."""
        from datetime import timedelta

        from marketapp.jobs import enqueue
        from marketapp.models import Portal
        from marketapp.models.launch import Enrollment, EnrollmentState
        from marketapp.scenarios import engine

        with self.app.app_context():
            session = db_session()
            portal = session.scalars(select(Portal)).one()
            enqueue(engine.process_portal, portal.id, session=session)
            result = session.execute(
                update(Enrollment)
                .where(Enrollment.state == EnrollmentState.WAITING)
                .values(next_at=Enrollment.next_at - timedelta(seconds=seconds))
                .execution_options(synchronize_session=False)
            )
            session.commit()
            session.close()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def expire_leases(self) -> int:
        """After a SIGKILL: the dead worker's leases run out (as time would make them)."""
        from datetime import UTC, datetime, timedelta

        from marketapp.models import Portal
        from marketapp.models.launch import Enrollment, EnrollmentState

        with self.app.app_context():
            session = db_session()
            result = session.execute(
                update(Enrollment)
                .where(Enrollment.state == EnrollmentState.RUNNING)
                .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
                .execution_options(synchronize_session=False)
            )
            # And the dead worker's hold on the portal (one engine job per portal).
            session.execute(update(Portal).values(engine_until=None))
            session.commit()
            session.close()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def sweep(self) -> None:
        """What the periodic sweeper does (it runs once a minute in a worker)."""
        from marketapp.scenarios import engine

        with self.app.app_context():
            engine.sweep_enrollments()

    def wait_done(
        self,
        launch_id: int,
        timeout: float,
        tick: Callable[[], None] | None = None,
        every: float = 5.0,
    ) -> float:
        """Seconds until every enrollment is final; ``tick`` runs every ``every`` s."""
        began = time.monotonic()
        last_tick = began
        while self.unfinished(launch_id):
            now = time.monotonic()
            if now - began > timeout:
                raise TimeoutError(
                    f"launch {launch_id} unfinished after {timeout:.0f} s: "
                    f"{self.states(launch_id)}\n{self.worker.log_tail()}"
                )
            assert self.worker.alive, self.worker.log_tail()
            if tick is not None and now - last_tick >= every:
                tick()
                last_tick = now
            time.sleep(0.25)
        return time.monotonic() - began

    def deliveries(self) -> Deliveries:
        return deliveries(self.server, self.app, self.installed.member_id)

    def requests(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.installed.emu(
            "GET", f"/requests?member_id={self.installed.member_id}"
        )
        return found


def make_rig(
    tmp_path: Path, database_url: str, server: DevportalServer, contacts: int, **config: Any
) -> Iterator[Rig]:
    """Install the app on portal 1, seed ``contacts`` contacts, run the worker in a process."""
    server.emulator.reset()
    app_server: AppServer = start_app(tmp_path, database_url, server, **config)
    worker: WorkerProcess | None = None
    try:
        installed = install(server, app_server)
        installed.portal("/seed", "POST", contacts=contacts, companies=1, deals=0, leads=0)
        app_server.worker.stop.set()  # from here on jobs run in the worker process only
        app_server.worker.thread.join(timeout=10)
        with app_server.app.app_context():
            worker = WorkerProcess(get_config(), threads=2, log_path=tmp_path / "worker.log")
        worker.start()
        yield Rig(installed, worker)
    finally:
        if worker is not None:
            worker.stop()
        app_server.close()


def email_sms_ids(rig: Rig) -> list[int]:
    return [int(c["ID"]) for c in rig.contacts()]


def should_get(rig: Rig) -> tuple[set[int], set[int]]:
    """Contacts that should get an e-mail / an SMS (an address / a valid phone, as the emulator's
    stats count them; no opt-out fields are configured)."""
    from marketapp.devportal.seed import valid_phone

    emails, sms = set(), set()
    for c in rig.contacts():
        if c.get("EMAIL"):
            emails.add(int(c["ID"]))
        if any(valid_phone(p["VALUE"]) for p in c.get("PHONE") or []):
            sms.add(int(c["ID"]))
    return emails, sms
