"""Send SMS through the portal's gateway and write each one to the record's timeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from flask_babel import gettext as _
from pydantic import BaseModel, Field
from sqlalchemy import select

from marketapp import consent
from marketapp.actions import ledger, templating
from marketapp.actions.base import (
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
from marketapp.channels.phones import InvalidPhone, normalize_phone, sms_size
from marketapp.channels.sms import SmsError, SmsProvider, provider_for
from marketapp.models import Send, SendState, SmsMessage


class SmsParams(BaseModel):
    text: templating.Template = Field(
        min_length=1, max_length=2000, json_schema_extra=ui("Text", "Текст", kind="text")
    )
    phone_type: Literal["auto", "MOBILE", "WORK", "HOME", "OTHER"] = Field(
        default="auto",
        json_schema_extra=ui(
            "Phone",
            "Телефон",
            options={
                "auto": "Auto",
                "MOBILE": "Mobile",
                "WORK": "Work",
                "HOME": "Home",
                "OTHER": "Other",
            },
        ),
    )
    sender_name: str = Field(
        default="", max_length=64, json_schema_extra=ui("Sender name", "Имя отправителя")
    )


@dataclass
class Sms:
    target: Target
    phone: str
    text: str

    def describe(self) -> dict[str, Any]:
        size = sms_size(self.text)
        return {
            "phone": self.phone,
            "text": self.text,
            "segments": size.segments,
            "encoding": size.encoding,
        }


class SendSms:
    code: ClassVar[str] = "send_sms"
    Params: ClassVar[type[BaseModel]] = SmsParams

    def fields(self, ctx: ActionContext, params: SmsParams) -> set[str] | None:
        return with_fields(template_fields(params.text), ctx.channels.no_sms_field)

    def preview(
        self, ctx: ActionContext, params: SmsParams, targets: list[Target]
    ) -> dict[str, Draft | Outcome]:
        try:
            provider_for(ctx.channels, ctx.http, ctx.timeout)
        except SmsError as exc:
            problem = failed(
                "gateway_config", _("The SMS gateway is not configured: %(why)s", why=exc)
            )
            return {t.key: problem for t in targets}
        unsubscribed = consent.suppressed_owners(ctx, targets, "sms")
        return preview_each(targets, lambda t: _compose(ctx, params, t, unsubscribed))

    def deliver(
        self, ctx: ActionContext, params: SmsParams, drafts: list[Sms]
    ) -> dict[str, Outcome]:
        provider = provider_for(ctx.channels, ctx.http, ctx.timeout)  # checked by preview
        keys = [d.target.key for d in drafts]
        ledger_rows = ledger.claim_many(ctx.session, ctx.portal.id, keys, "sms")
        outcomes: dict[str, Outcome] = {}
        comments: dict[str, tuple[str, dict[str, Any]]] = {}
        retry = False
        for sms in drafts:
            try:
                outcome, fresh = _deliver(ctx, provider, params, sms, ledger_rows[sms.target.key])
            except RetryLater:
                retry = True
                continue
            outcomes[sms.target.key] = outcome
            if fresh and outcome.status == "sent" and ctx.own_lines:
                comments[sms.target.key] = _timeline_comment(sms, outcome)
        if comments:
            ctx.client.batch(comments)
        if retry:
            raise RetryLater("the SMS gateway asked to try later")
        return outcomes


def _compose(
    ctx: ActionContext, params: SmsParams, target: Target, unsubscribed: set[tuple[str, int]]
) -> Sms | Outcome:
    owner_type, owner_id, owner = communication_owner(target)
    if (owner_type, owner_id) in unsubscribed:  # before the CRM field: the app's own list
        return skipped("unsubscribed", _("The client unsubscribed from SMS."))
    if opted_out(owner, ctx.channels.no_sms_field):
        return skipped("opted_out", _("The client opted out of SMS."))
    raw = multifield(owner, "PHONE", params.phone_type, prefer="MOBILE")
    if not raw:
        return skipped("no_phone", _("The record has no phone number."))
    try:
        phone = normalize_phone(raw, ctx.channels.default_country)
    except InvalidPhone:
        return skipped("invalid_phone", _("The phone number %(phone)s is invalid.", phone=raw))
    link = consent.unsubscribe_url(ctx.portal, owner_type, owner_id, "sms")
    context = {**render_context(ctx, target), "unsubscribe_url": link}
    text = templating.render(params.text, context).strip()
    if not text:
        return skipped("empty_text", _("The message is empty for this record."))
    limit = ctx.channels.sms_max_length
    if len(text) > limit:
        return skipped(
            "too_long",
            _(
                "The message has %(n)s characters; the limit is %(limit)s.",
                n=len(text),
                limit=limit,
            ),
        )
    return Sms(target, phone, text)


def _deliver(
    ctx: ActionContext, provider: SmsProvider, params: SmsParams, sms: Sms, claim: tuple[Send, bool]
) -> tuple[Outcome, bool]:
    key = sms.target.key
    row, fresh = claim
    if not fresh and row.state is SendState.CLAIMED:
        _reconcile(ctx, provider, row)
    if row.state is not SendState.CLAIMED:
        return _settled(ctx, row), False
    size = sms_size(sms.text)
    message = SmsMessage(
        portal_id=ctx.portal.id,
        key=key,
        provider=provider.name,
        phone=sms.phone,
        text=sms.text,
        sender=params.sender_name,
        segments=size.segments,
        encoding=size.encoding,
        entity_type=sms.target.entity_type,
        entity_id=sms.target.entity_id,
    )
    ctx.session.add(message)  # written before the attempt: proof we may have sent it
    ctx.session.commit()
    try:
        receipt = provider.send(key, sms.phone, sms.text, params.sender_name)
    except SmsError as exc:
        if exc.unknown:
            raise RetryLater(str(exc)) from exc  # reconciled (never resent) next time
        ctx.session.delete(message)
        if exc.retryable:
            ledger.release(ctx.session, row)
            raise RetryLater(str(exc)) from exc
        ledger.settle(ctx.session, row, SendState.FAILED, reason=str(exc))
        return _settled(ctx, row), True
    message.provider_message_id = receipt.message_id
    message.status = receipt.status
    ledger.settle(ctx.session, row, SendState.SENT, receipt.message_id, segments=size.segments)
    return _settled(ctx, row), True


def _reconcile(ctx: ActionContext, provider: SmsProvider, row: Send) -> None:
    """A claimed send: if its message row exists the gateway may have it; never resend then
    (the gateway may still confirm it by our key: the development outbox always can)."""
    message = ctx.session.scalar(
        select(SmsMessage).where(SmsMessage.portal_id == ctx.portal.id, SmsMessage.key == row.key)
    )
    if message is None:
        return  # the attempt never reached the gateway: try it now
    if not message.provider_message_id and message.provider == provider.name:
        receipt = provider.find(row.key)
        if receipt is not None:
            message.provider_message_id, message.status = receipt.message_id, receipt.status
    if message.provider_message_id:
        ledger.settle(
            ctx.session, row, SendState.SENT, message.provider_message_id, segments=message.segments
        )
    else:
        message.status = "unknown"
        ledger.settle(ctx.session, row, SendState.FAILED, reason="outcome unknown; not resent")


def _settled(ctx: ActionContext, row: Send) -> Outcome:
    detail = row.detail or {}
    if row.state is SendState.SENT:
        return sent(
            _("SMS sent."), message_id=row.external_id, segments=int(detail.get("segments", 0))
        )
    reason = str(detail.get("reason", ""))
    return failed("send_error", _("The SMS was not sent: %(reason)s", reason=reason))


def timeline_text(phone: str, segments: int, text: str) -> str:
    """What the timeline says about one SMS sent."""
    return str(
        _(
            "SMS to %(phone)s (%(segments)s segments): %(text)s",
            phone=phone,
            segments=segments,
            text=templating.plain_text(text),
        )
    )


def _timeline_comment(sms: Sms, outcome: Outcome) -> tuple[str, dict[str, Any]]:
    text = timeline_text(sms.phone, int(outcome.values.get("segments", 0)), sms.text)
    return (
        "crm.timeline.comment.add",
        {
            "fields": {
                "ENTITY_ID": sms.target.entity_id,
                "ENTITY_TYPE": sms.target.entity_type.lower(),
                "COMMENT": text,
            }
        },
    )
