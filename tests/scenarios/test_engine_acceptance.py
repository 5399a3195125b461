"""Acceptance of the scenario engine over HTTP on the emulator, the worker in its own process:
correctness under the standard plan's limits (e-mail, wait 1 minute, SMS), faults (20% 503s
and timeouts plus a forced token expiry) and fairness to robot calls during a big launch.
Figures are printed (``-s``); only generous "it happened" bounds are asserted."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketapp.bench_launch import request_summary
from marketapp.devportal import DevportalServer
from tests.scenarios.launch_support import (
    EMAIL_STEP,
    SMS_STEP,
    WAIT_STEP,
    Rig,
    limited_portal,
    make_rig,
    should_get,
)
from tests.support import run_robot, workflow

pytestmark = pytest.mark.e2e
__all__ = ["limited_portal"]

# The full correctness run is 2,000 contacts: MARKETAPP_ACCEPTANCE_CONTACTS=2000.
CONTACTS = int(os.environ.get("MARKETAPP_ACCEPTANCE_CONTACTS", "300"))
BIG = 3000  # about 40 s of REST work under the standard plan (1,000 fit in its burst)
ROBOT_ANSWER_BOUND = 60.0  # seconds: "answered", not a performance threshold


@pytest.fixture
def rig(tmp_path: Path, database_url: str, limited_portal: DevportalServer) -> Iterator[Rig]:
    yield from make_rig(tmp_path, database_url, limited_portal, CONTACTS)


def _assert_exactly_once(rig: Rig, launch_id: int) -> None:
    got = rig.deliveries()
    emails, sms = should_get(rig)
    assert got.duplicates() == 0, (got.emails.most_common(3), got.sms.most_common(3))
    assert set(got.emails) == emails, (len(got.emails), len(emails))
    assert set(got.sms) == sms, (len(got.sms), len(sms))
    reasons = rig.reasons(launch_id)
    skipped = len(rig.contacts()) - len(emails & sms)
    assert sum(reasons.values()) >= skipped - len(emails ^ sms), reasons
    assert all(":" in key and key.split(":", 1)[1] for key in reasons), reasons  # with reasons


def test_email_wait_sms_under_the_standard_limits(rig: Rig) -> None:
    ids = [int(c["ID"]) for c in rig.contacts()]
    began = time.monotonic()
    launch_id = rig.launch([EMAIL_STEP, WAIT_STEP, SMS_STEP], ids)

    def tick() -> None:  # the one-minute wait runs on a controlled clock
        rig.advance_waits(60)

    seconds = rig.wait_done(launch_id, timeout=600, tick=tick, every=2)
    by_method, commands, rejected = request_summary(rig.requests())
    print(
        f"\ncorrectness: {len(ids)} contacts in {seconds:.1f} s "
        f"(launch() to done {time.monotonic() - began:.1f} s); states {rig.states(launch_id)}; "
        f"skips {rig.reasons(launch_id)}; requests {dict(by_method)}; "
        f"commands {dict(commands)}; 503s {rejected}"
    )
    _assert_exactly_once(rig, launch_id)
    assert rejected == 0  # paced under the bucket, not throttled by errors


def test_faults_and_token_expiry_complete_once(rig: Rig) -> None:
    ids = [int(c["ID"]) for c in rig.contacts()]
    rig.installed.portal(
        "/faults", "POST", rates={"error_503": 0.1, "slow": 0.1, "slow_seconds": 12}
    )
    launch_id = rig.launch([EMAIL_STEP, SMS_STEP], ids)
    expired = False

    def tick() -> None:
        nonlocal expired
        if not expired and rig.deliveries().emails:
            rig.installed.portal("/faults", "POST", expire_tokens=True)
            expired = True

    seconds = rig.wait_done(launch_id, timeout=900, tick=tick, every=1)
    rig.installed.portal("/faults", "POST", rates={})
    by_method, _commands, rejected = request_summary(rig.requests())
    print(
        f"\nfaults: {len(ids)} contacts in {seconds:.1f} s, token expired mid-run: {expired}; "
        f"states {rig.states(launch_id)}; requests {dict(by_method)}; 503s {rejected}"
    )
    assert expired
    _assert_exactly_once(rig, launch_id)


@pytest.fixture
def big_rig(tmp_path: Path, database_url: str, limited_portal: DevportalServer) -> Iterator[Rig]:
    yield from make_rig(tmp_path, database_url, limited_portal, BIG)


def test_robot_call_is_answered_while_a_big_launch_runs(big_rig: Rig) -> None:
    rig = big_rig
    contacts = rig.contacts()
    launch_id = rig.launch([EMAIL_STEP, SMS_STEP], [int(c["ID"]) for c in contacts])
    time.sleep(3)  # the launch is under way: its batches keep the portal's bucket busy
    assert rig.unfinished(launch_id)
    began = time.monotonic()
    wid = run_robot(
        rig.installed, "timeline_comment", f"CONTACT_{contacts[0]['ID']}", text="Robot call"
    )
    while workflow(rig.installed, wid)["state"] != "completed":
        assert time.monotonic() - began < ROBOT_ANSWER_BOUND, workflow(rig.installed, wid)
        time.sleep(0.1)
    answered = time.monotonic() - began
    still_running = rig.unfinished(launch_id)
    print(f"\nfairness: robot call answered in {answered:.2f} s; launch unfinished {still_running}")
    assert still_running  # it was answered while the launch ran, not after it
    rig.wait_done(launch_id, timeout=600)
