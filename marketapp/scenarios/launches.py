"""Launching a scenario version on records; the launch's status; stopping it.

:func:`launch` writes the launch and one enrollment per record in bulk (one ``INSERT`` of many
rows), commits, queues the work after the commit and returns at once. The same
``idempotency_key`` on the same portal (a double click, a repeated POST) returns the same
launch: a unique key decides, also for two requests at the same moment.

Rights (the preview rule). A user's token from a page lasts an hour and comes without a refresh
token, so it cannot carry a run that waits for days. The target is therefore read with the
launching user's token at launch time, by :func:`expand_launch` (queued at once): a filter
yields what the user sees, page by page, committed per page; explicit ids the user cannot read
end ``skipped``/``access_denied``. The token is wiped when the target is read. Every later step
runs with the portal's stored (app) token. A launch without a user token (the CLI, robots)
takes its ids as given; its filter (a scheduled run) is read with the portal's stored token.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from marketapp.actions.base import ENTITY_METHODS, Target, load_records
from marketapp.bitrix.client import client_for, client_for_user
from marketapp.bitrix.errors import BitrixError, PortalUnavailable
from marketapp.db import db_session
from marketapp.jobs import enqueue, job
from marketapp.models import (
    Enrollment,
    EnrollmentState,
    Launch,
    LaunchState,
    Portal,
    Scenario,
    ScenarioVersion,
)
from marketapp.scenarios import engine, reentry
from marketapp.scenarios.counters import (
    Deltas,
    bump,
    launch_counters,
    scenario_counters,
    shaped,
)
from marketapp.scenarios.definition import ScenarioDefinition
from marketapp.scenarios.preview import (
    RECORDS_PER_REQUEST,
    Selection,
    _hidden,
    check_filter,
    list_pages,
)
from marketapp.scenarios.scenario_variables import initial_variables

log = logging.getLogger(__name__)
ACTIVE = (EnrollmentState.PENDING, EnrollmentState.RUNNING, EnrollmentState.WAITING)
# Rows per INSERT statement: well inside SQLite's and PostgreSQL's parameter limits.
_INSERT_CHUNK = 2_000


class LaunchError(ValueError):
    """The launch cannot be made (a wrong entity type, an empty key …)."""


class LaunchNotFound(LookupError):
    """No such launch on this portal (whether or not another portal has one)."""


def launch(
    session: Session,
    portal: Portal,
    version: ScenarioVersion,
    targets: Selection,
    params: Mapping[str, Any],
    user_id: int | None,
    user_token: str | None,
    idempotency_key: str,
    *,
    user: Mapping[str, Any] | None = None,
    source: str = "manual",
) -> Launch:
    """Write the launch and its enrollments, commit, queue the work; the same key, the same
    launch. ``params`` are the launch values (``launch_values``), ``user`` the launching
    user's ``user.current`` row (what ``user.*`` renders), ``source`` how it was made
    (``manual``, ``robot``, ``schedule``)."""
    key = idempotency_key.strip()[:64]
    if not key:
        raise LaunchError("an idempotency key is required")
    existing = find_by_key(session, portal, key)
    if existing is not None:
        return existing
    scenario = session.get(Scenario, version.scenario_id)
    if scenario is None or not scenario.active:
        raise LaunchError(_("The scenario is inactive: activate it to launch it."))
    defn = ScenarioDefinition.model_validate(version.definition)
    if targets.entity_type not in defn.entity_types:
        raise LaunchError(
            _(
                "This scenario works on %(types)s, not %(entity)s.",
                types=", ".join(defn.entity_types),
                entity=targets.entity_type,
            )
        )
    by_filter = targets.filter is not None
    if not by_filter and not targets.ids:
        raise LaunchError(_("The selection is empty: there is nothing to launch on."))
    row = Launch(
        portal_id=portal.id,
        scenario_id=version.scenario_id,
        version_id=version.id,
        idempotency_key=key,
        user_id=user_id,
        user=dict(user or {}),
        user_token=user_token or None,
        entity_type=targets.entity_type,
        target_filter=dict(targets.filter or {}) if by_filter else None,
        params=json.loads(json.dumps(dict(params), default=str)),  # dates as ISO text
        state=LaunchState.EXPANDING if by_filter or user_token else LaunchState.RUNNING,
        source=source[:16],
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the same key a moment ago, from another request
        session.rollback()
        found = find_by_key(session, portal, key)
        if found is None:
            raise
        return found
    if not by_filter:
        add_enrollments(session, row, list(dict.fromkeys(int(i) for i in targets.ids)))
    if row.state is LaunchState.EXPANDING:
        enqueue(expand_launch, row.id, session=session)
    else:
        enqueue(engine.process_portal, portal.id, session=session)
    session.commit()
    return row


def find_by_key(session: Session, portal: Portal, key: str) -> Launch | None:
    return session.scalar(
        select(Launch).where(Launch.portal_id == portal.id, Launch.idempotency_key == key)
    )


def add_enrollments(session: Session, row: Launch, ids: list[int]) -> int:
    """Insert one pending enrollment per id in bulk (no commit); count them as entered. The
    scenario's re-entry rule may refuse some: they are written ``skipped`` with its reason."""
    if not ids:
        return 0
    version = session.get(ScenarioVersion, row.version_id)
    assert version is not None
    defn = ScenarioDefinition.model_validate(version.definition)
    refusals = reentry.refused(session, row, defn.policies.reentry, ids)
    now = datetime.now(UTC)
    base = {
        "portal_id": row.portal_id,
        "launch_id": row.id,
        "entity_type": row.entity_type,
        "state": EnrollmentState.PENDING,
        "step": "steps[0]",
        "next_at": now,
        "attempts": 0,
        "tries": 0,
        "reason": "",
        "message": "",
        "branches": {},
        "variables": initial_variables(defn),
        "created_at": now,
        "updated_at": now,
    }
    skipped = {"state": EnrollmentState.SKIPPED, "step": ""}
    for n in range(0, len(ids), _INSERT_CHUNK):
        chunk = ids[n : n + _INSERT_CHUNK]
        rows: list[dict[str, Any]] = []
        for i in chunk:
            reason = refusals.get(i)
            rows.append({**base, "entity_id": i})
            if reason:
                rows[-1].update(skipped, reason=reason, message=reentry.message(reason))
        session.execute(insert(Enrollment), rows)
    row.total += len(ids)
    deltas: Deltas = Counter({("", "entered"): len(ids)})
    deltas.update(Counter(("", f"skipped:{reason}") for reason in refusals.values()))
    bump(session, row, deltas)
    return len(ids)


