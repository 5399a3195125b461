"""Edit record fields (keeping before-images for undo) and add timeline comments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from flask_babel import gettext as _
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from marketapp.actions import ledger, templating
from marketapp.actions.base import (
    ENTITY_METHODS,
    ActionContext,
    Draft,
    Outcome,
    RetryLater,
    Target,
    failed,
    preview_each,
    render_context,
    sent,
    template_fields,
    ui,
    with_fields,
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
    fields: str = Field(
        min_length=1,
        max_length=20_000,
        json_schema_extra=ui(
            "Fields",
            "Поля",
            kind="text",
            hint={"en": "NAME = {{ contact.NAME }}", "ru": "NAME = {{ contact.NAME }}"},
        ),
    )

    @field_validator("fields")
    @classmethod
    def _parse(cls, value: str) -> str:
        parse_assignments(value)
        return value


@dataclass
class Edit:
    target: Target
    before: dict[str, Any]
    after: dict[str, str]

    def describe(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after}


class EditRecord:
    code: ClassVar[str] = "edit_record"
    Params: ClassVar[type[BaseModel]] = EditParams

    def fields(self, ctx: ActionContext, params: EditParams) -> set[str] | None:
        assignments = parse_assignments(params.fields)
        return with_fields(template_fields(*assignments.values()), *assignments)

    def preview(
        self, ctx: ActionContext, params: EditParams, targets: list[Target]
    ) -> dict[str, Draft | Outcome]:
        assignments = parse_assignments(params.fields)
        return preview_each(targets, lambda t: _render(ctx, t, assignments))

    def deliver(
        self, ctx: ActionContext, params: EditParams, drafts: list[Edit]
    ) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        updates: dict[str, tuple[str, dict[str, Any]]] = {}
        pending: dict[str, tuple[Send, FieldEdit]] = {}
        for draft, (row, edit) in zip(drafts, _claim(ctx, drafts), strict=True):
            target = draft.target
            if row.state is not SendState.CLAIMED:
                outcomes[target.key] = _settled(row, edit)
                continue
            pending[target.key] = (row, edit)
            method = f"{ENTITY_METHODS[target.entity_type]}.update"
            updates[target.key] = (method, {"id": target.entity_id, "fields": edit.after})
        if updates:
            _apply(ctx, updates, pending, outcomes)
        return outcomes


def _render(ctx: ActionContext, target: Target, assignments: dict[str, str]) -> Edit | Outcome:
    record = target.record or {}
    unknown = [f for f in assignments if f not in record]
    if unknown:
        return failed(
            "unknown_field", _("Unknown fields: %(fields)s", fields=", ".join(sorted(unknown)))
        )
    context = render_context(ctx, target)
    after = {f: templating.render(v, context) for f, v in assignments.items()}
    return Edit(target, {f: record.get(f) for f in after}, after)


def _claim(ctx: ActionContext, drafts: list[Edit]) -> list[tuple[Send, FieldEdit]]:
    """Claim every edit and keep its before-image; one commit for the batch."""
    keys = [d.target.key for d in drafts]
    rows = ledger.claim_many(ctx.session, ctx.portal.id, keys, "edit")
    found = ctx.session.scalars(
        select(FieldEdit).where(FieldEdit.portal_id == ctx.portal.id, FieldEdit.key.in_(keys))
    )
    edits = {edit.key: edit for edit in found}
    for draft in drafts:
        if draft.target.key not in edits:
            # Kept from the first attempt only: a retry must not record its own edit as "before".
            edits[draft.target.key] = FieldEdit(
                portal_id=ctx.portal.id,
                key=draft.target.key,
                entity_type=draft.target.entity_type,
                entity_id=draft.target.entity_id,
                before=draft.before,
                after=draft.after,
            )
            ctx.session.add(edits[draft.target.key])
    ctx.session.commit()
    return [(rows[key][0], edits[key]) for key in keys]


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
    text: templating.Template = Field(
        min_length=1, max_length=20_000, json_schema_extra=ui("Comment", "Комментарий", kind="text")
    )


@dataclass
class Comment:
    target: Target
    text: str

    def describe(self) -> dict[str, Any]:
        return {"text": self.text}


class TimelineComment:
    code: ClassVar[str] = "timeline_comment"
    Params: ClassVar[type[BaseModel]] = CommentParams

    def fields(self, ctx: ActionContext, params: CommentParams) -> set[str] | None:
        return template_fields(params.text)

    def preview(
        self, ctx: ActionContext, params: CommentParams, targets: list[Target]
    ) -> dict[str, Draft | Outcome]:
        return preview_each(targets, lambda t: _comment_text(ctx, params, t))

    def deliver(
        self, ctx: ActionContext, params: CommentParams, drafts: list[Comment]
    ) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        adds: dict[str, tuple[str, dict[str, Any]]] = {}
        rows: dict[str, Send] = {}
        keys = [d.target.key for d in drafts]
        claims = ledger.claim_many(ctx.session, ctx.portal.id, keys, "comment")
        for draft in drafts:
            target = draft.target
            row, fresh = claims[target.key]
            if not fresh and row.state is SendState.CLAIMED:
                _reconcile(ctx, row, target, draft.text)
            if row.state is not SendState.CLAIMED:
                outcomes[target.key] = _comment_outcome(row)
                continue
            rows[target.key] = row
            adds[target.key] = (
                "crm.timeline.comment.add",
                {
                    "fields": {
                        "ENTITY_ID": target.entity_id,
                        "ENTITY_TYPE": target.entity_type.lower(),
                        "COMMENT": draft.text,
                    }
                },
            )
        ctx.session.commit()  # reconciled rows
        if adds:
            result = ctx.client.batch(adds)
            transient = ledger.settle_batch(ctx.session, rows, result)
            outcomes.update({k: _comment_outcome(r) for k, r in rows.items() if k not in transient})
            if transient:
                raise RetryLater("some comments got a transient error")
        return outcomes


def _comment_text(ctx: ActionContext, params: CommentParams, target: Target) -> Comment | Outcome:
    context = render_context(ctx, target)
    text = templating.plain_text(templating.render(params.text, context)).strip()
    if not text:
        return failed("empty_text", _("The comment is empty."))
    if len(text) > COMMENT_MAX:
        raise templating.TextTooLong(
            _("The comment is longer than %(limit)s characters.", limit=COMMENT_MAX)
        )
    return Comment(target, text)


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
            ledger.mark(row, SendState.SENT, str(comment.get("ID")), reconciled=True)
            return


def _comment_outcome(row: Send) -> Outcome:
    if row.state is SendState.SENT:
        return sent(_("Comment added."), comment_id=row.external_id)
    reason = str((row.detail or {}).get("reason", ""))
    return failed("comment_error", _("The comment was not added: %(reason)s", reason=reason))
