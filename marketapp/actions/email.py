"""Send e-mail: through the portal's mail (an outgoing e-mail activity) or the portal's SMTP."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from flask_babel import gettext as _
from pydantic import BaseModel, Field

from marketapp import consent
from marketapp.actions import ledger, templating
from marketapp.actions.base import (
    ENTITY_TYPE_IDS,
    ActionContext,
    Draft,
    Outcome,
    RetryLater,
    Target,
    communication_owner,
    failed,
    multifield,
    opted_out,
    preview_each,
    render_context,
    sent,
    skipped,
    template_fields,
    ui,
    with_fields,
)
from marketapp.channels.smtp import SmtpError, send_email
from marketapp.models import Send, SendState

_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Rendered sizes: a subject fits the activity's SUBJECT (255) and stays one readable line; a
# body of 256 KB holds any real letter with inline styles, far beyond what mail clients show
# unclipped (Gmail clips at about 100 KB), and keeps one render's memory small.
SUBJECT_MAX = 255
BODY_MAX = 256 * 1024


class EmailParams(BaseModel):
    subject: templating.Template = Field(
        min_length=1, max_length=255, json_schema_extra=ui("Subject", "Тема")
    )
    body: templating.Template = Field(
        min_length=1,
        max_length=100_000,
        json_schema_extra=ui("Message", "Текст письма", kind="text"),
    )
    body_type: Literal["html", "text"] = Field(
        default="html",
        json_schema_extra=ui(
            "Message format", "Формат письма", options={"html": "HTML", "text": "Text"}
        ),
    )
    address_type: Literal["auto", "WORK", "HOME", "MAILING", "OTHER"] = Field(
        default="auto",
        json_schema_extra=ui(
            "Address",
            "Адрес",
            options={
                "auto": "Auto",
                "WORK": "Work",
                "HOME": "Home",
                "MAILING": "Mailing",
                "OTHER": "Other",
            },
        ),
    )
    sender: str = Field(
        default="", max_length=255, json_schema_extra=ui("Sender mailbox", "Ящик отправителя")
    )


@dataclass
class Letter:
    target: Target
    to: str
    owner_type: str
    owner_id: int
    subject: str
    body: str
    responsible_id: int
    unsubscribe: str = ""  # the record's unsubscribe link (SMTP's List-Unsubscribe header)

    def describe(self) -> dict[str, Any]:
        return {"to": self.to, "subject": self.subject, "body": self.body}


class SendEmail:
    code: ClassVar[str] = "send_email"
    Params: ClassVar[type[BaseModel]] = EmailParams

    def fields(self, ctx: ActionContext, params: EmailParams) -> set[str] | None:
        used = template_fields(params.subject, params.body)
        return with_fields(used, "ASSIGNED_BY_ID", ctx.channels.no_email_field)

    def preview(
        self, ctx: ActionContext, params: EmailParams, targets: list[Target]
    ) -> dict[str, Draft | Outcome]:
        unsubscribed = consent.suppressed_owners(ctx, targets, "email")
        return preview_each(targets, lambda t: _compose(ctx, params, t, unsubscribed))

    def deliver(
        self, ctx: ActionContext, params: EmailParams, drafts: list[Letter]
    ) -> dict[str, Outcome]:
        if ctx.channels.email_channel == "smtp":
            return _send_smtp(ctx, params, drafts)
        return _send_portal(ctx, params, drafts)


def _compose(
    ctx: ActionContext, params: EmailParams, target: Target, unsubscribed: set[tuple[str, int]]
) -> Letter | Outcome:
    owner_type, owner_id, owner = communication_owner(target)
    if (owner_type, owner_id) in unsubscribed:  # before the CRM field: the app's own list
        return skipped("unsubscribed", _("The client unsubscribed from e-mail."))
    if opted_out(owner, ctx.channels.no_email_field):
        return skipped("opted_out", _("The client opted out of e-mail."))
    to = multifield(owner, "EMAIL", params.address_type)
    if not to:
        return skipped("no_email", _("The record has no e-mail address."))
    if not _ADDRESS.match(to):
        return skipped("invalid_email", _("The e-mail address %(address)s is invalid.", address=to))
    link = consent.unsubscribe_url(ctx.portal, owner_type, owner_id, "email")
    context = {**render_context(ctx, target), "unsubscribe_url": link}
    subject = templating.one_line(templating.render(params.subject, context))
    if len(subject) > SUBJECT_MAX:
        raise templating.TextTooLong(
            _("The subject is longer than %(limit)s characters.", limit=SUBJECT_MAX)
        )
    body = templating.render(params.body, context, limit=BODY_MAX)
    if params.body_type == "html":
        body = templating.sanitize_html(body)
    record = target.record or {}
    responsible = int(record.get("ASSIGNED_BY_ID") or ctx.portal.token_user_id or 1)
    return Letter(target, to, owner_type, owner_id, subject or "-", body, responsible, link)


def _send_portal(
    ctx: ActionContext, params: EmailParams, letters: list[Letter]
) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    claims: dict[str, tuple[Letter, Send]] = {}
    unknown: list[str] = []
    ledger_rows = ledger.claim_many(ctx.session, ctx.portal.id, _keys(letters), "email")
    for letter in letters:
        row, fresh = ledger_rows[letter.target.key]
        if not fresh and row.state is not SendState.CLAIMED:
            outcomes[letter.target.key] = _settled(row, letter)
            continue
        claims[letter.target.key] = (letter, row)
        if not fresh:
            unknown.append(letter.target.key)
    for key, activity_id in _reconcile(ctx, unknown).items():
        letter, row = claims.pop(key)
        ledger.mark(row, SendState.SENT, str(activity_id), reconciled=True)
        outcomes[key] = _settled(row, letter)
    ctx.session.commit()
    if not claims:
        return outcomes
    result = ctx.client.batch(
        {
            key: ("crm.activity.add", {"fields": _activity(ctx, params, letter)})
            for key, (letter, _row) in claims.items()
        }
    )
    rows = {key: row for key, (_letter, row) in claims.items()}
    transient = ledger.settle_batch(ctx.session, rows, result)
    outcomes.update(
        {k: _settled(row, letter) for k, (letter, row) in claims.items() if k not in transient}
    )
    if transient:  # left claimed: the next attempt reconciles by ORIGIN_ID first
        raise RetryLater("some e-mails got a transient error")
    return outcomes


def _reconcile(ctx: ActionContext, keys: list[str]) -> dict[str, Any]:
    """Find activities we may have created already, by ``ORIGINATOR_ID`` + ``ORIGIN_ID``."""
    if not keys:
        return {}
    result = ctx.client.batch(
        {
            key: (
                "crm.activity.list",
                {"filter": {"ORIGINATOR_ID": ctx.app_code, "ORIGIN_ID": key}, "select": ["ID"]},
            )
            for key in keys
        }
    )
    if result.errors:
        raise RetryLater("cannot reconcile e-mails")
    return {key: rows[0]["ID"] for key, rows in result.results.items() if rows}


def _activity(ctx: ActionContext, params: EmailParams, letter: Letter) -> dict[str, Any]:
    target = letter.target
    fields: dict[str, Any] = {
        "OWNER_TYPE_ID": ENTITY_TYPE_IDS[target.entity_type],
        "OWNER_ID": target.entity_id,
        "TYPE_ID": 4,
        "DIRECTION": 2,
        "COMPLETED": "Y",
        "SUBJECT": letter.subject,
        "DESCRIPTION": letter.body,
        "DESCRIPTION_TYPE": 3 if params.body_type == "html" else 1,
        "RESPONSIBLE_ID": letter.responsible_id,
        "COMMUNICATIONS": [
            {
                "VALUE": letter.to,
                "ENTITY_ID": letter.owner_id,
                "ENTITY_TYPE_ID": ENTITY_TYPE_IDS[letter.owner_type],
            }
        ],
        "ORIGINATOR_ID": ctx.app_code,
        "ORIGIN_ID": target.key,
    }
    if params.sender:
        fields["SETTINGS"] = {"MESSAGE_FROM": params.sender}
    return fields


def _send_smtp(
    ctx: ActionContext, params: EmailParams, letters: list[Letter]
) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    comments: dict[str, tuple[str, dict[str, Any]]] = {}
    ledger_rows = ledger.claim_many(ctx.session, ctx.portal.id, _keys(letters), "smtp")
    for row, fresh in ledger_rows.values():
        if not fresh and row.state is SendState.CLAIMED:
            # SMTP cannot be asked whether a message went out: never risk sending it twice.
            ledger.mark(row, SendState.FAILED, reason="outcome unknown")
    ctx.session.commit()
    for letter in letters:
        key = letter.target.key
        row, _fresh = ledger_rows[key]
        if row.state is not SendState.CLAIMED:
            outcomes[key] = _settled(row, letter)
            continue
        html = letter.body if params.body_type == "html" else ""
        try:
            message_id = send_email(
                ctx.channels,
                key=key,
                to=letter.to,
                subject=letter.subject,
                html=html,
                text=templating.plain_text(letter.body) if html else letter.body,
                sender=params.sender,
                unsubscribe=letter.unsubscribe,
                timeout=ctx.timeout,
            )
        except SmtpError as exc:
            ledger.settle(ctx.session, row, SendState.FAILED, reason=str(exc))
            outcomes[key] = _settled(row, letter)
            continue
        ledger.settle(ctx.session, row, SendState.SENT, message_id)
        outcomes[key] = _settled(row, letter)
        if ctx.own_lines:
            comments[key] = _timeline_comment(letter)
    if comments:
        ctx.client.batch(comments)
    return outcomes


def _timeline_comment(letter: Letter) -> tuple[str, dict[str, Any]]:
    text = _("E-mail sent to %(to)s: %(subject)s", to=letter.to, subject=letter.subject)
    return (
        "crm.timeline.comment.add",
        {
            "fields": {
                "ENTITY_ID": letter.target.entity_id,
                "ENTITY_TYPE": letter.target.entity_type.lower(),
                "COMMENT": text,
            }
        },
    )


def _settled(row: Send, letter: Letter) -> Outcome:
    if row.state is SendState.SENT:
        return sent(_("E-mail sent to %(to)s.", to=letter.to), activity_id=row.external_id)
    reason = str((row.detail or {}).get("reason", ""))
    return failed("send_error", _("The e-mail was not sent: %(reason)s", reason=reason))


def _keys(letters: list[Letter]) -> list[str]:
    return [letter.target.key for letter in letters]