def get_launch(session: Session, portal: Portal, launch_id: int) -> Launch:
    row = session.scalar(
        select(Launch).where(Launch.portal_id == portal.id, Launch.id == launch_id)
    )
    if row is None:
        raise LaunchNotFound(f"no launch {launch_id}")
    return row


def list_launches(session: Session, portal: Portal, limit: int = 100) -> list[Launch]:
    query = (
        select(Launch).where(Launch.portal_id == portal.id).order_by(Launch.id.desc()).limit(limit)
    )
    return list(session.scalars(query))


# -- status -----------------------------------------------------------------------------------


def status(session: Session, portal: Portal, launch_id: int) -> dict[str, Any]:
    """Counters (launch and per step), progress and the ETA of one launch, from its counter
    rows (never a count of its enrollments)."""
    row = get_launch(session, portal, launch_id)
    counters = launch_counters(session, row.id)
    whole = shaped(counters.pop("", {}))
    finished = (
        whole["done"]
        + whole["stopped"]
        + whole["goal"]
        + sum(whole["skipped"].values())
        + sum(whole["failed"].values())
    )
    scenario = session.get(Scenario, row.scenario_id)
    version = session.get(ScenarioVersion, row.version_id)
    whole_scenario = shaped(scenario_counters(session, portal.id, row.scenario_id))
    return {
        "id": row.id,
        "scenario": scenario.key if scenario else "",
        "version": version.number if version else None,
        "state": row.state.value,
        "reason": row.reason,
        "source": row.source,
        "entity_type": row.entity_type,
        "user_id": row.user_id,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "total": row.total,
        "finished": finished,
        "progress": round(finished / row.total, 4) if row.total else 0.0,
        "counters": whole,
        "steps": {path: shaped(values) for path, values in sorted(counters.items())},
        "eta": row.eta or {},
        # Every launch of the scenario, summed from their counter rows.
        "scenario_counters": whole_scenario,
        "conversion": conversion(whole_scenario),
    }


