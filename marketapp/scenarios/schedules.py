"""Scenario schedules: a scenario run for a segment daily, weekly or monthly at a local time.

Times. A schedule's runs are at ``time_of_day`` on its days, in its IANA ``zone`` (default: the
portal's, else UTC), up to and including its local ``end_date``. On a spring-forward day a time
the clock skips (02:30 in Europe/Berlin) runs at the first minute that exists after it (03:00);
on a fall-back day a time that happens twice runs at its first occurrence. A monthly day the
month lacks (the 31st in April, the 30th in February) runs on the month's last day.

Runs. :func:`run_due` (every minute, :func:`run_due_schedules`) makes one launch per due
schedule with ``source = "schedule"``: the segment (a ``crm.<entity>.list`` filter, the launch
Selection's ``filter``) is read when the run starts, with the portal's stored token (the rights
of the admin who installed the app; a scheduled run has no page and no user token), optionally
sampled to a percentage. After downtime a schedule whose runs were missed runs once, and its
next run is the first one after now. The launch's idempotency key is the schedule and the run's
planned time, and the claim is a conditional ``UPDATE`` of ``next_run_at``: two workers, or a
retry after a crash, never make two launches for one run.

Re-entry applies as for every launch (the engine's rule); nothing here is special about it.
"""

from __future__ import annotations

import calendar
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from marketapp.bitrix.errors import BitrixError
from marketapp.db import db_session
from marketapp.jobs import periodic
from marketapp.models import Launch, Portal, PortalStatus, Scenario, ScenarioSchedule
from marketapp.scenarios import engine
from marketapp.scenarios import steps as st
from marketapp.scenarios.context import portal_info
from marketapp.scenarios.definition import DefinitionError, ScenarioDefinition, launch_values
from marketapp.scenarios.launches import SAMPLE_KEY, LaunchError, launch
from marketapp.scenarios.preview import Selection, SelectionError, check_filter
from marketapp.scenarios.versions import NotFound, get_scenario, version_by_id

log = logging.getLogger(__name__)

SOURCE = "schedule"
FREQUENCIES = ("daily", "weekly", "monthly")
PREVIEW_RUNS = 12
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)\Z")  # \Z: "$" lets "09:30\n" through
_DUE_BATCH = 100  # schedules a job run takes at most; the next minute takes the rest


