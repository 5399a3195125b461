"""Consent: signed unsubscribe links, the suppression list, and applying an unsubscribe.

A link is ``<public_url>/u/<token>``, short enough for an SMS. The token is base64url of

    header (1 byte: version, entity type, channel) | varint portal id | varint entity id | tag

where ``tag`` is the first 16 bytes (128 bits) of HMAC-SHA256 over the payload and the portal's
``member_id``, keyed by a key derived from the app's ``SECRET_KEY``. Binding the member id
without carrying it keeps the token short and makes a link of a deleted portal useless on a
new portal that happens to get the same row id. Only the canonical encoding is accepted, so
changing any character of a token invalidates it.

The link names the record that receives the message (a deal's contact or company, as the
consent fields are read from it), and the channel. Applying it adds the record to the
suppression list at once (sending stops there) and writes ``"Y"`` to the portal's consent
field in a job (the page answers without waiting for Bitrix24's limiter); a write the job could
not make (the portal was unavailable) is queued again by :func:`sweep_pending_consent`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from marketapp.actions.base import ENTITY_METHODS, ActionContext, Target, communication_owner
from marketapp.bitrix.errors import BitrixError, PortalUnavailable
from marketapp.config import get_config
from marketapp.db import db_session
from marketapp.jobs import enqueue, job, periodic
from marketapp.models import ChannelSettings, Portal, PortalStatus, Suppression

log = logging.getLogger(__name__)

CHANNELS = ("email", "sms")
PATH = "/u/"
VERSION = 1
TAG_BYTES = 16
MAX_TOKEN = 64  # far above any real token (about 30 characters): refused before decoding
_ENTITIES = ("CONTACT", "COMPANY", "LEAD", "DEAL")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
# A consent write still pending this long after its last change lost its job (the portal was
# unavailable, or the retries ran out): the sweeper queues it again.
PENDING_AGAIN_AFTER = timedelta(minutes=10)
_SWEEP_BATCH = 500

Ref = tuple[str, int]


class InvalidLink(Exception):
    """The token is malformed, forged, tampered with, or names no portal we know."""


@dataclass(frozen=True)
class Link:
    """What a verified token names."""

    portal_id: int
    entity_type: str
    entity_id: int
    channel: str


# -- tokens ---------------------------------------------------------------------------------


def _key() -> bytes:
    # A key of its own purpose, derived from the app's one secret (no new secret to keep).
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, b"marketapp unsubscribe link v1", hashlib.sha256).digest()


def _tag(payload: bytes, member_id: str) -> bytes:
    message = payload + b"\0" + member_id.encode()
    return hmac.new(_key(), message, hashlib.sha256).digest()[:TAG_BYTES]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    for n in range(at, min(len(data), at + 9)):
        value |= (data[n] & 0x7F) << shift
        if not data[n] & 0x80:
            return value, n + 1
        shift += 7
    raise InvalidLink("bad number")


def _payload(link: Link) -> bytes:
    if link.channel not in CHANNELS or link.entity_type not in _ENTITIES or link.entity_id <= 0:
        raise ValueError(f"no unsubscribe link for {link}")
    header = VERSION << 3 | _ENTITIES.index(link.entity_type) << 1 | CHANNELS.index(link.channel)
    return bytes([header]) + _varint(link.portal_id) + _varint(link.entity_id)


def make_token(link: Link, member_id: str) -> str:
    payload = _payload(link)
    raw = payload + _tag(payload, member_id)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(token: str) -> tuple[Link, bytes, bytes]:
    """The link a token claims, its payload and tag (not verified yet)."""
    if not token or len(token) > MAX_TOKEN or not _TOKEN_CHARS.match(token):
        raise InvalidLink("bad characters")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidLink("bad encoding") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
        raise InvalidLink("not canonical")  # unused low bits changed: still a different token
    if len(raw) < 3 + TAG_BYTES:
        raise InvalidLink("too short")
    header = raw[0]
    version, entity, channel = header >> 3, header >> 1 & 0x3, header & 0x1
    portal_id, at = _read_varint(raw, 1)
    entity_id, at = _read_varint(raw, at)
    if version != VERSION or len(raw) - at != TAG_BYTES or entity_id <= 0:
        raise InvalidLink("bad layout")
    link = Link(portal_id, _ENTITIES[entity], entity_id, CHANNELS[channel])
    return link, raw[:at], raw[at:]


def read_link(session: Session, token: str) -> tuple[Portal, Link]:
    """The portal and link a token names, its signature checked; :class:`InvalidLink` if not."""
    link, payload, tag = _decode(token)
    portal = session.get(Portal, link.portal_id)
    if portal is None or not hmac.compare_digest(_tag(payload, portal.member_id), tag):
        raise InvalidLink("bad signature or unknown portal")
    return portal, link


def unsubscribe_url(portal: Portal, entity_type: str, entity_id: int, channel: str) -> str:
    """The public, signed unsubscribe link of one record and channel (``email`` | ``sms``)."""
    token = make_token(Link(portal.id, entity_type, entity_id, channel), portal.member_id)
    return f"{get_config().public_url.rstrip('/')}{PATH}{token}"


# -- the suppression list ---------------------------------------------------------------------


def is_suppressed(
    session: Session, portal_id: int, refs: Collection[Ref], channel: str
) -> set[Ref]:
    """Which of ``refs`` (entity type, id) unsubscribed from ``channel``."""
    found: set[Ref] = set()
    for entity_type in sorted({t for t, _id in refs}):
        ids = sorted({i for t, i in refs if t == entity_type})
        for n in range(0, len(ids), 500):  # bounded IN lists
            rows = session.scalars(
                select(Suppression.entity_id).where(
                    Suppression.portal_id == portal_id,
                    Suppression.channel == channel,
                    Suppression.entity_type == entity_type,
                    Suppression.entity_id.in_(ids[n : n + 500]),
                )
            )
            found.update((entity_type, int(i)) for i in rows)
    return found


def suppressed_owners(ctx: ActionContext, targets: list[Target], channel: str) -> set[Ref]:
    """The message recipients (:func:`communication_owner`) of ``targets`` that unsubscribed."""
    owners = [communication_owner(t)[:2] for t in targets]
    return is_suppressed(ctx.session, ctx.portal.id, owners, channel)


def consent_field(channels: ChannelSettings, channel: str) -> str:
    return channels.no_email_field if channel == "email" else channels.no_sms_field


@dataclass(frozen=True)
class Unsubscribed:
    """The result of applying a link: ``already`` when it had been applied before."""

    already: bool
    crm_field: str  # "" when the portal has no consent field for the channel


def unsubscribe(session: Session, portal: Portal, link: Link, source: str) -> Unsubscribed:
    """Add the record to the suppression list (committed) and queue the CRM consent write.

    Idempotent: a second call finds the row and queues the write again only if it has not
    been done.
    """
    from marketapp.channel_settings import channel_settings  # it imports the scenario schema

    row = _find(session, link)
    already = row is not None
    if row is None:
        field = consent_field(channel_settings(session, portal), link.channel)
        row = Suppression(
            portal_id=portal.id,
            entity_type=link.entity_type,
            entity_id=link.entity_id,
            channel=link.channel,
            source=source,
            crm_field=field,
            crm_state="pending" if field else "not_configured",
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # the same link clicked twice at once
            session.rollback()
            return unsubscribe(session, portal, link, source)
    if row.crm_state in ("pending", "failed"):
        row.crm_state = "pending"
        enqueue(write_consent, portal.id, row.id, session=session)
    session.commit()
    log.info(
        "unsubscribed",
        extra={"portal_id": portal.id, "channel": link.channel, "already": already},
    )
    return Unsubscribed(already, row.crm_field)


def _find(session: Session, link: Link) -> Suppression | None:
    return session.scalar(
        select(Suppression).where(
            Suppression.portal_id == link.portal_id,
            Suppression.entity_type == link.entity_type,
            Suppression.entity_id == link.entity_id,
            Suppression.channel == link.channel,
        )
    )


def already_unsubscribed(session: Session, link: Link) -> bool:
    return _find(session, link) is not None


@job(retries=10, retry_delay=30)
def write_consent(portal_id: int, suppression_id: int) -> None:
    """Write ``"Y"`` to the record's consent field with the portal's own token."""
    from marketapp.bitrix.client import client_for

    session = db_session()
    row = session.get(Suppression, suppression_id)
    portal = session.get(Portal, portal_id)
    if row is None or portal is None or row.portal_id != portal_id or row.crm_state != "pending":
        return
    method = f"{ENTITY_METHODS[row.entity_type]}.update"
    params = {"id": row.entity_id, "fields": {row.crm_field: "Y"}}
    try:
        client_for(portal).call(method, params, idempotent=True)
    except PortalUnavailable:
        return  # stays pending: :func:`sweep_pending_consent` queues it again later
    except BitrixError as exc:
        if exc.retryable:
            raise
        # A deleted record or a field removed from the CRM: the suppression list still holds.
        log.warning("consent field not written", extra={"portal_id": portal_id, "why": str(exc)})
        row.crm_state = "failed"
        session.commit()
        return
    row.crm_state = "written"
    session.commit()


@periodic(every_minutes=15)
def sweep_pending_consent() -> None:
    """Queue again the consent writes left pending (their job gave up while the portal was
    unavailable, or ran out of retries) of portals that work; the write is idempotent."""
    session = db_session()
    working = select(Portal.id).where(Portal.status == PortalStatus.ACTIVE)
    rows = session.execute(
        select(Suppression.portal_id, Suppression.id)
        .where(
            Suppression.crm_state == "pending",
            Suppression.portal_id.in_(working),
            Suppression.updated_at < datetime.now(UTC) - PENDING_AGAIN_AFTER,
        )
        .order_by(Suppression.id)
        .limit(_SWEEP_BATCH)
    ).all()
    for portal_id, row_id in rows:
        enqueue(write_consent, int(portal_id), int(row_id), session=session)
    session.commit()
