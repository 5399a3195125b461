"""Re-entry: what happens when a record enters a scenario it has been in, or still is in.

One rule per scenario (``policies.reentry``), whatever the way in (a launch, the run-scenario
robot, a schedule):

- ``never``: a record enters once, ever; later entries are skipped (``reentry_never``);
- ``while_active``: not while it is in the scenario (``reentry_active``); after it left, again;
- ``restart``: its earlier entry that has not started its step (pending or waiting) is stopped
  (``restarted``) and the new one runs from the beginning; an earlier entry whose step is in
  flight finishes that step first, then stops (the engine sees the reason);
- ``always``: every entry runs fully, side by side.

Entries skipped by this rule do not count as having been in the scenario.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from marketapp.models import Enrollment, EnrollmentState, Launch
from marketapp.scenarios.counters import Deltas, bump

ACTIVE = (EnrollmentState.PENDING, EnrollmentState.RUNNING, EnrollmentState.WAITING)
SKIP_REASONS = ("reentry_never", "reentry_active")
_CHUNK = 2_000


def refused(session: Session, row: Launch, rule: str, ids: list[int]) -> dict[int, str]:
    """The records that may not enter ``row`` under ``rule``: id → skip reason. With
    ``restart`` their earlier pending or waiting entries are stopped here (no commit)."""
    refusals, active = check(
        session, row.portal_id, row.scenario_id, row.entity_type, rule, ids, row.id
    )
    if rule == "restart" and active:
        restart(session, row, sorted(active))
    return refusals


def check(
    session: Session,
    portal_id: int,
    scenario_id: int,
    entity_type: str,
    rule: str,
    ids: list[int],
    launch_id: int | None = None,
) -> tuple[dict[int, str], set[int]]:
    """(the records ``rule`` refuses: id → reason, the records still in the scenario), with no
    side effect (preview asks it too); ``launch_id`` is the entry's own launch."""
    if rule == "always":
        return {}, set()
    earlier = _earlier(session, portal_id, scenario_id, entity_type, ids, launch_id)
    active = {i for i, states in earlier.items() if states & set(ACTIVE)}
    if rule == "never":
        return dict.fromkeys(earlier, "reentry_never"), active
    if rule == "while_active":
        return dict.fromkeys(active, "reentry_active"), active
    return {}, active


def message(reason: str) -> str:
    if reason == "reentry_never":
        return str(_("The record has been in this scenario before; it enters only once."))
    return str(_("The record is still in this scenario; it cannot enter it twice at a time."))


def _earlier(
    session: Session,
    portal_id: int,
    scenario_id: int,
    entity_type: str,
    ids: list[int],
    launch_id: int | None,
) -> dict[int, set[EnrollmentState]]:
    """The states of each record's entries in the scenario's launches (but ``launch_id``)."""
    found: dict[int, set[EnrollmentState]] = defaultdict(set)
    for n in range(0, len(ids), _CHUNK):
        query = (
            select(Enrollment.entity_id, Enrollment.state)
            .join(Launch, Launch.id == Enrollment.launch_id)
            .where(
                Enrollment.portal_id == portal_id,
                Enrollment.entity_type == entity_type,
                Enrollment.entity_id.in_(ids[n : n + _CHUNK]),
                Enrollment.launch_id != (launch_id or 0),
                Enrollment.reason.not_in(SKIP_REASONS),
                Launch.scenario_id == scenario_id,
            )
        )
        for entity_id, state in session.execute(query):
            found[int(entity_id)].add(EnrollmentState(state))
    return found


def restart(session: Session, row: Launch, ids: list[int]) -> None:
    """Stop the records' earlier entries that wait or are due (``restarted``); entries in
    flight are marked and stop after their step."""
    scenario_launches = select(Launch.id).where(
        Launch.scenario_id == row.scenario_id, Launch.id != row.id
    )
    mine = (
        Enrollment.portal_id == row.portal_id,
        Enrollment.entity_type == row.entity_type,
        Enrollment.entity_id.in_(ids),
        Enrollment.launch_id.in_(scenario_launches),
    )
    deltas: dict[int, Deltas] = defaultdict(Counter)
    for state in (EnrollmentState.PENDING, EnrollmentState.WAITING):
        ended = session.execute(
            update(Enrollment)
            .where(*mine, Enrollment.state == state)
            .values(state=EnrollmentState.STOPPED, reason="restarted", lease_until=None)
            .returning(Enrollment.launch_id, Enrollment.step)
            .execution_options(synchronize_session=False)
        ).all()
        for launch_id, step in ended:
            d = deltas[int(launch_id)]
            d[(step, "stopped")] += 1
            d[("", "stopped")] += 1
            if state is EnrollmentState.WAITING:
                d[(step, "waiting")] -= 1
                d[("", "waiting")] -= 1
    session.execute(
        update(Enrollment)
        .where(*mine, Enrollment.state == EnrollmentState.RUNNING)
        .values(reason="restarted")
        .execution_options(synchronize_session=False)
    )
    for launch_id, d in deltas.items():
        other = session.get(Launch, launch_id)
        if other is not None:
            bump(session, other, d)
    if deltas:
        from marketapp.scenarios.robot import enrollments_ended

        session.flush()
        enrollments_ended(session, sorted(deltas))