class ScheduleError(ValueError):
    """A schedule cannot be made as asked; ``field`` names the bad input."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class ScheduleNotFound(LookupError):
    """No such schedule on this portal (whether or not another portal has one)."""


# -- when ----------------------------------------------------------------------------------------


def next_runs(schedule: ScenarioSchedule, after: datetime, n: int = PREVIEW_RUNS) -> list[datetime]:
    """The schedule's next ``n`` runs strictly after ``after`` (aware, UTC), none past its end
    date."""
    zone = _zone_or_utc(schedule.zone)
    at = _parse_time(schedule.time_of_day)
    after = _aware(after)
    start = after.astimezone(zone).date() - timedelta(days=1)  # a zone's offset moves a day
    runs: list[datetime] = []
    for day in _days(schedule, start):
        if schedule.end_date is not None and day > schedule.end_date:
            break
        moment = local_instant(day, at, zone)
        if moment > after:
            runs.append(moment)
            if len(runs) >= n:
                break
    return runs


def next_run(schedule: ScenarioSchedule, after: datetime) -> datetime | None:
    found = next_runs(schedule, after, 1)
    return found[0] if found else None


def local_instant(day: date, at: time, zone: tzinfo) -> datetime:
    """``day`` at ``at`` in ``zone`` as a UTC instant: a skipped time (spring forward) moves to
    the first minute that exists after it, a repeated one (fall back) is its first occurrence."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first
    # In a gap: the minute after the jump is the earliest whose wall clock reads past ``naive``.
    moment = naive.replace(tzinfo=zone, fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    while moment.astimezone(zone).replace(tzinfo=None) < naive:
        moment += timedelta(minutes=1)
    return moment


def _days(schedule: ScenarioSchedule, start: date) -> Iterator[date]:
    """The local days the schedule runs on, from ``start`` on."""
    if schedule.frequency == "monthly":
        year, month = start.year, start.month
        while True:
            last = calendar.monthrange(year, month)[1]
            day = date(year, month, min(schedule.month_day or 1, last))
            if day >= start:
                yield day
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    days = set(range(7))
    if schedule.frequency == "weekly":
        days = {st.WEEKDAYS.index(d) for d in schedule.weekdays or () if d in st.WEEKDAYS}
        if not days:
            return
    day = start
    while True:
        if day.weekday() in days:
            yield day
        day += timedelta(days=1)


# -- making and changing ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """When a schedule runs, as an admin gives it (checked by :func:`check_rule`)."""

    frequency: str
    time_of_day: str
    weekdays: Sequence[str] = ()
    month_day: int | None = None
    zone: str | None = None  # None: the portal's
    end_date: date | None = None


def create_schedule(
    session: Session,
    portal: Portal,
    scenario_key: str,
    rule: Rule,
    *,
    now: datetime,
    segment: Mapping[str, Any] | None = None,
    entity_type: str | None = None,
    sample_percent: int | None = None,
    params: Mapping[str, Any] | None = None,
    user_id: int | None = None,
    client: Any = None,
) -> ScenarioSchedule:
    """A new active schedule (flushed, not committed). ``client`` (the portal's, optional)
    checks the segment's fields and reads the user's ``user.get`` row for ``user.*``;
    ``user_id`` defaults to the admin whose token the app stores. Raises
    :class:`ScheduleError` (and ``NotFound`` for an unknown scenario)."""
    scenario = get_scenario(session, portal, scenario_key)
    # The checks without the network first.
    checked = check_rule(rule, portal_zone(session, portal), now)
    percent = check_percent(sample_percent)
    defn = _current_definition(session, portal, scenario)
    entity = (entity_type or defn.entity_types[0]).upper()
    if entity not in defn.entity_types:
        types = ", ".join(defn.entity_types)
        raise ScheduleError(
            _("This scenario works on %(types)s, not %(entity)s.", types=types, entity=entity),
            "entity_type",
        )
    row = ScenarioSchedule(
        portal_id=portal.id,
        scenario_id=scenario.id,
        entity_type=entity,
        segment=_checked_segment(entity, segment, client),
        sample_percent=percent,
        params=_checked_params(defn, params or {}, portal.language),
        user_id=user_id if user_id is not None else portal.token_user_id,
        active=True,
        last_error="",
    )
    apply_rule(row, checked)
    row.user = _user_row(client, row.user_id)
    row.next_run_at = next_run(row, now)
    session.add(row)
    session.flush()
    return row


def check_rule(rule: Rule, default_zone: str, now: datetime) -> Rule:
    """The rule checked and completed (its zone named); :class:`ScheduleError` if it is bad."""
    if rule.frequency not in FREQUENCIES:
        raise ScheduleError(
            _(
                "The frequency must be daily, weekly or monthly, not %(value)s.",
                value=rule.frequency,
            ),
            "frequency",
        )
    if not _TIME.match(rule.time_of_day or ""):
        raise ScheduleError(
            _("The time must be HH:MM (00:00 to 23:59), not %(value)s.", value=rule.time_of_day),
            "time",
        )
    zone_name = rule.zone or default_zone
    zone = _zone(zone_name)
    weekdays = [d.lower() for d in rule.weekdays]
    if rule.frequency == "weekly":
        bad = [d for d in weekdays if d not in st.WEEKDAYS]
        if bad or not weekdays:
            raise ScheduleError(
                _("A weekly schedule needs its days among mon, tue, wed, thu, fri, sat, sun."),
                "weekdays",
            )
    month_day = rule.month_day
    if rule.frequency == "monthly" and (month_day is None or not 1 <= month_day <= 31):
        raise ScheduleError(_("A monthly schedule needs its day, 1 to 31."), "month_day")
    if rule.end_date is not None and rule.end_date < _aware(now).astimezone(zone).date():
        raise ScheduleError(_("The end date is in the past."), "end_date")
    return Rule(
        frequency=rule.frequency,
        time_of_day=rule.time_of_day,
        weekdays=[d for d in st.WEEKDAYS if d in weekdays] if rule.frequency == "weekly" else [],
        month_day=month_day if rule.frequency == "monthly" else None,
        zone=zone_name,
        end_date=rule.end_date,
    )


def apply_rule(row: ScenarioSchedule, rule: Rule) -> None:
    row.frequency = rule.frequency
    row.time_of_day = rule.time_of_day
    row.weekdays = list(rule.weekdays)
    row.month_day = rule.month_day
    row.zone = rule.zone or "UTC"
    row.end_date = rule.end_date


def check_percent(value: int | None) -> int | None:
    if value is None:
        return None
    if not 1 <= value <= 100:
        raise ScheduleError(_("The sample must be 1 to 100 percent."), "sample")
    return value


def portal_zone(session: Session, portal: Portal) -> str:
    """The portal's time zone (its settings); UTC when the admin set none."""
    return str(portal_info(session, portal).get("timezone") or "UTC")


def get_schedule(session: Session, portal: Portal, schedule_id: int) -> ScenarioSchedule:
    row = session.scalar(
        select(ScenarioSchedule).where(
            ScenarioSchedule.portal_id == portal.id, ScenarioSchedule.id == schedule_id
        )
    )
    if row is None:
        raise ScheduleNotFound(f"no schedule {schedule_id}")
    return row


def list_schedules(session: Session, portal: Portal) -> list[ScenarioSchedule]:
    query = (
        select(ScenarioSchedule)
        .where(ScenarioSchedule.portal_id == portal.id)
        .order_by(ScenarioSchedule.id)
    )
    return list(session.scalars(query))


def pause(session: Session, portal: Portal, schedule_id: int) -> ScenarioSchedule:
    row = get_schedule(session, portal, schedule_id)
    row.active = False
    return row


def resume(session: Session, portal: Portal, schedule_id: int, now: datetime) -> ScenarioSchedule:
    """Active again from ``now``: runs missed while it was paused are not made up."""
    row = get_schedule(session, portal, schedule_id)
    row.active = True
    row.next_run_at = next_run(row, now)
    return row


def remove(session: Session, portal: Portal, schedule_id: int) -> None:
    session.delete(get_schedule(session, portal, schedule_id))


def describe(
    session: Session, row: ScenarioSchedule, now: datetime, n: int = PREVIEW_RUNS
) -> dict[str, Any]:
    """The schedule as the CLI and pages show it, with its next ``n`` runs (local ISO)."""
    scenario = session.get(Scenario, row.scenario_id)
    zone = _zone_or_utc(row.zone)
    following = next_runs(row, now, n) if row.active else []
    return {
        "id": row.id,
        "scenario": scenario.key if scenario else "",
        "frequency": row.frequency,
        "time": row.time_of_day,
        "weekdays": list(row.weekdays or []),
        "month_day": row.month_day,
        "zone": row.zone,
        "end_date": row.end_date.isoformat() if row.end_date else None,
        "entity_type": row.entity_type,
        "segment": row.segment,
        "sample_percent": row.sample_percent,
        "params": row.params,
        "user_id": row.user_id,
        "active": row.active,
        "last_run_at": _local_iso(row.last_run_at, zone),
        "next_run_at": _local_iso(row.next_run_at, zone) if row.active else None,
        "last_launch_id": row.last_launch_id,
        "last_error": row.last_error,
        "next_runs": [_local_iso(m, zone) for m in following],
    }


# -- running -----------------------------------------------------------------------------------


@periodic(every_minutes=1)
def run_due_schedules() -> None:
    """Every minute: the due runs of every schedule (see :func:`run_due`)."""
    run_due(db_session(), engine.now())


def run_due(session: Session, now: datetime) -> list[int]:
    """One launch per active schedule whose ``next_run_at`` is ``now`` or earlier (of portals
    that work); the ids of the launches made."""
    made: list[int] = []
    for schedule_id, planned in due_runs(session, now):
        launch_id = run_one(session, schedule_id, planned, now)
        if launch_id is not None:
            made.append(launch_id)
    return made


def due_runs(session: Session, now: datetime) -> list[tuple[int, datetime]]:
    """(schedule id, planned run as stored) of the due schedules, the longest due first."""
    working = select(Portal.id).where(Portal.status == PortalStatus.ACTIVE)
    query = (
        select(ScenarioSchedule.id, ScenarioSchedule.next_run_at)
        .where(
            ScenarioSchedule.active.is_(True),
            ScenarioSchedule.next_run_at <= _utc(now),
            ScenarioSchedule.portal_id.in_(working),
        )
        .order_by(ScenarioSchedule.next_run_at, ScenarioSchedule.id)
        .limit(_DUE_BATCH)
    )
    return [(int(i), at) for i, at in session.execute(query).all() if at is not None]


def run_one(session: Session, schedule_id: int, planned: datetime, now: datetime) -> int | None:
    """Claim the run planned at ``planned`` (as read from the row) and launch it; the launch's
    id, or ``None`` when another worker claimed it or the run makes no launch."""
    row = session.get(ScenarioSchedule, schedule_id, populate_existing=True)
    if row is None:
        return None
    following = next_run(row, max(_utc(now), _utc(planned)))
    claimed = session.execute(
        update(ScenarioSchedule)
        .where(
            ScenarioSchedule.id == schedule_id,
            ScenarioSchedule.active.is_(True),
            ScenarioSchedule.next_run_at == planned,
        )
        .values(next_run_at=following, last_run_at=planned)
        .returning(ScenarioSchedule.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if claimed is None:
        session.rollback()
        return None
    session.refresh(row)
    try:
        made = _launch_run(session, row, _utc(planned))
    except (LaunchError, DefinitionError, ScheduleError, NotFound) as exc:
        # The run is spent (claimed) either way; the admin sees why it made nothing.
        log.info("scheduled run made no launch", extra={"schedule_id": row.id, "why": str(exc)})
        row.last_error = str(exc)[:255]
        made = None
    if made is not None:
        row.last_launch_id = made.id
        row.last_error = ""
    session.commit()
    return made.id if made is not None else None


def run_key(schedule_id: int, planned: datetime) -> str:
    """The launch's idempotency key: the schedule and the run's planned time (UTC)."""
    return f"schedule:{schedule_id}:{_utc(planned):%Y%m%dT%H%M%SZ}"


def _launch_run(session: Session, row: ScenarioSchedule, planned: datetime) -> Launch | None:
    portal = session.get(Portal, row.portal_id)
    scenario = session.get(Scenario, row.scenario_id)
    if portal is None or scenario is None:
        return None
    zone = _zone_or_utc(row.zone)
    if row.end_date is not None and planned.astimezone(zone).date() > row.end_date:
        return None  # ended: nothing after its end date
    if not scenario.active or scenario.current_version_id is None:
        raise ScheduleError(_("The scenario %(key)s is turned off.", key=scenario.key))
    version = version_by_id(session, portal, scenario.current_version_id)
    defn = ScenarioDefinition.model_validate(version.definition)
    values = launch_values(defn, dict(row.params or {}), language=portal.language)
    key = run_key(row.id, planned)
    target = dict(row.segment or {})
    if row.sample_percent is not None and row.sample_percent < 100:
        target[SAMPLE_KEY] = {"percent": row.sample_percent, "seed": key}
    return launch(
        session,
        portal,
        version,
        Selection(row.entity_type, filter=target),
        values,
        row.user_id,
        None,  # no page, no user token: the segment is read with the portal's stored token
        key,
        user=row.user or {},
        source=SOURCE,
    )


# -- small things -------------------------------------------------------------------------------


def _current_definition(session: Session, portal: Portal, scenario: Scenario) -> ScenarioDefinition:
    if scenario.current_version_id is None:
        raise ScheduleError(_("The scenario %(key)s has no version.", key=scenario.key), "scenario")
    version = version_by_id(session, portal, scenario.current_version_id)
    return ScenarioDefinition.model_validate(version.definition)


def _checked_segment(entity: str, segment: Mapping[str, Any] | None, client: Any) -> dict[str, Any]:
    value = dict(segment or {})
    for key in value:
        if str(key).startswith("_"):  # the launch's reserved keys (the sample)
            raise ScheduleError(_("Unknown filter condition %(key)s.", key=key), "filter")
    if client is None:
        return value
    from marketapp.actions.base import ENTITY_METHODS

    try:
        known = client.call(f"{ENTITY_METHODS[entity]}.fields").result
        check_filter(entity, value, known or {})
    except SelectionError as exc:
        raise ScheduleError(str(exc), "filter") from exc
    return value


def _checked_params(defn: ScenarioDefinition, params: Mapping[str, Any], language: str) -> Any:
    try:
        launch_values(defn, dict(params), language=language)
    except DefinitionError as exc:
        raise ScheduleError(str(exc), "params") from exc
    return dict(params)


def _user_row(client: Any, user_id: int | None) -> dict[str, Any]:
    """The user's ``user.get`` row (what ``user.*`` renders); :class:`ScheduleError` if the
    portal has no such active user. Without a client: the id alone."""
    if user_id is None:
        raise ScheduleError(_("Name the user the runs are made as."), "user")
    if client is None:
        return {"ID": str(user_id)}
    try:
        rows = client.call("user.get", {"ID": user_id}).result
    except BitrixError as exc:
        raise ScheduleError(str(exc), "user") from exc
    found = [r for r in rows or [] if isinstance(r, dict) and str(r.get("ID")) == str(user_id)]
    if not found or found[0].get("ACTIVE") is False:
        raise ScheduleError(_("There is no active user %(id)s on the portal.", id=user_id), "user")
    return dict(found[0])


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe", a name too long
        raise ScheduleError(_("Unknown time zone %(zone)s.", zone=name), "zone") from None


def _zone_or_utc(name: str) -> tzinfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return UTC


def _parse_time(text: str) -> time:
    match = _TIME.match(text or "")
    if match is None:
        return time(0, 0)
    return time(int(match.group(1)), int(match.group(2)))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def _utc(moment: datetime) -> datetime:
    """In UTC: SQLite compares the stored wall times as text, so every instant is UTC."""
    return _aware(moment).astimezone(UTC)


def _local_iso(moment: datetime | None, zone: tzinfo) -> str | None:
    if moment is None:
        return None
    return _aware(moment).astimezone(zone).isoformat(timespec="minutes")
