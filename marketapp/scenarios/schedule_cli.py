"""``marketapp schedules …``: add, list, show, preview, pause, resume and remove the schedules
that run a portal's scenarios for a segment.

As ``marketapp scenarios``: every command names its portal (``--portal MEMBER_ID``), ``--json``
prints one JSON document (errors included), and a bad input exits 1 naming the field, never a
traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Any

import click

from marketapp.scenarios import cli as scenarios_cli
from marketapp.scenarios.cli import json_option, portal_option

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from marketapp.models import Portal

schedule_id_argument = click.argument("schedule_id", type=int)


@click.group()
def schedules() -> None:
    """Scenarios run for a segment daily, weekly or monthly."""


@schedules.command("add")
@click.argument("scenario")
@portal_option
@click.option("--every", "frequency", required=True, help="daily, weekly or monthly")
@click.option("--at", "at", required=True, help="local time HH:MM")
@click.option("--days", default="", help="weekly: days, e.g. mon,thu")
@click.option("--day", "month_day", type=int, default=None, help="monthly: day 1-31")
@click.option("--zone", default=None, help="IANA time zone (default: the portal's, else UTC)")
@click.option("--until", "until", default=None, help="last day that runs, YYYY-MM-DD")
@click.option("--entity", "entity_type", default=None, help="default: the scenario's first")
@click.option("--filter", "segment", default="{}", help='the segment, e.g. {"TYPE_ID": "CLIENT"}')
@click.option("--sample", type=int, default=None, help="percent of the segment, 1-100")
@click.option("--param", "params", multiple=True, help="a launch value KEY=VALUE (repeatable)")
@click.option("--user", "user_id", type=int, default=None, help="default: the app's admin")
@json_option
def add_command(
    scenario: str,
    member_id: str,
    frequency: str,
    at: str,
    days: str,
    month_day: int | None,
    zone: str | None,
    until: str | None,
    entity_type: str | None,
    segment: str,
    sample: int | None,
    params: tuple[str, ...],
    user_id: int | None,
    as_json: bool,
) -> None:
    """Schedule SCENARIO for a segment; prints the schedule and its next 12 runs."""
    from marketapp.bitrix.client import client_for
    from marketapp.scenarios import engine
    from marketapp.scenarios import schedules as service

    with _session(member_id, as_json) as (session, portal):
        rule = service.Rule(
            frequency=frequency.lower(),
            time_of_day=at,
            weekdays=[d.strip() for d in days.split(",") if d.strip()],
            month_day=month_day,
            zone=zone,
            end_date=_date(until),
        )
        row = service.create_schedule(
            session,
            portal,
            scenario,
            rule,
            now=engine.now(),
            segment=_segment(segment),
            entity_type=entity_type,
            sample_percent=sample,
            params=_params(params),
            user_id=user_id,
            client=client_for(portal),
        )
        session.commit()
        doc = service.describe(session, row, engine.now())
    _show(doc, as_json)


@schedules.command("list")
@portal_option
@json_option
def list_command(member_id: str, as_json: bool) -> None:
    """The portal's schedules with their next run."""
    from marketapp.scenarios import engine
    from marketapp.scenarios import schedules as service

    with _session(member_id, as_json) as (session, portal):
        now = engine.now()
        rows = [
            service.describe(session, r, now, 1) for r in service.list_schedules(session, portal)
        ]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("no schedules")
    for r in rows:
        state = "active" if r["active"] else "paused"
        click.echo(
            f"{r['id']}  {r['scenario']}  {_when(r)}  {state}  next {r['next_run_at'] or '-'}"
        )


@schedules.command("show")
@schedule_id_argument
@portal_option
@json_option
def show_command(schedule_id: int, member_id: str, as_json: bool) -> None:
    """A schedule, its last run and its next 12 runs."""
    from marketapp.scenarios import engine
    from marketapp.scenarios import schedules as service

    with _session(member_id, as_json) as (session, portal):
        doc = service.describe(
            session, service.get_schedule(session, portal, schedule_id), engine.now()
        )
    _show(doc, as_json)


@schedules.command("next")
@schedule_id_argument
@portal_option
@click.option("--count", type=click.IntRange(1, 100), default=12, show_default=True)
@json_option
def next_command(schedule_id: int, member_id: str, count: int, as_json: bool) -> None:
    """The schedule's next runs, in its time zone."""
    from marketapp.scenarios import engine
    from marketapp.scenarios import schedules as service

    with _session(member_id, as_json) as (session, portal):
        row = service.get_schedule(session, portal, schedule_id)
        runs = service.describe(session, row, engine.now(), count)["next_runs"]
    if as_json:
        _print_json(runs)
        return
    for n, moment in enumerate(runs, 1):
        click.echo(f"{n:>3}  {moment}")
    if not runs:
        click.echo("no runs left" if row.active else "paused: no runs")


