"""Install, update and uninstall: the portal's life as Bitrix24 reports it.

Event handlers only verify what needs no REST traffic (``application_token``) and queue the rest;
tokens travel to jobs Fernet-encrypted so the queue never holds them in plain text.
"""

from __future__ import annotations

import json
import logging
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
from marketapp.db import db_session
from marketapp.i18n import normalize
from marketapp.jobs import enqueue, job
from marketapp.lifecycle import registration, verify
from marketapp.lifecycle.manifest import build_manifest
from marketapp.models import Base, Portal, PortalStatus
from marketapp.security import reject, tokens_match
from marketapp.settings import get_settings

log = logging.getLogger(__name__)


class NotAdmin(Exception):
    """The installer was opened by a user who cannot register robots and placements."""


def find_portal(session: Session, member_id: str) -> Portal | None:
    return session.scalar(select(Portal).where(Portal.member_id == member_id))


# --- installer page --------------------------------------------------------------------------


def install_from_page(session: Session, page: PlacementRequest) -> registration.SyncReport:
    """Verify the installer POST, store the portal and its tokens, register the manifest."""
    user_id = verify.verify_install(page.server_endpoint, page.auth_id, page.member_id, page.domain)
    scheme = "https" if page.protocol == 1 else "http"
    client_endpoint = f"{scheme}://{page.domain}/rest/"
    if not verify.portal_user(client_endpoint, page.auth_id).is_admin:
        raise NotAdmin("only an administrator can install the application")
    portal = find_portal(session, page.member_id) or Portal(member_id=page.member_id)
    portal.domain = page.domain
    portal.client_endpoint = client_endpoint
    portal.server_endpoint = page.server_endpoint
    portal.application_token = page.application_token
    portal.language = normalize(page.lang)
    portal.scope = ",".join(page.scope)[:512]  # the column; Bitrix24 scopes are far shorter
    store_tokens(portal, page.auth_id, page.refresh_id, page.auth_expires, user_id)
    session.add(portal)
    session.commit()
    return sync_portal(session, portal)


def sync_portal(session: Session, portal: Portal) -> registration.SyncReport:
    from marketapp.bitrix.client import client_for

    manifest = build_manifest(get_settings().public_url)
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
    """Handle one event delivery fast; return a short outcome for the response."""
    event = parse_event(fields)
    portal = find_portal(session, event.auth.member_id)
    if isinstance(event, AppUninstallEvent):
        return _uninstall(session, portal, event)
    known_token = portal is not None and tokens_match(
        portal.application_token, event.auth.application_token
    )
    if isinstance(event, AppInstallEvent | AppUpdateEvent):
        # A known token is trusted at once; a new one (first install, rotation on update)
        # only after a job has confirmed the access token with the OAuth server.
        enqueue(confirm_app_event, _seal(fields), known_token)
        session.commit()
        return "queued"
    if not known_token:
        raise reject("unknown application_token for event", member_id=event.auth.member_id)
    return "ignored"


def _uninstall(session: Session, portal: Portal | None, event: AppUninstallEvent) -> str:
    member_id = event.auth.member_id
    if portal is None or not tokens_match(portal.application_token, event.auth.application_token):
        raise reject("uninstall with a wrong application_token", member_id=member_id)
    portal.access_token = portal.refresh_token = None
    portal.installed = False
    portal.status = PortalStatus.UNINSTALLED
    if event.data.clean:
        enqueue(purge_portal, portal.id)
    session.commit()
    log.info("portal uninstalled", extra={"member_id": member_id, "clean": event.data.clean})
    return "uninstalled"


@job()
def confirm_app_event(sealed: str, known_token: bool) -> None:
    """Verify an ONAPPINSTALL/ONAPPUPDATE, store its tokens, and re-sync after an update."""
    event = parse_event(_unseal(sealed))
    assert isinstance(event, AppInstallEvent | AppUpdateEvent)
    auth = event.auth
    session = db_session()
    if not known_token:
        try:
            _verify_event_auth(auth)
        except verify.VerificationError as exc:
            log.warning(
                "app event not verified", extra={"member_id": auth.member_id, "why": str(exc)}
            )
            return
    portal = find_portal(session, auth.member_id) or Portal(member_id=auth.member_id)
    portal.domain = auth.domain
    portal.client_endpoint = auth.client_endpoint
    portal.server_endpoint = auth.server_endpoint
    portal.application_token = auth.application_token
    portal.installed = True
    if event.data.language_id:
        portal.language = normalize(event.data.language_id)
    store_tokens(
        portal, auth.access_token, auth.refresh_token, auth.expires_in, auth.user_id, auth.expires
    )
    session.add(portal)
    session.commit()
    if isinstance(event, AppUpdateEvent):
        sync_portal(session, portal)


def _verify_event_auth(auth: Auth) -> None:
    if not auth.access_token:
        raise verify.VerificationError("event carries no access token")
    verify.verify_install(auth.server_endpoint, auth.access_token, auth.member_id, auth.domain)


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
