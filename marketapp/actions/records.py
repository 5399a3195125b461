"""Edit record fields (keeping before-images for undo) and add timeline comments."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from flask_babel import gettext as _
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from marketapp.actions import ledger, templating
from marketapp.actions.base import (
    ENTITY_METHODS,
    ActionContext,
    Outcome,
    RetryLater,
    Target,
    failed,
    prepare_each,
    sent,
)
from marketapp.models import FieldEdit, Send, SendState

_FIELD = re.compile(r"^(?:[A-Z][A-Z0-9_]*|UF_[A-Z0-9_]+)$")
# Multifields and system fields are not set with a plain value.
_NOT_EDITABLE = {"ID", "PHONE", "EMAIL", "WEB", "IM", "DATE_CREATE", "DATE_MODIFY", "CREATED_BY_ID"}


def parse_assignments(text: str) -> dict[str, str]:
    """``FIELD = value`` lines into a map; raise ``ValueError`` naming the bad line."""
    assignments: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip().upper()
        if not sep or not _FIELD.match(name):
            raise ValueError(f"line {number}: expected FIELD = value")
        if name in _NOT_EDITABLE:
            raise ValueError(f"line {number}: {name} cannot be edited here")
        templating.check(value)
        assignments[name] = value.strip()
    if not assignments:
        raise ValueError("no fields to edit")
    return assignments


class EditParams(BaseModel):
    fields: str = Field(min_length=1, max_length=20_000)

    @field_validator("fields")
    @classmethod
    def _parse(cls, value: str) -> str:
        parse_assignments(value)
        return value


class EditRecord:
    code: ClassVar[str] = "edit_record"
    Params: ClassVar[type[BaseModel]] = EditParams

    def run(
        self, ctx: ActionContext, params: EditParams, targets: list[Target]
    ) -> dict[str, Outcome]:
        assignments = parse_assignments(params.fields)
        # Every record's values are rendered before the first claim or update.
        rendered, outcomes = prepare_each(targets, lambda t: _render(t, assignments))
        updates: dict[str, tuple[str, dict[str, Any]]] = {}
        pending: dict[str, tuple[Send, FieldEdit]] = {}
        for target, after in rendered:
            row, edit = _claim(ctx, target, after)
            if row.state is not SendState.CLAIMED:
                outcomes[target.key] = _settled(row, edit)
                continue
            pending[target.key] = (row, edit)
            method = f"{ENTITY_METHODS[target.entity_type]}.update"
            updates[target.key] = (method, {"id": target.entity_id, "fields": edit.after})
        if updates:
            _apply(ctx, updates, pending, outcomes)
        return outcomes


def _render(target: Target, assignments: dict[str, str]) -> tuple[Target, dict[str, str]] | Outcome:
    record = target.record or {}
    unknown = [f for f in assignments if f not in record]
    if unknown:
        return failed(
            "unknown_field", _("Unknown fields: %(fields)s", fields=", ".join(sorted(unknown)))
        )
    context = templating.record_context(target.entity_type, record)
    return target, {f: templating.render(v, context) for f, v in assignments.items()}


def _claim(ctx: ActionContext, target: Target, after: dict[str, str]) -> tuple[Send, FieldEdit]:
    row, _fresh = ledger.claim(ctx.session, ctx.portal.id, target.key, "edit")
    edit = ctx.session.scalar(
        select(FieldEdit).where(FieldEdit.portal_id == ctx.portal.id, FieldEdit.key == target.key)
    )
    if edit is None:
        # Kept from the first attempt only: a retry must not record its own edit as "before".
        record = target.record or {}
        edit = FieldEdit(
            portal_id=ctx.portal.id,
            key=target.key,
            entity_type=target.entity_type,
            entity_id=target.entity_id,
            before={f: record.get(f) for f in after},
            after=after,
        )
        ctx.session.add(edit)
        ctx.session.commit()
    return row, edit


def _apply(
    ctx: ActionContext,
    updates: dict[str, tuple[str, dict[str, Any]]],
    pending: dict[str, tuple[Send, FieldEdit]],
    outcomes: dict[str, Outcome],
) -> None:
    result = ctx.client.batch(updates)
    rows = {key: row for key, (row, _edit) in pending.items()}
    transient = ledger.settle_batch(ctx.session, rows, result)
    outcomes.update(
        {k: _settled(row, edit) for k, (row, edit) in pending.items() if k not in transient}
    )
    if transient:  # an update is idempotent: the next attempt repeats it
        raise RetryLater("some edits got a transient error")


def _settled(row: Send, edit: FieldEdit) -> Outcome:
    if row.state is SendState.SENT:
        changed = sorted(f for f, v in edit.after.items() if str(edit.before.get(f) or "") != v)
        return sent(
            _("Fields changed: %(fields)s", fields=", ".join(changed) or "-"),
            changed_fields=",".join(changed),
        )
    reason = str((row.detail or {}).get("reason", ""))
    return failed("update_error", _("The record was not changed: %(reason)s", reason=reason))


# A timeline comment is read by people in the record's card: 10,000 characters is several
# screens of text, more than any note needs, and keeps a runaway template from flooding it.
COMMENT_MAX = 10_000


class CommentParams(BaseModel):
    text: templating.Template = Field(min_length=1, max_length=20_000)


class TimelineComment:
    code: ClassVar[str] = "timeline_comment"
    Params: ClassVar[type[BaseModel]] = CommentParams

    def run(
        self, ctx: ActionContext, params: CommentParams, targets: list[Target]
    ) -> dict[str, Outcome]:
        # Every comment is rendered before the first one is added.
        texts, outcomes = prepare_each(targets, lambda t: _comment_text(params, t))
        adds: dict[str, tuple[str, dict[str, Any]]] = {}
        rows: dict[str, tuple[Send, str]] = {}
        for target, text in texts:
            row, fresh = ledger.claim(ctx.session, ctx.portal.id, target.key, "comment")
            if not fresh and row.state is SendState.CLAIMED:
                _reconcile(ctx, row, target, text)
            if row.state is not SendState.CLAIMED:
                outcomes[target.key] = _comment_outcome(row)
                continue
            rows[target.key] = (row, text)
            adds[target.key] = (
                "crm.timeline.comment.add",
                {
                    "fields": {
                        "ENTITY_ID": target.entity_id,
                        "ENTITY_TYPE": target.entity_type.lower(),
                        "COMMENT": text,
                    }
                },
            )
        if adds:
            result = ctx.client.batch(adds)
            claimed = {key: row for key, (row, _text) in rows.items()}
            transient = ledger.settle_batch(ctx.session, claimed, result)
            outcomes.update(
                {k: _comment_outcome(r) for k, r in claimed.items() if k not in transient}
            )
            if transient:
                raise RetryLater("some comments got a transient error")
        return outcomes


def _comment_text(params: CommentParams, target: Target) -> tuple[Target, str] | Outcome:
    context = templating.record_context(target.entity_type, target.record or {})
    text = templating.plain_text(templating.render(params.text, context)).strip()
    if not text:
        return failed("empty_text", _("The comment is empty."))
    if len(text) > COMMENT_MAX:
        raise templating.TextTooLong(
            _("The comment is longer than %(limit)s characters.", limit=COMMENT_MAX)
        )
    return target, text


def _reconcile(ctx: ActionContext, row: Send, target: Target, text: str) -> None:
    """Look for the comment a previous attempt may have added (same record, same text)."""
    result = ctx.client.batch(
        {
            "c": (
                "crm.timeline.comment.list",
                {
                    "filter": {
                        "ENTITY_ID": target.entity_id,
                        "ENTITY_TYPE": target.entity_type.lower(),
                    },
                    "select": ["ID", "COMMENT"],
                },
            )
        }
    )
    if result.errors:
        raise RetryLater("cannot reconcile the comment")
    for comment in result.results.get("c") or []:
        if comment.get("COMMENT") == text:
            ledger.settle(ctx.session, row, SendState.SENT, str(comment.get("ID")), reconciled=True)
            return


def _comment_outcome(row: Send) -> Outcome:
    if row.state is SendState.SENT:
        return sent(_("Comment added."), comment_id=row.external_id)
    reason = str((row.detail or {}).get("reason", ""))
    return failed("comment_error", _("The comment was not added: %(reason)s", reason=reason))
