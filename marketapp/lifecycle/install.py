"""Install, update and uninstall: the portal's life as Bitrix24 reports it.

Any employee can read ``APPLICATION_TOKEN`` (it travels through their browser), so it only
identifies the portal. Event handlers check it, queue a job and answer; the job confirms the event
with Bitrix24 before anything is stored: ``ONAPPINSTALL``/``ONAPPUPDATE`` by ``app.info`` on the
OAuth server with the event's own access token (an admin's), ``ONAPPUNINSTALL`` by the stored
tokens being revoked. Tokens travel to jobs Fernet-encrypted, never in plain text.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from marketapp.bitrix.payloads import (
    AppInstallEvent,
    AppUninstallEvent,
    AppUpdateEvent,
    Auth,
    PlacementRequest,
    parse_event,
)
from marketapp.config import get_config
from marketapp.db import db_session
from marketapp.i18n import normalize
from marketapp.jobs import enqueue, job
from marketapp.lifecycle import registration, verify
from marketapp.lifecycle.manifest import build_manifest
from marketapp.models import Base, Portal, PortalStatus
from marketapp.security import reject, security_event, tokens_match

log = logging.getLogger(__name__)


class NotAdmin(Exception):
    """The installer was opened by a user who cannot register robots and placements."""


def find_portal(session: Session, member_id: str) -> Portal | None:
    return session.scalar(select(Portal).where(Portal.member_id == member_id))


# --- installer page --------------------------------------------------------------------------


def install_from_page(session: Session, page: PlacementRequest) -> registration.SyncReport:
    """Verify the installer POST, store the portal and its tokens, register the manifest."""
    confirmed = verify.verify_install(
        page.server_endpoint, page.auth_id, page.member_id, page.domain
    )
    if not verify.portal_user(confirmed.client_endpoint, page.auth_id).is_admin:
        raise NotAdmin("only an administrator can install the application")
    portal = find_portal(session, page.member_id) or Portal(member_id=page.member_id)
    _adopt(portal, confirmed, page.server_endpoint, page.application_token)
    portal.language = normalize(page.lang)
    portal.scope = ",".join(page.scope)[:512]  # the column; Bitrix24 scopes are far shorter
    store_tokens(portal, page.auth_id, page.refresh_id, page.auth_expires, confirmed.user_id)
    session.add(portal)
    session.commit()
    report = sync_portal(session, portal)
    # Registered: the main page is usable now. After a reinstall Bitrix24 may send ONAPPINSTALL
    # late, or never when it already counts the app installed; the verified installer suffices.
    portal.installed = True
    session.commit()
    return report


def _adopt(
    portal: Portal,
    confirmed: verify.ConfirmedInstall,
    server_endpoint: str,
    application_token: str,
) -> None:
    """Take the portal's identity from a confirmed install (endpoint and domain as confirmed)."""
    portal.domain = confirmed.domain
    portal.client_endpoint = confirmed.client_endpoint
    portal.server_endpoint = server_endpoint  # allow-listed: it just answered app.info
    portal.application_token = application_token


def sync_portal(session: Session, portal: Portal) -> registration.SyncReport:
    from marketapp.bitrix.client import client_for

    manifest = build_manifest(get_config().public_url)
    return registration.sync(session, portal, client_for(portal), manifest)


def store_tokens(
    portal: Portal,
    access: str | None,
    refresh: str | None,
    expires_in: int | None,
    user_id: int | None,
    expires_at: int | None = None,
) -> None:
    if not access or not refresh:
        return
    portal.access_token = access
    portal.refresh_token = refresh
    if expires_at:
        portal.expires_at = datetime.fromtimestamp(expires_at, UTC)
    else:
        portal.expires_at = datetime.now(UTC) + timedelta(seconds=expires_in or 3600)
    portal.token_user_id = user_id
    portal.status = PortalStatus.ACTIVE


# --- events ------------------------------------------------------------------------------------


def receive_event(session: Session, fields: dict[str, Any]) -> str:
    """Handle one event delivery fast (no REST traffic); return a short outcome for the response."""
    event = parse_event(fields)
    portal = find_portal(session, event.auth.member_id)
    if isinstance(event, AppInstallEvent | AppUpdateEvent):
        # Confirmed every time, a known application_token included: any employee can read it.
        enqueue(confirm_app_event, _seal(fields))
        session.commit()
        return "queued"
    known_token = portal is not None and tokens_match(
        portal.application_token, event.auth.application_token
    )
    if not known_token:
        raise reject(
            f"{event.event} with a wrong application_token", member_id=event.auth.member_id
        )
    if isinstance(event, AppUninstallEvent):
        assert portal is not None
        enqueue(confirm_uninstall, portal.id, event.data.clean, _fingerprint(portal))
        session.commit()
        return "queued"
    return "ignored"


@dataclass(frozen=True)
class _EventTokens:
    access: str
    refresh: str | None
    expires_in: int | None
    expires: int | None


@job()
def confirm_app_event(sealed: str, _known_token: bool = False) -> None:
    """Confirm an ONAPPINSTALL/ONAPPUPDATE, store its tokens, and re-sync after an update.

    (``_known_token`` is accepted for jobs queued by an older release, and ignored.)
    """
    event = parse_event(_unseal(sealed))
    assert isinstance(event, AppInstallEvent | AppUpdateEvent)
    auth = event.auth
    try:
        confirmed, tokens = _confirm_event_auth(auth)
    except verify.VerificationError as exc:
        security_event(
            "app event ignored", f"{event.event} not confirmed: {exc}", member_id=auth.member_id
        )
        return
    session = db_session()
    portal = find_portal(session, auth.member_id) or Portal(member_id=auth.member_id)
    _adopt(portal, confirmed, auth.server_endpoint, auth.application_token)
    portal.installed = True
    if event.data.language_id:
        portal.language = normalize(event.data.language_id)
    store_tokens(
        portal, tokens.access, tokens.refresh, tokens.expires_in, confirmed.user_id, tokens.expires
    )
    session.add(portal)
    session.commit()
    if isinstance(event, AppUpdateEvent):
        sync_portal(session, portal)


