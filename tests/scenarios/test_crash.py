"""Crash survival: the worker process is SIGKILLed three times during a 1,000-contact e-mail +
SMS launch; afterwards every contact has exactly one e-mail and one SMS, none lost, none
duplicated. Limits are off (speed), the app's own pacing is lifted, the kills stay mid-run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.devportal import DevportalServer
from tests.scenarios.launch_support import EMAIL_STEP, SMS_STEP, Rig, make_rig, should_get

pytestmark = pytest.mark.e2e

CONTACTS = 1000
KILLS = 3


@pytest.fixture(scope="module")
def unlimited_portal() -> Iterator[DevportalServer]:
    with DevportalServer({"limits_enabled": False, "portals": ["standard"]}) as server:
        yield server


@pytest.fixture
def rig(tmp_path: Path, database_url: str, unlimited_portal: DevportalServer) -> Iterator[Rig]:
    yield from make_rig(tmp_path, database_url, unlimited_portal, CONTACTS)


def _lift_pacing(rig: Rig) -> None:
    from marketapp.models import Portal

    with rig.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        portal.rate_per_second, portal.rate_burst = 200, 1000
        db_session().commit()


def _progress(rig: Rig) -> int:
    got = rig.deliveries()
    return len(got.emails) + len(got.sms)


def test_three_sigkills_mid_launch_every_contact_once(rig: Rig) -> None:
    _lift_pacing(rig)
    emails, sms = should_get(rig)
    total = len(emails) + len(sms)
    ids = [int(c["ID"]) for c in rig.contacts()]
    launch_id = rig.launch([EMAIL_STEP, SMS_STEP], ids)
    killed_at: list[int] = []
    for kill in range(KILLS):
        # Kill at roughly 1/4, 2/4 and 3/4 of the deliveries: mid-run, work in flight.
        target = total * (kill + 1) // (KILLS + 1)
        deadline = time.monotonic() + 300
        while _progress(rig) < target:
            assert time.monotonic() < deadline, (rig.states(launch_id), rig.worker.log_tail())
            assert rig.worker.alive, rig.worker.log_tail()
            time.sleep(0.05)
        rig.worker.kill()
        killed_at.append(_progress(rig))
        rig.expire_leases()  # time passes: the dead worker's leases run out
        rig.sweep()  # what the next sweeper run does: re-queue the lost work
        rig.worker.start()
    assert all(0 < at < total for at in killed_at), (killed_at, total)
    seconds = rig.wait_done(launch_id, timeout=600, tick=rig.sweep, every=5)
    got = rig.deliveries()
    print(
        f"\ncrash: {len(ids)} contacts, SIGKILL at {killed_at} of {total} deliveries, "
        f"done {seconds:.1f} s after the last restart; states {rig.states(launch_id)}; "
        f"skips/failures {rig.reasons(launch_id)} {rig.failures(launch_id)}; "
        f"worker peak RSS {rig.worker.rss_kib() / 1024:.0f} MiB"
    )
    assert got.duplicates() == 0, (got.emails.most_common(3), got.sms.most_common(3))
    # A kill between writing an SMS's outbox row and settling it is reconciled from the row
    # (the outbox confirms it by its key): sent once, not resent, not failed.
    assert rig.failures(launch_id) == []
    assert set(got.emails) == emails  # none lost
    assert set(got.sms) == sms
