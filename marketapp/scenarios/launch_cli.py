"""``marketapp launches …``: list, show, stop and undo the launches of a portal.

As ``marketapp scenarios``: every command names its portal (``--portal MEMBER_ID``), ``--json``
prints one JSON document (errors included), and an error exits 1 with its reason, never a
traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from marketapp.scenarios import cli as scenarios_cli
from marketapp.scenarios.cli import json_option, portal_option

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from marketapp.models import Portal

DEFAULT_LIST = 50


@click.group()
def launches() -> None:
    """Launches of scenarios: progress, per-record log, stop and undo."""


@launches.command("list")
@portal_option
@click.option("--limit", type=click.IntRange(1, 10_000), default=DEFAULT_LIST, show_default=True)
@json_option
def list_command(member_id: str, limit: int, as_json: bool) -> None:
    """The portal's launches, newest first."""
    from marketapp.scenarios import launches as service

    with _session(member_id, as_json) as (session, portal):
        found = service.list_launches(session, portal, limit)
        rows = [_row(session, portal, launch.id) for launch in found]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("no launches")
    for r in rows:
        c = r["counters"]
        click.echo(
            f"{r['id']}  {r['scenario']} v{r['version']}  {r['state']}  "
            f"entered {c['entered']} done {c['done']} waiting {c['waiting']} "
            f"skipped {sum(c['skipped'].values())} failed {sum(c['failed'].values())} "
            f"stopped {c['stopped']}  by {r['created_by'] or '-'}  {r['created_at'][:19]}"
        )


@launches.command("show")
@click.argument("launch_id", type=int)
@portal_option
@click.option(
    "--records", type=click.IntRange(0, 100_000), default=0, help="log lines to show (newest)"
)
@json_option
def show_command(launch_id: int, member_id: str, records: int, as_json: bool) -> None:
    """A launch: counters per step, ETA and (with --records N) its per-record log."""
    with _session(member_id, as_json) as (session, portal):
        doc = _row(session, portal, launch_id)
        doc["records"] = _log(session, portal, launch_id, records) if records else []
    if as_json:
        _print_json(doc)
        return
    click.echo(f"launch {doc['id']}  {doc['scenario']} v{doc['version']}  {doc['state']}")
    click.echo(f"created {doc['created_at'][:19]} by {doc['created_by'] or '-'}")
    click.echo(f"total {doc['total']}  {_counts(doc['counters'])}")
    for step, values in doc["steps"].items():
        click.echo(f"  {step}: {_counts(values)}")
    if doc["eta"]:
        click.echo(_eta(doc["eta"]))
    for line in doc["records"]:
        result = f"  #{line['result_id']}" if line["result_id"] else ""
        click.echo(
            f"{line['at']}  {line['entity_type']} {line['entity_id']}  {line['step']}  "
            f"{line['kind']}{' ' + line['reason'] if line['reason'] else ''}{result}"
            f"  {line['message']}".rstrip()
        )


@launches.command("stop")
@click.argument("launch_id", type=int)
@portal_option
@json_option
def stop_command(launch_id: int, member_id: str, as_json: bool) -> None:
    """Stop a launch: what has not started is cancelled, the batch in flight finishes."""
    from marketapp.scenarios import launches as service

    with _session(member_id, as_json) as (session, portal):
        doc = service.stop(session, portal, launch_id)
    if as_json:
        _print_json(doc)
        return
    click.echo(f"launch {launch_id} {doc['state']}: {doc['stopped']} records stopped")
    if doc["in_flight"]:
        click.echo(f"{doc['in_flight']} records in flight finish their current step")


@launches.command("undo")
@click.argument("launch_id", type=int)
@portal_option
@json_option
def undo_command(launch_id: int, member_id: str, as_json: bool) -> None:
    """Undo a launch (stopping it first): fields, comments, tasks; reports what cannot be."""
    from flask_babel import force_locale

    from marketapp.bitrix.client import client_for
    from marketapp.scenarios.undo import undo

    with _session(member_id, as_json) as (session, portal):
        report = undo(session, portal, launch_id, client_for(portal))
        with force_locale(portal.language or "en"):
            lines = report.lines()
    if as_json:
        _print_json(report.describe())
        return
    for line in lines:
        click.echo(line)


# --- helpers ----------------------------------------------------------------------------------


@contextmanager
def _session(member_id: str, as_json: bool) -> Iterator[tuple[Session, Portal]]:
    """The portal's session; the errors of launches and undo become reasons (exit 1)."""
    from marketapp.actions.base import RetryLater
    from marketapp.scenarios.launches import LaunchNotFound
    from marketapp.scenarios.undo import UndoError

    with scenarios_cli._portal_session(member_id, as_json) as (session, portal):
        try:
            yield session, portal
        except LaunchNotFound as exc:
            raise click.ClickException(f"{exc} on portal {member_id}") from None
        except UndoError as exc:
            raise click.ClickException(str(exc)) from None
        except RetryLater as exc:
            raise click.ClickException(f"the portal is busy, try again later ({exc})") from None


def _row(session: Session, portal: Portal, launch_id: int) -> dict[str, Any]:
    from marketapp.scenarios import launches as service

    doc = service.status(session, portal, launch_id)
    doc["created_by"] = doc.get("user_id")
    return doc


def _log(session: Session, portal: Portal, launch_id: int, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` lines of the per-record log, oldest first."""
    from sqlalchemy import select

    from marketapp.models import Enrollment, LaunchEvent

    query = (
        select(LaunchEvent, Enrollment.entity_type, Enrollment.entity_id)
        .join(Enrollment, Enrollment.id == LaunchEvent.enrollment_id)
        .where(LaunchEvent.portal_id == portal.id, LaunchEvent.launch_id == launch_id)
        .order_by(LaunchEvent.id.desc())
        .limit(limit)
    )
    lines = [
        {
            "at": event.at.isoformat(timespec="seconds"),
            "entity_type": entity_type,
            "entity_id": entity_id,
            "step": event.step,
            "kind": event.kind,
            "reason": event.reason,
            "message": event.message,
            "result_id": event.result_id,
        }
        for event, entity_type, entity_id in session.execute(query)
    ]
    return lines[::-1]


def _eta(eta: dict[str, Any]) -> str:
    seconds = float(eta.get("seconds") or 0)
    return (
        f"eta {seconds:.0f} s for {eta.get('active', 0)} active records "
        f"({eta.get('requests', 0)} requests at {eta.get('per_second', '?')}/s)"
    )


def _counts(values: dict[str, Any]) -> str:
    parts = [f"{name} {values.get(name, 0)}" for name in ("entered", "waiting", "done", "goal")]
    parts += [f"stopped {values.get('stopped', 0)}"]
    for kind in ("skipped", "failed"):
        parts += [f"{kind}:{reason} {n}" for reason, n in sorted(values.get(kind, {}).items())]
    return "  ".join(parts)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))
