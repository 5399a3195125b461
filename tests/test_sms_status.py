"""Polling keeps SMS statuses of real gateways up to date until they are final."""

import json

import responses
from sqlalchemy import select
from sqlalchemy.orm import Session

from marketapp.models import SmsMessage
from marketapp.sms_status import poll_sms_status
from tests.support import add_portal, add_sms, set_channels

TWILIO = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages"
TWILIO_CREDENTIALS = json.dumps({"account_sid": "AC1", "auth_token": "t"})


@responses.activate
def test_poll_updates_pending_twilio_messages(db: Session) -> None:
    portal = add_portal(db)
    set_channels(db, portal, sms_provider="twilio", sms_credentials=TWILIO_CREDENTIALS)
    add_sms(db, portal.id, "a", "queued")
    add_sms(db, portal.id, "b", "sent")
    add_sms(db, portal.id, "c", "delivered")  # final: not asked again
    add_sms(db, portal.id, "d", "queued", provider="outbox")
    db.commit()
    responses.get(f"{TWILIO}/SMa.json", json={"sid": "SMa", "status": "delivered"})
    responses.get(f"{TWILIO}/SMb.json", json={"sid": "SMb", "status": "undelivered"})
    poll_sms_status()
    db.expire_all()
    statuses = {m.key: m.status for m in db.scalars(select(SmsMessage))}
    assert statuses == {"a": "delivered", "b": "undelivered", "c": "delivered", "d": "queued"}
    assert len(responses.calls) == 2


@responses.activate
def test_poll_survives_gateway_errors(db: Session) -> None:
    portal = add_portal(db)
    set_channels(db, portal, sms_provider="twilio", sms_credentials=TWILIO_CREDENTIALS)
    add_sms(db, portal.id, "a", "queued")
    db.commit()
    responses.get(f"{TWILIO}/SMa.json", status=503, json={"code": 20503, "message": "down"})
    poll_sms_status()
    db.expire_all()
    assert db.scalars(select(SmsMessage)).one().status == "queued"