def conversion(counters: Mapping[str, Any]) -> float:
    """The share of the records that entered and reached the exit goal."""
    entered = int(counters.get("entered") or 0)
    return round(int(counters.get("goal") or 0) / entered, 4) if entered else 0.0


# -- stop ---------------------------------------------------------------------------------------


def stop(
    session: Session, portal: Portal, launch_id: int, reason: str = "stopped"
) -> dict[str, Any]:
    """Cancel what has not started (pending and waiting enrollments become ``stopped``, with
    ``reason``); the batch in flight finishes (its records end ``stopped`` after it). One
    commit."""
    row = get_launch(session, portal, launch_id)
    if row.state in (LaunchState.DONE, LaunchState.STOPPED):
        return {"id": row.id, "state": row.state.value, "stopped": 0, "in_flight": 0}
    deltas: Deltas = Counter()
    if row.state is LaunchState.SLEEPING:  # its sleepers are stopped here: none sleeps any more
        sleeping = launch_counters(session, row.id).get("", {}).get("sleeping", 0)
        deltas[("", "sleeping")] -= sleeping
    stopped = 0
    for state in (EnrollmentState.PENDING, EnrollmentState.WAITING):
        steps = session.scalars(
            update(Enrollment)
            .where(Enrollment.launch_id == row.id, Enrollment.state == state)
            .values(state=EnrollmentState.STOPPED, reason=reason, lease_until=None)
            .returning(Enrollment.step)
            .execution_options(synchronize_session=False)
        ).all()
        stopped += len(steps)
        for step in steps:
            deltas[(step, "stopped")] += 1
            if state is EnrollmentState.WAITING:
                deltas[(step, "waiting")] -= 1
                deltas[("", "waiting")] -= 1
    deltas[("", "stopped")] += stopped
    bump(session, row, deltas)
    in_flight = int(
        session.scalar(
            select(func.count()).where(
                Enrollment.launch_id == row.id, Enrollment.state == EnrollmentState.RUNNING
            )
        )
        or 0
    )
    if stopped:
        session.flush()
        engine._ended(session, row.id)
    row.state = LaunchState.STOPPING if in_flight else LaunchState.STOPPED
    row.user_token = None
    if not in_flight:
        row.finished_at = datetime.now(UTC)
    session.commit()
    return {"id": row.id, "state": row.state.value, "stopped": stopped, "in_flight": in_flight}


# -- reading the target with the user's rights ---------------------------------------------------


@job(retries=5, retry_delay=10)
def expand_launch(launch_id: int) -> None:
    """Read the launch's target with the launching user's token: a filter page by page
    (committed per page, resumed from its cursor), or a rights check of explicit ids. Then
    wipe the token and let the engine run."""
    session = db_session()
    row = session.get(Launch, launch_id)
    if row is None or row.state is not LaunchState.EXPANDING:
        return
    portal = session.get(Portal, row.portal_id)
    if portal is None:
        return
    try:
        if row.target_filter is not None:
            _expand_filter(session, portal, row)  # without a user: with the portal's token
        elif row.user_token:
            _check_ids(session, portal, row)
        # else: explicit ids and no user token (the CLI, robots): the ids as they are
    except BitrixError as exc:
        if exc.retryable or isinstance(exc, PortalUnavailable):
            raise  # the job's retries; the launch waits, expanding
        # The user's token expired or their rights refuse the read: the launch cannot start.
        log.warning("launch target unreadable", extra={"launch_id": row.id, "why": str(exc)})
        row.reason = "target_unreadable"
        row.user_token = None
        row.state = LaunchState.STOPPED
        session.commit()
        stop(session, portal, row.id)
        return
    session.refresh(row, ["state"])
    if _asleep(row):
        # Deactivated while reading (``activation``): the read goes on at reactivation, with
        # the user's rights while their token lasts (an expired one stops the launch).
        session.commit()
        return
    row.user_token = None
    if row.state is LaunchState.EXPANDING:  # not stopped meanwhile
        row.state = LaunchState.RUNNING
        if active_count(session, row.id):
            enqueue(engine.process_portal, portal.id, session=session)
        else:  # nothing readable (or an empty filter): done at once
            row.state = LaunchState.DONE
            row.finished_at = datetime.now(UTC)
    session.commit()


