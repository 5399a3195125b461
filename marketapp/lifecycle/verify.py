"""Server-side checks of tokens that arrive from outside (installer POST, events, placements).

* An install (installer POST, ``ONAPPINSTALL``, ``ONAPPUPDATE``) is trusted only after its access
  token is shown, by ``app.info`` on an allow-listed OAuth server, to belong to our ``client_id``
  and to the claimed ``member_id`` and domain. The portal's REST endpoint is taken from that
  answer, never from the request.
* A placement's ``AUTH_ID`` is checked with ``profile`` against the portal endpoint we stored for
  that ``member_id`` (never the request's ``DOMAIN``); answers are cached briefly.
* ``ONAPPUNINSTALL`` carries no token: it is true only if the stored tokens were revoked.
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app

from marketapp.bitrix.errors import BitrixError, ConfigError, NeedsReauth
from marketapp.bitrix.http import shared_session, validate_endpoint
from marketapp.bitrix.oauth import OAuthRefresher
from marketapp.config import get_config
from marketapp.models import Portal, PortalStatus

PROFILE_CACHE_SECONDS = 60


class VerificationError(Exception):
    """The token or its claims could not be confirmed; the message is safe to log."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        #: The server's error code, when it answered one (``NO_AUTH_FOUND``, ``expired_token``).
        self.code = code


@dataclass(frozen=True)
class PortalUser:
    user_id: int
    is_admin: bool


@dataclass(frozen=True)
class ConfirmedInstall:
    """What the OAuth server confirmed about a token: its owner and the portal it belongs to."""

    user_id: int
    member_id: str
    domain: str
    client_endpoint: str


class TokenState(enum.Enum):
    LIVE = "live"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


def oauth_base(server_endpoint: str) -> str:
    """``https://oauth.bitrix.info/rest/`` → ``https://oauth.bitrix.info/`` if allow-listed."""
    parts = urlsplit(server_endpoint)
    config = get_config()
    host = (parts.netloc or "").lower()
    if host not in config.oauth_host_list:
        raise VerificationError(f"OAuth server {host!r} is not allow-listed")
    if parts.scheme != "https" and not (config.allow_insecure_loopback and _loopback(host)):
        raise VerificationError("OAuth server must use https")
    return f"{parts.scheme}://{parts.netloc}/"


def verify_install(
    server_endpoint: str, access_token: str, member_id: str, domain: str
) -> ConfirmedInstall:
    """Confirm an install token with the OAuth server; return what it confirmed."""
    result = _app_info(server_endpoint, access_token, member_id)
    install = result.get("install") or {}
    confirmed_domain = str(install.get("domain", ""))
    if confirmed_domain.lower() != domain.lower():
        raise VerificationError("portal domain does not match the token")
    return ConfirmedInstall(
        user_id=int(result.get("user_id") or 0),
        member_id=member_id,
        domain=confirmed_domain,
        client_endpoint=_confirmed_endpoint(install, confirmed_domain),
    )


def _app_info(server_endpoint: str, access_token: str, member_id: str) -> dict[str, Any]:
    """``app.info`` on the allow-listed OAuth server: the token is ours and of ``member_id``."""
    info = _get_json(f"{oauth_base(server_endpoint)}rest/app.info", {"auth": access_token})
    result: dict[str, Any] = info.get("result", info)
    install = result.get("install") or {}
    if str(result.get("client_id", "")) != get_config().client_id:
        raise VerificationError("token belongs to another application")
    if install.get("member_id") != member_id:
        raise VerificationError("token belongs to another portal")
    return result


def refresh_pair(server_endpoint: str, refresh_token: str) -> dict[str, Any]:
    """A new token pair from the allow-listed OAuth server (it answers only for our secret)."""
    config = get_config()
    refresher = OAuthRefresher(
        config.client_id,
        config.client_secret.get_secret_value(),
        config.oauth_host_list,
        shared_session(),
        timeout=config.http_timeout,
        allow_insecure_loopback=config.allow_insecure_loopback,
    )
    try:
        return refresher.refresh(server_endpoint, refresh_token)
    except BitrixError as exc:
        raise VerificationError(f"refresh refused ({exc.code})", str(exc.code)) from exc


