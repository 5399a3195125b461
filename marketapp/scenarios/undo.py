"""Undo a launch: restore the fields it edited, delete its comments, close its tasks.

What a launch did is in the ledger under ``launch:{launch}:{enrollment}:{step}`` (the edit's
before- and after-images in :class:`FieldEdit` under the same key). Undo writes its own ledger
rows under ``undo:{launch}:{enrollment}:{step}``, claimed before each batch of 50 and settled
after it, so a crash mid-undo repeats nothing that is not safe to repeat and a second undo does
nothing new:

- a field is restored only while it still holds the value the launch wrote (read fresh); a
  later human edit wins and is reported as a conflict, per record and field;
- a timeline comment is deleted (``crm.timeline.comment.delete``; one already gone counts),
  and so is the engine's timeline line of every step undone; the lines of e-mails and SMS stay,
  as the record of what was sent;
- a task is completed (``tasks.task.complete``; one already completed or deleted counts);
- sent e-mails and SMS cannot be taken back: they are counted and reported.

A running launch is stopped first; enrollments still in a worker's hands are reported, and
undoing again once they finish takes back what they did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, TypeVar

from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketapp.actions import ledger
from marketapp.actions.base import ENTITY_METHODS, BatchClient, Target, load_records
from marketapp.bitrix.errors import BitrixError
from marketapp.db import utcnow
from marketapp.models import (
    Enrollment,
    EnrollmentState,
    FieldEdit,
    Launch,
    LaunchEvent,
    LaunchState,
    Portal,
    Send,
    SendState,
)

BATCH = 50  # writes per REST batch, and per ledger claim
READ_BLOCK = 2_500  # records read per request (50 list commands of 50 ids)
# Ledger channels of the launch's side effects, by what undo does with them.
EDIT_CHANNELS = ("edit",)
COMMENT_CHANNELS = ("comment",)
LINE_CHANNEL = "timeline_line"  # the engine's line of a step, keyed ``{step key}:line``
TASK_CHANNELS = ("task",)
NOT_UNDOABLE = {"email": "email", "smtp": "email", "sms": "sms"}
ACTIVE_STATES = (LaunchState.EXPANDING, LaunchState.RUNNING, LaunchState.PARKED)
T = TypeVar("T")


class UndoError(Exception):
    """The launch cannot be undone (it does not exist on this portal)."""


@dataclass
class Conflict:
    """A field a person changed after the launch: left as they set it."""

    entity_type: str
    entity_id: int
    field: str
    written: Any  # what the launch wrote
    current: Any  # what the field holds now


@dataclass
class Problem:
    kind: str  # edit | comment | task
    key: str
    reason: str


@dataclass
class UndoReport:
    launch_id: int
    stopped: bool = False  # this undo stopped the running launch first
    in_flight: int = 0  # enrollments a worker still holds: undo again when they finish
    records_restored: int = 0
    fields_restored: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    records_gone: int = 0  # edited records deleted since: nothing to restore
    comments_deleted: int = 0
    lines_deleted: int = 0  # the engine's timeline lines of the steps undone
    tasks_closed: int = 0
    unknown: int = 0  # comments/tasks whose creation outcome is unknown: no id to undo
    problems: list[Problem] = field(default_factory=list)
    already_undone: int = 0  # side effects an earlier undo took care of
    not_undoable: dict[str, int] = field(default_factory=lambda: {"email": 0, "sms": 0})

    @property
    def nothing_new(self) -> bool:
        done = self.records_restored + self.comments_deleted + self.tasks_closed
        done += self.lines_deleted
        return not (done or self.conflicts or self.records_gone or self.problems or self.stopped)

    def describe(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["nothing_new"] = self.nothing_new
        return doc

    def lines(self) -> list[str]:
        """The report in plain language (the launching user's locale)."""
        lines: list[str] = []
        if self.stopped:
            lines.append(_("The launch was stopped first."))
        if self.nothing_new:
            lines.append(_("Nothing new to undo: this launch has already been undone."))
        elif self.already_undone:
            lines.append(_("Undone earlier: %(n)s.", n=self.already_undone))
        lines.append(
            _(
                "Fields restored: %(fields)s (records: %(records)s).",
                fields=self.fields_restored,
                records=self.records_restored,
            )
        )
        for c in self.conflicts:
            lines.append(
                _(
                    "Kept %(field)s of %(entity)s %(id)s: changed after the launch (now %(now)s).",
                    field=c.field,
                    entity=c.entity_type.lower(),
                    id=c.entity_id,
                    now=_shown(c.current),
                )
            )
        if self.records_gone:
            lines.append(_("Records deleted since the launch: %(n)s.", n=self.records_gone))
        lines.append(_("Timeline comments deleted: %(n)s.", n=self.comments_deleted))
        if self.lines_deleted:
            lines.append(
                _("Scenario lines removed from the timeline: %(n)s.", n=self.lines_deleted)
            )
        lines.append(_("Tasks closed: %(n)s.", n=self.tasks_closed))
        for p in self.problems:
            lines.append(_("Not undone (%(kind)s): %(reason)s", kind=p.kind, reason=p.reason))
        lines.append(
            _(
                "Cannot be undone: %(email)s e-mails and %(sms)s SMS already sent.",
                email=self.not_undoable["email"],
                sms=self.not_undoable["sms"],
            )
        )
        if self.unknown:
            lines.append(
                _("Comments or tasks whose creation was never confirmed: %(n)s.", n=self.unknown)
            )
        if self.in_flight:
            lines.append(
                _(
                    "Records still being processed: %(n)s; undo again when they finish.",
                    n=self.in_flight,
                )
            )
        return lines


def undo(session: Session, portal: Portal, launch_id: int, client: BatchClient) -> UndoReport:
    """Take back what launch ``launch_id`` did on ``portal``; see the module docstring."""
    query = select(Launch).where(Launch.portal_id == portal.id, Launch.id == launch_id)
    launch = session.scalar(query)
    if launch is None:
        raise UndoError(_("No launch %(id)s on this portal.", id=launch_id))
    report = UndoReport(launch_id)
    if launch.state in ACTIVE_STATES:
        from marketapp.scenarios import launches  # launches → engine → … imports the actions

        launches.stop(session, portal, launch_id)
        report.stopped = True
    report.in_flight = _in_flight(session, launch)
    rows = _launch_rows(session, portal, launch_id)
    done = _undone_keys(session, portal, launch_id)
    for row in rows:
        if row.channel in NOT_UNDOABLE and row.state is SendState.SENT:
            report.not_undoable[NOT_UNDOABLE[row.channel]] += 1
    _restore_fields(session, portal, client, _todo(rows, done, EDIT_CHANNELS, report), report)
    tasks = _with_id(_todo(rows, done, TASK_CHANNELS, report), report)
    closed = _undo_remote(session, portal, client, tasks, "task", _close_task, report)
    report.tasks_closed = len(closed)
    # Comments and the lines of undone steps go together: one method, full batches.
    comments = _todo(rows, done, COMMENT_CHANNELS, report)
    comments += _todo(_undone_lines(rows), done, (LINE_CHANNEL,), report)
    deleted = _undo_remote(
        session, portal, client, _with_id(comments, report), "comment", _delete_comment, report
    )
    report.lines_deleted = sum(1 for r in deleted if r.channel == LINE_CHANNEL)
    report.comments_deleted = len(deleted) - report.lines_deleted
    return report


# --- what the launch did ------------------------------------------------------------------------


class Effect(NamedTuple):
    """One ledger row of the launch (its columns only: a big launch has many)."""

    key: str
    channel: str
    state: SendState
    external_id: str


def _launch_rows(session: Session, portal: Portal, launch_id: int) -> list[Effect]:
    # LIKE "launch:{id}:%" (not a key range: a locale collation ignores the punctuation).
    columns = select(Send.key, Send.channel, Send.state, Send.external_id)
    query = columns.where(
        Send.portal_id == portal.id, Send.key.startswith(f"launch:{launch_id}:", autoescape=True)
    )
    return [Effect(*row) for row in session.execute(query.order_by(Send.id))]


def _undone_keys(session: Session, portal: Portal, launch_id: int) -> set[str]:
    """Keys of the undo rows an earlier undo settled as done."""
    query = select(Send.key).where(
        Send.portal_id == portal.id,
        Send.key.startswith(f"undo:{launch_id}:", autoescape=True),
        Send.state == SendState.SENT,
    )
    return set(session.scalars(query))


def _undone_lines(rows: list[Effect]) -> list[Effect]:
    """The engine's lines of steps undo takes back (not of e-mails and SMS: they were sent)."""
    channels = {r.key: r.channel for r in rows}
    return [
        r
        for r in rows
        if r.channel == LINE_CHANNEL
        and channels.get(r.key.removesuffix(":line")) not in NOT_UNDOABLE
    ]


def _undo_key(key: str) -> str:
    return "undo:" + key.removeprefix("launch:")


def _todo(
    rows: list[Effect], done: set[str], channels: Sequence[str], report: UndoReport
) -> list[Effect]:
    """The launch's rows of ``channels`` that may have acted and no earlier undo took back (one
    that failed is tried again)."""
    todo: list[Effect] = []
    for row in rows:
        if row.channel not in channels or row.state is SendState.FAILED:
            continue
        if _undo_key(row.key) in done:
            report.already_undone += 1
        else:
            todo.append(row)
    return todo


def _with_id(rows: list[Effect], report: UndoReport) -> list[Effect]:
    """Rows with the id of what they created; a claim never settled has none to undo."""
    known = [r for r in rows if r.state is SendState.SENT and r.external_id]
    report.unknown += len(rows) - len(known)
    return known


def _in_flight(session: Session, launch: Launch) -> int:
    query = select(func.count(Enrollment.id)).where(
        Enrollment.launch_id == launch.id, Enrollment.state == EnrollmentState.RUNNING
    )
    return int(session.scalar(query) or 0)


# --- fields -------------------------------------------------------------------------------------


def _restore_fields(
    session: Session, portal: Portal, client: BatchClient, rows: list[Effect], report: UndoReport
) -> None:
    for keys in _chunks([r.key for r in rows], READ_BLOCK):  # a block at a time: bounded memory
        block = _edits(session, portal, keys)
        targets = {e.key: Target(e.entity_type, e.entity_id, e.key) for e in block}
        fields = {f for e in block for f in e.after}
        gone = load_records(client, list(targets.values()), fields)  # read fresh
        for chunk in _chunks(block, BATCH):
            _restore_chunk(session, portal, client, chunk, targets, gone, report)


def _edits(session: Session, portal: Portal, keys: list[str]) -> list[FieldEdit]:
    found: list[FieldEdit] = []
    for chunk in _chunks(keys, 500):
        query = select(FieldEdit).where(FieldEdit.portal_id == portal.id, FieldEdit.key.in_(chunk))
        found.extend(session.scalars(query.order_by(FieldEdit.id)))
    return found


def _restore_chunk(
    session: Session,
    portal: Portal,
    client: BatchClient,
    chunk: list[FieldEdit],
    targets: dict[str, Target],
    gone: dict[str, Any],
    report: UndoReport,
) -> None:
    claims = ledger.claim_many(session, portal.id, [_undo_key(e.key) for e in chunk], "undo")
    updates: dict[str, tuple[str, dict[str, Any]]] = {}
    planned: dict[str, tuple[Send, FieldEdit, dict[str, Any]]] = {}
    for edit in chunk:
        row, _fresh = claims[_undo_key(edit.key)]
        if edit.key in gone:
            report.records_gone += 1
            ledger.mark(row, SendState.SENT, gone=True)
            edit.undone_at = utcnow()
            _event(
                session, portal, edit.key, "undo_skipped", _("The record no longer exists."), "gone"
            )
            continue
        restore, conflicts = _plan(edit, targets[edit.key].record or {})
        report.conflicts.extend(conflicts)
        for c in conflicts:
            message = _("%(field)s kept: changed after the launch.", field=c.field)
            _event(session, portal, edit.key, "undo_skipped", message, "changed_since")
        detail: dict[str, Any] = {
            "conflicts": [c.field for c in conflicts],
            "restored": sorted(restore),
        }
        if restore:
            method = f"{ENTITY_METHODS[edit.entity_type]}.update"
            updates[row.key] = (method, {"id": edit.entity_id, "fields": restore})
            planned[row.key] = (row, edit, detail)
        else:  # nothing to write: settled at once
            ledger.mark(row, SendState.SENT, **detail)
            edit.undone_at = utcnow()
    session.commit()
    if not updates:
        return
    result = client.batch(updates)
    for key, (row, edit, detail) in planned.items():
        error = result.errors.get(key)
        if error is None:
            ledger.mark(row, SendState.SENT, **detail)
            edit.undone_at = utcnow()
            report.records_restored += 1
            report.fields_restored += len(detail["restored"])
            fields = ", ".join(detail["restored"])
            _event(
                session, portal, edit.key, "undone", _("Fields restored: %(fields)s", fields=fields)
            )
            continue
        if not error.retryable:  # an update is idempotent: a transient error stays claimed
            ledger.mark(row, SendState.FAILED, reason=str(error))
        report.problems.append(Problem("edit", edit.key, str(error)))
        _event(session, portal, edit.key, "undo_failed", str(error), "update_error")
    session.commit()


def _plan(edit: FieldEdit, record: dict[str, Any]) -> tuple[dict[str, Any], list[Conflict]]:
    """The fields to set back (still the launch's value) and the ones a person changed since.

    A field already holding its before-image needs nothing: an earlier undo that crashed after
    writing, or an edit that changed nothing.
    """
    restore: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    for name, written in edit.after.items():
        before = edit.before.get(name)
        current = record.get(name)
        if _same(current, before):
            continue
        if _same(current, written):
            restore[name] = "" if before is None else before
        else:
            conflicts.append(Conflict(edit.entity_type, edit.entity_id, name, written, current))
    return restore, conflicts


def _same(a: Any, b: Any) -> bool:
    return _text(a) == _text(b)


def _text(value: Any) -> str:
    return "" if value is None or value is False else str(value).strip()


def _shown(value: Any) -> str:
    text = _text(value)
    return repr(text[:60]) if text else "-"


# --- comments and tasks -------------------------------------------------------------------------

Command = tuple[str, dict[str, Any]]


def _delete_comment(row: Effect) -> Command:
    return "crm.timeline.comment.delete", {"id": int(row.external_id)}


def _close_task(row: Effect) -> Command:
    return "tasks.task.complete", {"taskId": int(row.external_id)}


def _undo_remote(
    session: Session,
    portal: Portal,
    client: BatchClient,
    rows: list[Effect],
    kind: str,
    command: Callable[[Effect], Command],
    report: UndoReport,
) -> list[Effect]:
    """Run ``command`` for every row, 50 a batch, each claimed first; the rows undone."""
    undone: list[Effect] = []
    for chunk in _chunks(rows, BATCH):
        keys = {_undo_key(r.key): r for r in chunk}
        claims = ledger.claim_many(session, portal.id, list(keys), "undo")
        result = client.batch({key: command(row) for key, row in keys.items()})
        settled = _already_done(client, kind, keys, result.errors)
        for key, row in keys.items():
            claim, _fresh = claims[key]
            error = result.errors.get(key)
            if error is None or key in settled:
                ledger.mark(claim, SendState.SENT, row.external_id, earlier=key in settled)
                undone.append(row)
                _event(
                    session, portal, row.key, "undone", UNDONE[kind](), result_id=row.external_id
                )
            else:
                if not error.retryable:
                    ledger.mark(claim, SendState.FAILED, row.external_id, reason=str(error))
                report.problems.append(Problem(kind, row.key, _reason(kind, error)))
                _event(session, portal, row.key, "undo_failed", str(error), f"{kind}_error")
        session.commit()
    return undone


def _already_done(
    client: BatchClient, kind: str, rows: dict[str, Effect], errors: dict[Any, BitrixError]
) -> set[str]:
    """Failed commands whose target is already gone or closed: nothing left to undo."""
    if kind == "comment":  # docs: NOT_FOUND for a comment that no longer exists
        return {k for k, e in errors.items() if str(e.code).upper() == "NOT_FOUND"}
    refused = [k for k, e in errors.items() if not e.retryable]
    if not refused:
        return set()
    # "Action on the task is not allowed": missing, out of reach or completed; ask which.
    checks = {
        k: ("tasks.task.get", {"taskId": int(rows[k].external_id), "select": ["ID", "STATUS"]})
        for k in refused
    }
    result = client.batch(checks)
    settled: set[str] = set()
    for key in refused:
        found = result.results.get(key)
        if key in result.errors:
            continue
        task = found.get("task") if isinstance(found, dict) else None
        if not task or str(task.get("status")) == "5":  # [] : deleted or not visible
            settled.add(key)
    return settled


UNDONE: dict[str, Callable[[], str]] = {
    "comment": lambda: str(_("Timeline comment deleted.")),
    "task": lambda: str(_("Task closed.")),
}


def _event(
    session: Session,
    portal: Portal,
    key: str,
    kind: str,
    message: str,
    reason: str = "",
    result_id: str = "",
) -> None:
    """A line of the per-record log for the enrollment and step of ledger ``key`` (no commit:
    it goes with the batch's settlement)."""
    _prefix, launch_id, enrollment_id, step = key.split(":", 3)
    if step.endswith(":line"):  # the engine's own line: its step says enough
        return
    session.add(
        LaunchEvent(
            portal_id=portal.id,
            launch_id=int(launch_id),
            enrollment_id=int(enrollment_id),
            step=step,
            kind=kind,
            reason=reason,
            message=str(message)[:2000],
            result_id=result_id,
        )
    )


def _reason(kind: str, error: BitrixError) -> str:
    if error.retryable:
        return str(_("temporary error, undo again later: %(error)s", error=str(error)))
    return str(error)


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for n in range(0, len(items), size):
        yield items[n : n + size]
