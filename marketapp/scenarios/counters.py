"""Launch counters, moved incrementally in the transaction of the state change they count.

A counter is (launch, step, name): ``step`` ``""`` is the launch as a whole; names are
``entered``, ``waiting`` (a gauge: up on entering a wait, down on leaving it), ``done``,
``stopped``, ``goal``, ``skipped:<reason>``, ``failed:<reason>``. :func:`bump` adds deltas with
one upsert (``INSERT … ON CONFLICT DO UPDATE SET value = value + excluded.value``) and leaves
the commit to the caller, so a counter never disagrees with the rows it counts. Per scenario
the counters are sums of its launches' rows (a few rows a launch, never the enrollments).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from marketapp.models import Launch, LaunchCounter

Deltas = Counter[tuple[str, str]]  # (step, name) -> delta


def bump(session: Session, launch: Launch, deltas: Deltas) -> None:
    """Add ``deltas`` to the launch's counters (no commit)."""
    rows = [
        {
            "portal_id": launch.portal_id,
            "launch_id": launch.id,
            "scenario_id": launch.scenario_id,
            "step": step,
            "name": name,
            "value": value,
        }
        for (step, name), value in sorted(deltas.items())
        if value
    ]
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(LaunchCounter)
    stmt = stmt.on_conflict_do_update(
        index_elements=["launch_id", "step", "name"],
        set_={"value": LaunchCounter.value + stmt.excluded.value},
    )
    session.execute(stmt, rows)


def launch_counters(session: Session, launch_id: int) -> dict[str, dict[str, int]]:
    """``{step: {name: value}}`` of one launch (``""``: the whole launch)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    query = select(LaunchCounter.step, LaunchCounter.name, LaunchCounter.value).where(
        LaunchCounter.launch_id == launch_id
    )
    for step, name, value in session.execute(query):
        out[step][name] = value
    return dict(out)


def scenario_counters(session: Session, portal_id: int, scenario_id: int) -> dict[str, int]:
    """The launch-level counters of every launch of a scenario, summed."""
    query = (
        select(LaunchCounter.name, func.sum(LaunchCounter.value))
        .where(
            LaunchCounter.portal_id == portal_id,
            LaunchCounter.scenario_id == scenario_id,
            LaunchCounter.step == "",
        )
        .group_by(LaunchCounter.name)
    )
    return {name: int(total or 0) for name, total in session.execute(query)}


def shaped(flat: dict[str, int]) -> dict[str, Any]:
    """``{"skipped:no_phone": 3, "done": 5}`` → ``{"done": 5, "skipped": {"no_phone": 3}}``."""
    out: dict[str, Any] = {"entered": 0, "waiting": 0, "done": 0, "stopped": 0, "goal": 0}
    out["skipped"], out["failed"] = {}, {}
    for name, value in flat.items():
        kind, _sep, reason = name.partition(":")
        if reason:
            out.setdefault(kind, {})[reason] = value
        else:
            out[kind] = value
    return out
