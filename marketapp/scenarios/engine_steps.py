"""The engine's own acting steps (a task, a notification) and the timeline line of a step.

Each is claimed in the ledger before it is attempted and settled after, 50 commands a batch.
An unknown outcome (a claim left by a crash or a transient error) is reconciled before a retry:
a task by its marker (``XML_ID`` = the ledger key, found with ``tasks.task.list``); a
notification carries the key as its ``TAG``, and Bitrix24 replaces a notification by a later one
with the same tag, so sending it again cannot make a second one. A timeline line is said at most
once: a claim of unknown outcome is not repeated (the step itself is what must happen once).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask_babel import gettext as _

from marketapp.actions import ledger, templating
from marketapp.actions.base import (
    ActionContext,
    Outcome,
    RetryLater,
    Target,
    failed,
    refused_template,
    render_context,
    sent,
    skipped,
)
from marketapp.actions.templating import TemplateProblem
from marketapp.bitrix.client import BATCH_SIZE
from marketapp.models import Send, SendState
from marketapp.scenarios import steps as st

# ``UF_CRM_TASK`` binds a task to CRM records as ``<prefix>_<id>``.
CRM_PREFIX = {"LEAD": "L", "DEAL": "D", "CONTACT": "C", "COMPANY": "CO"}


def employee(
    who: st.Employee, record: Mapping[str, Any], params: Mapping[str, Any], launcher: int | None
) -> int | None:
    """The employee a task or notification goes to."""
    value: Any
    if who.kind == "responsible":
        value = record.get("ASSIGNED_BY_ID")
    elif who.kind == "launcher":
        value = launcher
    elif who.kind == "param":
        value = params.get(who.param or "")
    else:
        value = who.id
    try:
        return int(value) or None
    except (TypeError, ValueError):
        return None


def run_engine_step(
    ctx: ActionContext,
    step: st.CreateTaskStep | st.NotifyStep,
    targets: list[Target],
    params: Mapping[str, Any],
    launcher: int | None,
    at: datetime,
) -> dict[str, Outcome]:
    """Create a task or send a notification for every target (records already read)."""
    outcomes: dict[str, Outcome] = {}
    commands: dict[str, tuple[str, dict[str, Any]]] = {}
    for target in targets:
        try:
            command = _command(ctx, step, target, params, launcher, at)
        except TemplateProblem as exc:
            command = refused_template(exc)
        if isinstance(command, Outcome):
            outcomes[target.key] = command
        else:
            commands[target.key] = command
    channel = "task" if isinstance(step, st.CreateTaskStep) else "notify"
    outcomes.update(_deliver(ctx, channel, commands))
    return outcomes


def _command(
    ctx: ActionContext,
    step: st.CreateTaskStep | st.NotifyStep,
    target: Target,
    params: Mapping[str, Any],
    launcher: int | None,
    at: datetime,
) -> tuple[str, dict[str, Any]] | Outcome:
    context = render_context(ctx, target)
    record = target.record or {}
    if isinstance(step, st.CreateTaskStep):
        responsible = employee(step.responsible, record, params, launcher)
        if responsible is None:
            return skipped("no_responsible", _("Nobody to give the task to."))
        fields: dict[str, Any] = {
            "TITLE": templating.one_line(templating.render(step.title, context)),
            "DESCRIPTION": templating.plain_text(templating.render(step.description, context)),
            "RESPONSIBLE_ID": responsible,
            "UF_CRM_TASK": [f"{CRM_PREFIX[target.entity_type]}_{target.entity_id}"],
            "XML_ID": target.key,  # the marker reconciliation looks for
        }
        if step.deadline is not None:
            deadline = at + timedelta(minutes=step.deadline.minutes_total())
            fields["DEADLINE"] = deadline.isoformat(timespec="seconds")
        return "tasks.task.add", {"fields": fields}
    to = employee(step.to, record, params, launcher)
    if to is None:
        return skipped("no_recipient", _("Nobody to notify."))
    message = templating.plain_text(templating.render(step.message, context)).strip()
    if not message:
        return skipped("empty_text", _("The message is empty for this record."))
    return "im.notify.personal.add", {"USER_ID": to, "MESSAGE": message, "TAG": target.key}


def _deliver(
    ctx: ActionContext, channel: str, commands: dict[str, tuple[str, dict[str, Any]]]
) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    if not commands:
        return outcomes
    claims = ledger.claim_many(ctx.session, ctx.portal.id, list(commands), channel)
    unknown = [
        k for k, (row, fresh) in claims.items() if not fresh and row.state is SendState.CLAIMED
    ]
    if channel == "task" and unknown:
        _reconcile_tasks(ctx, {k: claims[k][0] for k in unknown})
    todo: dict[str, Send] = {}
    for key, (row, _fresh) in claims.items():
        if row.state is SendState.CLAIMED:
            todo[key] = row
        else:
            outcomes[key] = _outcome(channel, row)
    transient = False
    keys = list(todo)
    for n in range(0, len(keys), BATCH_SIZE):
        chunk = keys[n : n + BATCH_SIZE]
        result = ctx.client.batch({k: commands[k] for k in chunk})
        for key in chunk:
            row, error = todo[key], result.errors.get(key)
            if error is not None and error.retryable:
                transient = True
                continue
            if error is not None:
                ledger.mark(row, SendState.FAILED, reason=error.description or str(error))
            else:
                ledger.mark(row, SendState.SENT, _result_id(result.results.get(key)))
            outcomes[key] = _outcome(channel, row)
        ctx.session.commit()
    if transient:
        raise RetryLater(f"some {channel} commands got a transient error")
    return outcomes


def _reconcile_tasks(ctx: ActionContext, rows: dict[str, Send]) -> None:
    """Tasks of unknown outcome found by their marker are settled as created."""
    result = ctx.client.batch(
        {
            key: ("tasks.task.list", {"filter": {"XML_ID": key}, "select": ["ID", "XML_ID"]})
            for key in rows
        }
    )
    for key, row in rows.items():
        if key in result.errors:
            raise RetryLater(str(result.errors[key]))
        found = result.results.get(key) or {}
        tasks = found.get("tasks", []) if isinstance(found, dict) else found
        if tasks:
            ledger.mark(row, SendState.SENT, str(tasks[0].get("id") or tasks[0].get("ID") or ""))
    ctx.session.commit()


def _result_id(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("task"), dict):
        return str(value["task"].get("id") or "")
    if isinstance(value, bool) or value is None:
        return ""
    return str(value)


def _outcome(channel: str, row: Send) -> Outcome:
    reason = str((row.detail or {}).get("reason") or "")
    if channel == "task":
        if row.state is SendState.SENT:
            return sent(_("Task created."), task_id=row.external_id)
        return failed("task_error", _("The task was not created: %(reason)s", reason=reason))
    if row.state is SendState.SENT and row.external_id:
        return sent(_("Notification sent."), notification_id=row.external_id)
    if row.state is SendState.SENT:
        return skipped("no_recipient", _("The employee to notify was not found."))
    return failed("notify_error", _("The notification was not sent: %(reason)s", reason=reason))


def write_lines(ctx: ActionContext, lines: dict[str, tuple[Target, str]]) -> None:
    """One timeline comment per acting step and record, 50 a batch; a line whose earlier
    attempt has an unknown outcome is not repeated."""
    if not lines:
        return
    keys = {f"{key}:line": key for key in lines}
    claims = ledger.claim_many(ctx.session, ctx.portal.id, list(keys), "timeline_line")
    fresh = [k for k, (_row, new) in claims.items() if new]
    for n in range(0, len(fresh), BATCH_SIZE):
        chunk = fresh[n : n + BATCH_SIZE]
        commands = {}
        for line_key in chunk:
            target, text = lines[keys[line_key]]
            fields = {
                "ENTITY_ID": target.entity_id,
                "ENTITY_TYPE": target.entity_type.lower(),
                "COMMENT": text,
            }
            commands[line_key] = ("crm.timeline.comment.add", {"fields": fields})
        result = ctx.client.batch(commands)
        ledger.settle_batch(ctx.session, {k: claims[k][0] for k in chunk}, result)
