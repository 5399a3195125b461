"""Access tokens of a portal: storage, and refresh that happens once across all processes.

The refresh runs under a lock on the portal row: PostgreSQL ``SELECT … FOR UPDATE``, SQLite
``BEGIN IMMEDIATE`` (SQLite means one machine, so its write lock is as wide as needed). After
taking the lock the row is read again and the OAuth server is asked only if the stored access
token is still the one the caller found stale; the new pair is committed before anyone uses it.
Refresh tokens rotate, so two refreshes with the same one would leave the loser ``invalid_grant``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from authlib.integrations.requests_client.oauth2_session import OAuth2ClientAuth
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.client import OAuth2Client
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from marketapp.bitrix import errors
from marketapp.bitrix.http import validate_endpoint
from marketapp.models.portal import Portal, PortalStatus

log = logging.getLogger(__name__)

# Treat a token as expired this many seconds early so it does not expire in flight.
EXPIRY_LEEWAY = 5.0


@dataclass(frozen=True)
class Token:
    """What a REST call needs: the access token and the portal's REST base URL."""

    access_token: str = field(repr=False)
    client_endpoint: str
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        """True when the stored expiry is known to have passed."""
        return self.expires_at is not None and now >= self.expires_at - EXPIRY_LEEWAY


class TokenSource(Protocol):
    """The client's view of a portal's credentials."""

    def current(self) -> Token:
        """The token to use now."""

    def refresh(self, stale: Token) -> Token:
        """Replace ``stale`` (single flight); returns the newer token."""

    def moved(self, token: Token, client_endpoint: str) -> Token:
        """The portal answered 302 to a new host: store and return the new endpoint."""

    def needs_reauth(self) -> None:
        """Even a fresh token was refused: mark the portal so its jobs stop."""


class OAuthRefresher:
    """Refreshes a token pair with Authlib at the OAuth server derived from ``server_endpoint``."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        allowed_hosts: list[str],
        http: requests.Session,
        *,
        timeout: float = 30.0,
        allow_insecure_loopback: bool = False,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.allowed_hosts = [h.lower() for h in allowed_hosts]
        self.http = http
        self.timeout = timeout
        self.allow_insecure_loopback = allow_insecure_loopback

    def token_url(self, server_endpoint: str) -> str:
        """``https://oauth.bitrix.info/rest/`` → ``https://oauth.bitrix.info/oauth/token/``.

        The host must be allow-listed: the request carries ``client_secret``.
        """
        base = validate_endpoint(server_endpoint, self.allow_insecure_loopback)
        parts = urlsplit(base)
        if not self._allowed(parts.hostname or "", parts.port):
            raise errors.ConfigError(f"OAuth host {parts.hostname} is not in the allow-list")
        path = parts.path.removesuffix("rest/")
        return f"{parts.scheme}://{parts.netloc}{path}oauth/token/"

    def _allowed(self, host: str, port: int | None) -> bool:
        with_port = f"{host}:{port}" if port else host
        return with_port.lower() in self.allowed_hosts

    def refresh(self, server_endpoint: str, refresh_token: str) -> dict[str, Any]:
        """Exchange ``refresh_token`` for a new pair; raises typed errors, never echoes secrets."""
        url = self.token_url(server_endpoint)
        client = _AuthlibClient(
            self.http,
            client_id=self.client_id,
            client_secret=self._client_secret,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
        )
        try:
            token = client.refresh_token(url, refresh_token=refresh_token, timeout=self.timeout)
        except OAuth2Error as exc:
            raise errors.from_envelope(
                {"error": exc.error or "", "error_description": exc.description or ""}, None
            ) from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            raise errors.ServerError("OAUTH_HTTP_ERROR", "OAuth server failed", status) from None
        except requests.RequestException as exc:
            raise errors.TransportError(type(exc).__name__, sent=True) from None
        return dict(token)


class _AuthlibClient(OAuth2Client):  # type: ignore[misc]
    """Authlib's OAuth 2 client on our shared ``requests.Session`` (pooled, with a timeout)."""

    client_auth_class = OAuth2ClientAuth
    SESSION_REQUEST_PARAMS = ["timeout", "allow_redirects"]


