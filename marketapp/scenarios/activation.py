"""Deactivating and reactivating a scenario.

Deactivating asks what to do with the records in it:

- ``keep``: its launches go to sleep. Their enrollments stay where they are; no step runs; a
  wait that ends meanwhile continues at reactivation. The launch counts them as ``sleeping``.
- ``drop``: every launch of it is stopped; records that were in it end ``stopped`` with the
  reason ``dropped`` (a step in flight finishes first, as with stop).

Reactivating wakes the sleepers: their launches run again from where they were. A launch that
fell asleep while its target was still being read (``expanding``: a filter's pages, or the
launching user's rights on explicit ids) goes back to reading it, so no record skips that check.
Dropping after keeping drops the sleepers too.
An inactive scenario cannot be launched; the run-scenario robot and schedules skip it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketapp.jobs import enqueue
from marketapp.models import Launch, LaunchState, Portal, Scenario
from marketapp.scenarios import engine
from marketapp.scenarios.counters import bump, launch_counters
from marketapp.scenarios.launches import active_count, expand_launch, stop

AWAKE = (LaunchState.RUNNING, LaunchState.EXPANDING, LaunchState.PARKED)
# ``Launch.reason`` of a launch put to sleep while its target was being read.
ASLEEP_EXPANDING = "asleep_expanding"


def deactivate(
    session: Session, portal: Portal, scenario: Scenario, keep: Literal["keep", "drop"]
) -> dict[str, Any]:
    """Deactivate ``scenario``; its running launches sleep (``keep``) or stop (``drop``)."""
    scenario.active = False
    states = (*AWAKE, LaunchState.STOPPING) + ((LaunchState.SLEEPING,) if keep == "drop" else ())
    launches = _launches(session, scenario, states)
    sleeping = dropped = 0
    for row in launches:
        if keep == "keep" and row.state is not LaunchState.STOPPING:
            if row.state is LaunchState.EXPANDING:
                row.reason = ASLEEP_EXPANDING
            row.state = LaunchState.SLEEPING
            count = active_count(session, row.id)
            bump(session, row, Counter({("", "sleeping"): count}))
            sleeping += count
        elif keep == "drop":
            dropped += int(stop(session, portal, row.id, reason="dropped")["stopped"])
    session.commit()
    return {"scenario": scenario.key, "active": False, "sleeping": sleeping, "dropped": dropped}


def activate(session: Session, portal: Portal, scenario: Scenario) -> dict[str, Any]:
    """Activate ``scenario``; its sleeping launches run again."""
    scenario.active = True
    woken = 0
    reading: list[int] = []
    for row in _launches(session, scenario, (LaunchState.SLEEPING,)):
        if row.reason == ASLEEP_EXPANDING:
            row.state, row.reason = LaunchState.EXPANDING, ""
            reading.append(row.id)
        else:
            row.state = LaunchState.RUNNING
        count = launch_counters(session, row.id).get("", {}).get("sleeping", 0)
        bump(session, row, Counter({("", "sleeping"): -count}))
        woken += count
    for launch_id in reading:
        enqueue(expand_launch, launch_id, session=session)
    if woken:
        enqueue(engine.process_portal, portal.id, session=session)
    session.commit()
    return {"scenario": scenario.key, "active": True, "woken": woken}


def _launches(
    session: Session, scenario: Scenario, states: tuple[LaunchState, ...]
) -> list[Launch]:
    query = select(Launch).where(Launch.scenario_id == scenario.id, Launch.state.in_(states))
    return list(session.scalars(query.order_by(Launch.id)))