def _confirm_event_auth(auth: Auth) -> tuple[verify.ConfirmedInstall, _EventTokens]:
    """``app.info`` on the allow-listed OAuth server, then ``profile`` on the confirmed endpoint.

    Bitrix24 sends these events with the installing (updating) admin's token; a user's own
    genuine token must not be able to replace the portal's tokens or application token. A
    delivery that waited in Bitrix24's queue past the token's hour is confirmed with a refreshed
    pair (the spent refresh token is then replaced by the new one).
    """
    if not auth.access_token:
        raise verify.VerificationError("event carries no access token")
    tokens = _EventTokens(auth.access_token, auth.refresh_token, auth.expires_in, auth.expires)
    try:
        confirmed = verify.verify_install(
            auth.server_endpoint, tokens.access, auth.member_id, auth.domain
        )
    except verify.VerificationError as exc:
        if exc.code.lower() != "expired_token" or not auth.refresh_token:
            raise
        tokens = _refreshed(auth.server_endpoint, auth.refresh_token)
        confirmed = verify.verify_install(
            auth.server_endpoint, tokens.access, auth.member_id, auth.domain
        )
    if not verify.portal_user(confirmed.client_endpoint, tokens.access).is_admin:
        raise verify.VerificationError("the token does not belong to an administrator")
    return confirmed, tokens


def _refreshed(server_endpoint: str, refresh_token: str) -> _EventTokens:
    data = verify.refresh_pair(server_endpoint, refresh_token)
    return _EventTokens(
        str(data["access_token"]),
        str(data.get("refresh_token") or "") or None,
        int(data["expires_in"]) if data.get("expires_in") else None,
        int(data["expires"]) if data.get("expires") else None,
    )


UNINSTALL_CHECKS = 4  # attempts to learn the stored tokens' state before giving up


@job()
def confirm_uninstall(portal_id: int, clean: bool, fingerprint: str, attempt: int = 1) -> None:
    """Act on ONAPPUNINSTALL only if the stored tokens were revoked (a real uninstall does so)."""
    session = db_session()
    portal = session.get(Portal, portal_id)
    if portal is None or portal.status is PortalStatus.UNINSTALLED:
        return
    member_id = portal.member_id
    if _fingerprint(portal) != fingerprint:
        # Reinstalled, or refreshed, since the event: its tokens were alive after it.
        log.info("uninstall superseded, ignored", extra={"member_id": member_id})
        return
    session.commit()  # no transaction stays open across the REST check
    state = verify.stored_tokens_state(portal)
    if state is verify.TokenState.LIVE:
        security_event(
            "uninstall ignored", "forged ONAPPUNINSTALL: tokens still work", member_id=member_id
        )
    elif state is verify.TokenState.UNKNOWN:
        _check_uninstall_later(portal, clean, fingerprint, attempt)
    else:
        _mark_uninstalled(session, portal, clean)


def _check_uninstall_later(portal: Portal, clean: bool, fingerprint: str, attempt: int) -> None:
    """Network trouble, a 5xx or a parked portal: nothing proves the uninstall yet."""
    extra = {"member_id": portal.member_id, "attempt": attempt}
    if attempt >= UNINSTALL_CHECKS:
        log.warning("uninstall not confirmed, portal kept", extra=extra)
        return
    retry = get_config().jobs_retry_delay
    delay = 60.0 * attempt if retry is None else retry
    enqueue(confirm_uninstall, portal.id, clean, fingerprint, attempt + 1, delay=delay)
    db_session().commit()
    log.info("uninstall not confirmed yet, checking again", extra=extra)


def _mark_uninstalled(session: Session, portal: Portal, clean: bool) -> None:
    session.refresh(portal)
    portal.access_token = portal.refresh_token = None
    portal.installed = False
    portal.status = PortalStatus.UNINSTALLED
    portal.session_epoch += 1  # page sessions minted before now are refused
    if clean:
        enqueue(purge_portal, portal.id)
    session.commit()
    log.info("portal uninstalled", extra={"member_id": portal.member_id, "clean": clean})


def _fingerprint(portal: Portal) -> str:
    """Changes whenever the stored token pair does (refresh or reinstall); reveals nothing."""
    material = f"{portal.refresh_token or ''}\0{portal.access_token or ''}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


@job()
def purge_portal(portal_id: int) -> None:
    """``CLEAN=1``: delete every row of the portal (children first), then the portal."""
    session = db_session()
    portal = session.get(Portal, portal_id)
    if portal is None or portal.status is not PortalStatus.UNINSTALLED:
        return  # reinstalled meanwhile: keep its data
    for table in reversed(Base.metadata.sorted_tables):
        if "portal_id" in table.c:
            session.execute(delete(table).where(table.c.portal_id == portal_id))
    session.delete(portal)
    session.commit()
    log.info("portal data purged", extra={"portal_id": portal_id})


def _seal(fields: dict[str, Any]) -> str:
    cipher = current_app.extensions["marketapp.cipher"]
    return str(cipher.encrypt(json.dumps(fields).encode()).decode())


def _unseal(sealed: str) -> dict[str, Any]:
    cipher = current_app.extensions["marketapp.cipher"]
    data: dict[str, Any] = json.loads(cipher.decrypt(sealed.encode()))
    return data
