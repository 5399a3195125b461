"""Delivery status of SMS handed to real gateways, polled until final."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from marketapp.bitrix.http import shared_session
from marketapp.channel_settings import channel_settings
from marketapp.channels.sms import SmsError, provider_for
from marketapp.config import get_config
from marketapp.db import db_session
from marketapp.jobs import periodic
from marketapp.models import Portal, PortalStatus, SmsMessage

log = logging.getLogger(__name__)
PENDING = ("queued", "sent")
POLL_FOR = timedelta(days=2)  # gateways stop reporting after a day or two
BATCH = 200


@periodic(every_minutes=5)
def poll_sms_status() -> None:
    """Ask each portal's gateway about its messages that are not final yet."""
    session = db_session()
    since = datetime.now(UTC) - POLL_FOR
    pending = session.scalars(
        select(SmsMessage)
        .join(Portal, Portal.id == SmsMessage.portal_id)
        .where(
            Portal.status == PortalStatus.ACTIVE,
            SmsMessage.status.in_(PENDING),
            SmsMessage.provider.in_(("twilio", "smsru")),
            SmsMessage.provider_message_id != "",
            SmsMessage.created_at >= since,
        )
        .order_by(SmsMessage.id)
        .limit(BATCH)
    ).all()
    timeout = get_config().http_timeout
    for message in pending:
        portal = session.get(Portal, message.portal_id)
        assert portal is not None
        channels = channel_settings(session, portal)
        if channels.sms_provider != message.provider:
            continue  # the gateway was changed since; its credentials are gone
        try:
            status = provider_for(channels, shared_session(), timeout).status(
                message.provider_message_id
            )
        except SmsError as exc:
            log.warning("sms status poll failed", extra={"sms_id": message.id, "why": str(exc)})
            continue
        message.status = status
    session.commit()