@schedules.command("pause")
@schedule_id_argument
@portal_option
@json_option
def pause_command(schedule_id: int, member_id: str, as_json: bool) -> None:
    """Stop making runs until resumed."""
    from marketapp.scenarios import engine
    from marketapp.scenarios import schedules as service

    with _session(member_id, as_json) as (session, portal):
        row = service.pause(session, portal, schedule_id)
        session.commit()
        doc = service.describe(session, row, engine.now())
    _show(doc, as_json)


@schedules.command("resume")
@schedule_id_argument
@portal_option
@json_option
def resume_command(schedule_id: int, member_id: str, as_json: bool) -> None:
    """Make runs again from now on (runs missed while paused are not made up)."""
    from marketapp.scenarios import engine
    from marketapp.scenarios import schedules as service

    with _session(member_id, as_json) as (session, portal):
        row = service.resume(session, portal, schedule_id, engine.now())
        session.commit()
        doc = service.describe(session, row, engine.now())
    _show(doc, as_json)


@schedules.command("remove")
@schedule_id_argument
@portal_option
@json_option
def remove_command(schedule_id: int, member_id: str, as_json: bool) -> None:
    """Delete the schedule (its launches stay)."""
    from marketapp.scenarios import schedules as service

    with _session(member_id, as_json) as (session, portal):
        service.remove(session, portal, schedule_id)
        session.commit()
    if as_json:
        _print_json({"id": schedule_id, "removed": True})
        return
    click.echo(f"schedule {schedule_id} removed")


# --- helpers ----------------------------------------------------------------------------------


@contextmanager
def _session(member_id: str, as_json: bool) -> Iterator[tuple[Session, Portal]]:
    """The portal's session; a bad schedule input becomes its field and reason (exit 1)."""
    from marketapp.scenarios.definition import Problem
    from marketapp.scenarios.schedules import ScheduleError, ScheduleNotFound

    with scenarios_cli._portal_session(member_id, as_json) as (session, portal):
        try:
            yield session, portal
        except ScheduleError as exc:
            scenarios_cli._fail([Problem(exc.field, str(exc))], as_json)
        except ScheduleNotFound as exc:
            raise click.ClickException(f"{exc} on portal {member_id}") from None


def _date(text: str | None) -> date | None:
    from marketapp.scenarios.schedules import ScheduleError

    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"the end date must be YYYY-MM-DD, not {text}", "end_date") from None


def _segment(text: str) -> dict[str, Any]:
    from marketapp.scenarios.schedules import ScheduleError

    try:
        value = json.loads(text or "{}")
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        raise ScheduleError("the filter must be a JSON object", "filter") from None
    if not isinstance(value, dict):
        raise ScheduleError("the filter must be a JSON object", "filter")
    return value


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    from marketapp.scenarios.schedules import ScheduleError

    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ScheduleError(f"a launch value is KEY=VALUE, not {pair}", "params")
        values[key.strip()] = value
    return values


def _when(doc: dict[str, Any]) -> str:
    extra = ""
    if doc["frequency"] == "weekly":
        extra = " on " + ",".join(doc["weekdays"])
    elif doc["frequency"] == "monthly":
        extra = f" on day {doc['month_day']}"
    until = f" until {doc['end_date']}" if doc["end_date"] else ""
    return f"{doc['frequency']}{extra} at {doc['time']} {doc['zone']}{until}"


def _show(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(doc)
        return
    state = "active" if doc["active"] else "paused"
    click.echo(f"schedule {doc['id']}  {doc['scenario']}  {_when(doc)}  {state}")
    sample = f", {doc['sample_percent']}% sample" if doc["sample_percent"] else ""
    segment = json.dumps(doc["segment"], ensure_ascii=False)
    click.echo(f"segment {doc['entity_type']} {segment}{sample}; as user {doc['user_id']}")
    if doc["last_run_at"]:
        click.echo(f"last run {doc['last_run_at']} (launch {doc['last_launch_id'] or '-'})")
    if doc["last_error"]:
        click.echo(f"last run made no launch: {doc['last_error']}")
    click.echo("next runs:" if doc["next_runs"] else "no runs ahead")
    for n, moment in enumerate(doc["next_runs"], 1):
        click.echo(f"{n:>3}  {moment}")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))
