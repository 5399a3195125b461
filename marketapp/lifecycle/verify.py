"""Server-side checks of tokens that arrive from outside (installer POST, events, placements).

* An install is trusted only after its access token is shown, by ``app.info`` on an allow-listed
  OAuth server, to belong to our ``client_id`` and to the claimed ``member_id`` and domain.
* A placement's ``AUTH_ID`` is checked with ``profile`` against the portal endpoint we stored for
  that ``member_id`` (never the request's ``DOMAIN``); answers are cached briefly.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app

from marketapp.bitrix.http import shared_session
from marketapp.settings import get_settings

PROFILE_CACHE_SECONDS = 60


class VerificationError(Exception):
    """The token or its claims could not be confirmed; the message is safe to log."""


@dataclass(frozen=True)
class PortalUser:
    user_id: int
    is_admin: bool


def oauth_base(server_endpoint: str) -> str:
    """``https://oauth.bitrix.info/rest/`` → ``https://oauth.bitrix.info/`` if allow-listed."""
    parts = urlsplit(server_endpoint)
    settings = get_settings()
    host = (parts.netloc or "").lower()
    if host not in settings.oauth_host_list:
        raise VerificationError(f"OAuth server {host!r} is not allow-listed")
    if parts.scheme != "https" and not (settings.allow_insecure_loopback and _loopback(host)):
        raise VerificationError("OAuth server must use https")
    return f"{parts.scheme}://{parts.netloc}/"


def verify_install(server_endpoint: str, access_token: str, member_id: str, domain: str) -> int:
    """Confirm an install token with the OAuth server; return the token owner's user id."""
    info = _get_json(f"{oauth_base(server_endpoint)}rest/app.info", {"auth": access_token})
    result = info.get("result", info)
    install = result.get("install") or {}
    if str(result.get("client_id", "")) != get_settings().client_id:
        raise VerificationError("token belongs to another application")
    if install.get("member_id") != member_id:
        raise VerificationError("token belongs to another portal")
    if str(install.get("domain", "")).lower() != domain.lower():
        raise VerificationError("portal domain does not match the token")
    return int(result.get("user_id") or 0)


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
    timeout = get_settings().http_timeout
    try:
        resp = shared_session().post(url, data=params, timeout=timeout)
    except requests.RequestException as exc:
        raise VerificationError(f"cannot reach {urlsplit(url).netloc}") from exc
    try:
        data = resp.json()
    except ValueError as exc:
        raise VerificationError(f"unexpected answer from {urlsplit(url).netloc}") from exc
    if resp.status_code != 200 or not isinstance(data, dict) or "error" in data:
        code = data.get("error") if isinstance(data, dict) else resp.status_code
        raise VerificationError(f"token rejected ({code})")
    return data


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in {"localhost", "[::1]"} or name.startswith("127.")
