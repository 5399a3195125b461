"""The sweeper re-queues robot calls that nobody works on, and only those."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from marketapp.db import db_session
from marketapp.jobs import get_jobs
from marketapp.models import PortalStatus, RobotCall, RobotCallState
from marketapp.robots import sweep_robot_calls
from tests.conftest import make_app
from tests.support import add_portal, add_robot_call


def test_sweeper_requeues_abandoned_calls(tmp_path: Path, database_url: str) -> None:
    app = make_app(tmp_path, database_url, jobs_immediate=False)
    old = datetime.now(UTC) - timedelta(minutes=5)
    with app.app_context():
        session = db_session()
        active, parked = add_portal(session, "a" * 32), add_portal(session, "b" * 32)
        parked.status = PortalStatus.NEEDS_REAUTH
        add_robot_call(active, 1, RobotCallState.RUNNING, lease_until=old)  # worker died
        add_robot_call(parked, 2, RobotCallState.QUEUED)
        add_robot_call(active, 3, RobotCallState.DONE)
        session.commit()
        session.execute(update(RobotCall).values(updated_at=old))
        session.commit()
        huey = get_jobs().huey
        sweep_robot_calls()
        assert huey.pending_count() == 1
        task = huey.dequeue()
        assert task.args == (active.id,)