def _confirmed_endpoint(install: dict[str, Any], domain: str) -> str:
    """The portal REST base from the OAuth server's answer; it must be on the confirmed domain."""
    endpoint = str(install.get("client_endpoint") or f"https://{domain}/rest/")
    if urlsplit(endpoint).netloc.lower() != domain.lower():
        raise VerificationError("the portal endpoint is not on the portal's domain")
    try:
        return validate_endpoint(endpoint, get_config().allow_insecure_loopback)
    except ConfigError as exc:
        raise VerificationError(str(exc)) from exc


def stored_tokens_state(portal: Portal) -> TokenState:
    """Whether the portal's stored tokens still work (an uninstall revokes them).

    ``app.info`` on the OAuth server with the access token; an expired one is refreshed (stored,
    as refresh tokens rotate): ``invalid_grant`` means revoked, a new pair means live. Anything
    else (network, 5xx, a parked portal whose tokens were already dead) proves nothing.
    """
    if portal.status is not PortalStatus.ACTIVE or not portal.access_token:
        return TokenState.UNKNOWN
    expires = portal.expires_at
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)  # SQLite drops the zone
    if expires is None or expires > datetime.now(UTC):
        try:
            _app_info(portal.server_endpoint, portal.access_token, portal.member_id)
            return TokenState.LIVE
        except VerificationError as exc:
            if exc.code.lower() in {"no_auth_found", "invalid_token"}:
                return TokenState.REVOKED
            if exc.code.lower() != "expired_token":
                return TokenState.UNKNOWN
    return _refreshed_state(portal)


def _refreshed_state(portal: Portal) -> TokenState:
    from marketapp.bitrix.client import client_for

    tokens = client_for(portal).tokens
    try:
        tokens.refresh(tokens.current())
    except NeedsReauth as exc:
        return (
            TokenState.REVOKED if str(exc.code).lower() == "invalid_grant" else TokenState.UNKNOWN
        )
    except BitrixError:
        return TokenState.UNKNOWN
    return TokenState.LIVE


_cache_lock = threading.Lock()


def _profile_cache() -> dict[str, tuple[float, PortalUser]]:
    cache: dict[str, tuple[float, PortalUser]] = current_app.extensions.setdefault(
        "marketapp.profile_cache", {}
    )
    return cache


def portal_user(client_endpoint: str, auth_id: str) -> PortalUser:
    """Who owns ``auth_id`` on the portal at ``client_endpoint`` (cached for a minute)."""
    key = hashlib.sha256(f"{client_endpoint}\0{auth_id}".encode()).hexdigest()
    now = time.monotonic()
    cache = _profile_cache()
    with _cache_lock:
        hit = cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
    data = _get_json(f"{client_endpoint}profile", {"auth": auth_id})
    result = data.get("result") or {}
    if not result.get("ID"):
        raise VerificationError("the portal did not recognise the user token")
    user = PortalUser(int(result["ID"]), bool(result.get("ADMIN")))
    with _cache_lock:
        for stale in [k for k, (exp, _) in cache.items() if exp <= now]:
            del cache[stale]
        cache[key] = (now + PROFILE_CACHE_SECONDS, user)
    return user


def _get_json(url: str, params: dict[str, str]) -> dict[str, Any]:
    timeout = get_config().http_timeout
    try:
        resp = shared_session().post(url, data=params, timeout=timeout)
    except requests.RequestException as exc:
        raise VerificationError(f"cannot reach {urlsplit(url).netloc}") from exc
    try:
        data = resp.json()
    except ValueError as exc:
        raise VerificationError(f"unexpected answer from {urlsplit(url).netloc}") from exc
    if resp.status_code != 200 or not isinstance(data, dict) or "error" in data:
        code = str(data.get("error") if isinstance(data, dict) else resp.status_code)
        raise VerificationError(f"token rejected ({code})", code)
    return data


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in {"localhost", "[::1]"} or name.startswith("127.")
