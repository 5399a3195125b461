"""Deactivation corner cases over HTTP on the emulator: a launch put to sleep while its target was
still being read (the launching user's rights on explicit ids) reads it at reactivation, so no
record skips that check; dropping after keeping drops the sleepers; stopping a sleeping launch
leaves none counted as sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select

from marketapp.models import Launch, LaunchState
from marketapp.scenarios import activation, launches
from marketapp.scenarios.preview import Selection
from tests.e2e.harness import Installed, Worker
from tests.scenarios.test_engine import (
    COMMENT,
    Clock,
    all_ids,
    in_app,
    settle,
    start,
    states,
    status,
)
from tests.scenarios.test_policies import (
    MINUTE_WAIT,
    clock,  # noqa: F401 - fixture
    portal_of,
    scenario_row,
    seeded,  # noqa: F401 - fixture
    with_policies,
)

pytestmark = pytest.mark.e2e


@contextmanager
def no_worker(inst: Installed) -> Iterator[None]:
    """Jobs queue up but nothing runs them until the block ends (a new worker takes over)."""
    old = inst.app.worker
    old.stop.set()
    old.thread.join()
    try:
        yield
    finally:
        worker = Worker(old.huey)
        inst.app.worker = worker
        worker.thread.start()


def deactivate(inst: Installed, key: str, keep: Any) -> Any:
    return in_app(
        inst, lambda s: activation.deactivate(s, portal_of(s), scenario_row(s, key), keep)
    )


def activate(inst: Installed, key: str) -> Any:
    return in_app(inst, lambda s: activation.activate(s, portal_of(s), scenario_row(s, key)))


def launch_state(inst: Installed, launch_id: int) -> str:
    return str(in_app(inst, lambda s: s.get(Launch, launch_id).state.value))


def test_asleep_before_the_rights_check_checks_them_at_reactivation(
    seeded: Installed,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    seeded.portal("/permissions", "POST", records={"2": "own"})
    contacts = seeded.portal("/crm/contact")
    mine = [int(c["ID"]) for c in contacts if c["ASSIGNED_BY_ID"] == 2][:2]
    others = [int(c["ID"]) for c in contacts if c["ASSIGNED_BY_ID"] == 1][:2]
    assert mine and others
    defn = with_policies(COMMENT, key="asleep-reading")
    with no_worker(seeded):  # the rights check (a job) has not run when the admin deactivates
        from tests.scenarios.test_engine import token

        launch_id = start_as(seeded, defn, (*mine, *others), token(seeded, 2))
        assert launch_state(seeded, launch_id) == LaunchState.EXPANDING.value
        deactivate(seeded, "asleep-reading", "keep")
        assert launch_state(seeded, launch_id) == LaunchState.SLEEPING.value
    settle(seeded)
    assert launch_state(seeded, launch_id) == LaunchState.SLEEPING.value
    activate(seeded, "asleep-reading")
    settle(seeded)
    # The records user 2 cannot read were never run with the app's rights.
    assert states(seeded, launch_id) == {"done": len(mine), "skipped:access_denied": len(others)}
    assert status(seeded, launch_id)["counters"]["sleeping"] == 0


def start_as(inst: Installed, defn: dict[str, Any], ids: tuple[int, ...], user_token: str) -> int:
    import secrets

    from marketapp.db import db_session
    from marketapp.models import Portal
    from marketapp.scenarios import versions

    with inst.app.app.app_context():
        session = db_session()
        portal = session.scalars(select(Portal)).one()
        version = versions.save(session, portal, defn, author_id=1)
        session.commit()
        row = launches.launch(
            session, portal, version, Selection("CONTACT", ids), {}, 2, user_token,
            secrets.token_hex(8), user={"ID": 2, "NAME": "User"},
        )  # fmt: skip
        launch_id = int(row.id)
        session.close()
    return launch_id


def test_drop_after_keep_drops_the_sleepers(seeded: Installed, clock: Clock) -> None:  # noqa: F811
    defn = with_policies(MINUTE_WAIT, COMMENT, key="keep-then-drop")
    ids = sorted(all_ids(seeded))[:3]
    launch_id = start(seeded, defn, Selection("CONTACT", tuple(ids)))
    settle(seeded)
    assert deactivate(seeded, "keep-then-drop", "keep")["sleeping"] == 3
    assert deactivate(seeded, "keep-then-drop", "drop")["dropped"] == 3
    assert states(seeded, launch_id) == {"stopped:dropped": 3}
    report = status(seeded, launch_id)
    assert report["state"] == LaunchState.STOPPED.value and report["counters"]["sleeping"] == 0


def test_stopping_a_sleeping_launch_leaves_none_sleeping(seeded: Installed, clock: Clock) -> None:  # noqa: F811
    defn = with_policies(MINUTE_WAIT, COMMENT, key="stop-asleep")
    ids = sorted(all_ids(seeded))[:2]
    launch_id = start(seeded, defn, Selection("CONTACT", tuple(ids)))
    settle(seeded)
    deactivate(seeded, "stop-asleep", "keep")
    in_app(seeded, lambda s: launches.stop(s, portal_of(s), launch_id))
    report = status(seeded, launch_id)
    assert report["counters"]["sleeping"] == 0 and report["counters"]["stopped"] == 2
    assert activate(seeded, "stop-asleep")["woken"] == 0


def test_records_that_met_the_goal_count_as_finished(seeded: Installed, clock: Clock) -> None:  # noqa: F811
    goal = {"rules": [{"left": {"field": "ID"}, "op": "gt", "right": {"value": 0}}]}
    defn = with_policies(COMMENT, key="all-goal", goal=goal)
    ids = sorted(all_ids(seeded))[:3]
    launch_id = start(seeded, defn, Selection("CONTACT", tuple(ids)))
    settle(seeded)
    assert states(seeded, launch_id) == {"goal": 3}
    report = status(seeded, launch_id)
    assert report["finished"] == 3 and report["progress"] == 1.0