def _asleep(row: Launch) -> bool:
    return row.state is LaunchState.SLEEPING


def active_count(session: Session, launch_id: int) -> int:
    query = select(func.count()).where(
        Enrollment.launch_id == launch_id, Enrollment.state.in_(ACTIVE)
    )
    return int(session.scalar(query) or 0)


def _expand_filter(session: Session, portal: Portal, row: Launch) -> None:
    # No user token (a scheduled run): the portal's stored token, the installing admin's rights.
    client = client_for_user(portal, row.user_token) if row.user_token else client_for(portal)
    method = ENTITY_METHODS[row.entity_type]
    known = client.call(f"{method}.fields").result
    target = dict(row.target_filter or {})
    sample = _sample(target.pop(SAMPLE_KEY, None))
    conditions = check_filter(row.entity_type, target, known or {})
    if row.expand_cursor is not None:
        conditions[">ID"] = row.expand_cursor
    for rows, _total in list_pages(client, f"{method}.list", conditions, ["ID"]):
        ids = [int(r["ID"]) for r in rows]
        if not ids:
            break
        page_end = max(ids)
        if sample is not None:
            ids = [i for i in ids if in_sample(*sample, i)]
        session.refresh(row, ["state"])
        if row.state is not LaunchState.EXPANDING:
            return  # stopped while reading
        first_page = row.expand_cursor is None
        add_enrollments(session, row, ids)
        row.expand_cursor = page_end
        if first_page:  # one job chain works while the pages come (and one more at the end)
            enqueue(engine.process_portal, portal.id, session=session)
        session.commit()  # a page at a time: progress is visible and a crash resumes here


# A launch's filter target may carry a sample under this key: ``{"percent": 1..100, "seed":
# text}``. No CRM filter key can start with "_", so it never collides with a condition.
SAMPLE_KEY = "_sample"


def in_sample(seed: str, percent: int, entity_id: int) -> bool:
    """Whether the record is in a ``percent`` sample: a hash of the seed and the id, so the same
    seed (a scheduled run: its schedule and planned time) always keeps the same records."""
    digest = hashlib.sha256(f"{seed}:{entity_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


def _sample(value: Any) -> tuple[str, int] | None:
    """The (seed, percent) of a filter's sample; anything malformed samples nothing out."""
    if not isinstance(value, Mapping):
        return None
    percent = value.get("percent")
    if not isinstance(percent, int) or not 1 <= percent <= 100:
        return None
    return str(value.get("seed", "")), percent


def _check_ids(session: Session, portal: Portal, row: Launch) -> None:
    """Explicit ids the user cannot read end ``skipped`` (``access_denied``/``not_found``)."""
    client = client_for_user(portal, row.user_token or "")
    ids = list(
        session.scalars(
            select(Enrollment.entity_id)
            .where(Enrollment.launch_id == row.id, Enrollment.state == EnrollmentState.PENDING)
            .order_by(Enrollment.entity_id)
        )
    )
    for n in range(0, len(ids), RECORDS_PER_REQUEST):
        chunk = ids[n : n + RECORDS_PER_REQUEST]
        targets = [Target(row.entity_type, i, str(i)) for i in chunk]
        problems = load_records(client, targets, {"ID"})
        missing = [int(k) for k, p in problems.items() if p.reason == "not_found"]
        hidden = set(_hidden(client, row.entity_type, missing))
        reasons: dict[int, str] = {
            int(k): ("access_denied" if int(k) in hidden else p.reason) for k, p in problems.items()
        }
        _skip_unreadable(session, row, reasons)
        session.commit()


def _skip_unreadable(session: Session, row: Launch, reasons: dict[int, str]) -> None:
    deltas: Deltas = Counter()
    for reason in set(reasons.values()):
        ids = [i for i, r in reasons.items() if r == reason]
        message = (
            _("You have no right to read this record.")
            if reason == "access_denied"
            else _("The record could not be read.")
        )
        session.execute(
            update(Enrollment)
            .where(Enrollment.launch_id == row.id, Enrollment.entity_id.in_(ids))
            .values(state=EnrollmentState.SKIPPED, reason=reason, message=message)
            .execution_options(synchronize_session=False)
        )
        deltas[("", f"skipped:{reason}")] += len(ids)
    bump(session, row, deltas)