class PortalTokens:
    """Tokens of one portal row, refreshed single-flight across threads and processes.

    Needs an app context (tokens are decrypted with the app's keys).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        portal_id: int,
        refresher: OAuthRefresher,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.portal_id = portal_id
        self.refresher = refresher
        self.clock = clock
        self._cached: Token | None = None

    def current(self) -> Token:
        """The stored token (read once per client, then kept until it changes)."""
        if self._cached is None:
            with self.sessions() as session:
                self._cached = _token_of(_usable(_portal(session, self.portal_id)))
        return self._cached

    def refresh(self, stale: Token) -> Token:
        """Refresh unless another thread or process already replaced ``stale``."""
        with self._locked() as (session, portal):
            _usable(portal)
            if portal.access_token and portal.access_token != stale.access_token:
                self._cached = _token_of(portal)
                return self._cached  # someone else refreshed while we waited for the lock
            self._cached = self._exchange(session, portal)
            return self._cached

    def moved(self, token: Token, client_endpoint: str) -> Token:
        """Store the portal's new REST base URL after a 302 from its old host."""
        with self._locked() as (session, portal):
            portal.client_endpoint = client_endpoint
            portal.domain = urlsplit(client_endpoint).netloc
            session.commit()
            self._cached = _token_of(portal)
            return self._cached

    def needs_reauth(self) -> None:
        """Mark the portal NEEDS_REAUTH (a fresh token was refused with ``NO_AUTH_FOUND``)."""
        with self._locked() as (session, portal):
            self._mark(session, portal, PortalStatus.NEEDS_REAUTH)
        self._cached = None

    def _exchange(self, session: Session, portal: Portal) -> Token:
        if not portal.refresh_token:
            self._mark(session, portal, PortalStatus.NEEDS_REAUTH)
            raise errors.NeedsReauth("NO_REFRESH_TOKEN", "no refresh token stored")
        try:
            data = self.refresher.refresh(portal.server_endpoint, portal.refresh_token)
        except (errors.NeedsReauth, errors.InvalidToken) as exc:
            self._mark(session, portal, PortalStatus.NEEDS_REAUTH)
            raise errors.NeedsReauth(exc.code, exc.description, exc.status) from None
        except errors.PortalSuspended:
            self._mark(session, portal, PortalStatus.SUSPENDED)
            raise
        portal.access_token = str(data["access_token"])
        portal.refresh_token = str(data.get("refresh_token") or portal.refresh_token)
        portal.expires_at = _expiry(data, self.clock())
        if data.get("user_id") not in (None, ""):
            portal.token_user_id = int(data["user_id"])
        session.commit()  # persisted before anyone uses it
        log.info("refreshed tokens of portal %s", portal.member_id)
        return _token_of(portal)

    def _mark(self, session: Session, portal: Portal, status: PortalStatus) -> None:
        portal.status = status
        session.commit()
        log.warning("portal %s is now %s", portal.member_id, status.value)

    @contextmanager
    def _locked(self) -> Iterator[tuple[Session, Portal]]:
        with self.sessions() as session:
            if session.get_bind().dialect.name == "sqlite":
                # pysqlite begins lazily; take the write lock before reading the row.
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                portal = _portal(session, self.portal_id)
            else:
                portal = session.execute(
                    select(Portal).where(Portal.id == self.portal_id).with_for_update()
                ).scalar_one()
            try:
                yield session, portal
            finally:
                session.rollback()  # no-op after a commit; releases the lock on errors


def _portal(session: Session, portal_id: int) -> Portal:
    portal = session.get(Portal, portal_id)
    if portal is None:
        raise errors.PortalDeleted("PORTAL_NOT_FOUND", f"portal {portal_id} is not stored")
    return portal


def _usable(portal: Portal) -> Portal:
    """Refuse portals whose jobs must stop instead of calling (and failing) again."""
    if portal.status == PortalStatus.NEEDS_REAUTH:
        raise errors.NeedsReauth(
            "NEEDS_REAUTH", f"portal {portal.member_id} needs re-authorisation"
        )
    if portal.status == PortalStatus.SUSPENDED:
        raise errors.PortalSuspended("PAYMENT_REQUIRED", f"portal {portal.member_id} is suspended")
    if portal.status == PortalStatus.UNINSTALLED:
        raise errors.PortalDeleted("UNINSTALLED", f"portal {portal.member_id} uninstalled the app")
    if not portal.access_token:
        raise errors.NeedsReauth("NO_TOKEN", f"portal {portal.member_id} has no access token")
    return portal


def _token_of(portal: Portal) -> Token:
    expires = portal.expires_at
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)  # SQLite drops the zone
    return Token(
        access_token=portal.access_token or "",
        client_endpoint=portal.client_endpoint,
        expires_at=expires.timestamp() if expires else None,
    )


def _expiry(data: dict[str, Any], now: float) -> datetime:
    if data.get("expires"):
        return datetime.fromtimestamp(int(data["expires"]), UTC)
    return datetime.fromtimestamp(now + int(data.get("expires_in") or 3600), UTC)
