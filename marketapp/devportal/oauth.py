"""The OAuth server (§2, §9.8-9.9): ``/oauth/token/`` and the OAuth flavour of ``app.info``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Request, Response

from marketapp.devportal.errors import RestError
from marketapp.devportal.rest import json_response, log_request, request_params
from marketapp.devportal.state import Emulator, Portal, Token

AUTH_CODE_LIFETIME = 30.0


def _oauth_error(error: str, description: str, status: int) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def token_endpoint(emu: Emulator, req: Request) -> Response:
    """``refresh_token`` and ``authorization_code`` grants (GET; POST tolerated)."""
    params = request_params(req)
    grant = str(params.get("grant_type", ""))
    app = emu.apps.get(str(params.get("client_id", "")))
    if app is None or app.client_secret != str(params.get("client_secret", "")):
        return _oauth_error("invalid_client", "Invalid client credentials", 401)
    with emu.lock:
        if grant == "refresh_token":
            old = emu.refresh_tokens.get(str(params.get("refresh_token", "")))
        elif grant == "authorization_code":
            code = emu.auth_codes.pop(str(params.get("code", "")), None)
            old = code[0] if code and code[1] > emu.clock.now() else None
        else:
            return _oauth_error("invalid_request", "Unsupported grant_type", 400)
        if (
            old is None
            or old.revoked  # uninstall revokes every token: the grant is invalid (RFC 6749 5.2)
            or old.client_id != app.client_id
            or old.refresh_expires_at <= emu.clock.now()
        ):
            return _oauth_error("invalid_grant", "Invalid authorization code or refresh token", 400)
        portal = emu.portal(old.member_id)
        install = portal.installs.get(app.client_id)
        if install is None:
            return _oauth_error("invalid_client", "Application is not installed", 401)
        if install.payment_required:
            return _oauth_error("PAYMENT_REQUIRED", "Payment required", 402)
        # Rotation: the spent refresh token is dead at once (no grace period).
        emu.refresh_tokens.pop(old.refresh_token, None)
        token = emu.issue_token(portal, app.client_id, old.user_id)
        return json_response(token_body(emu, portal, token))


def token_body(emu: Emulator, portal: Portal, token: Token) -> dict[str, Any]:
    """The §2.3 token response; ``domain`` is the OAuth server, not the portal."""
    install = portal.installs[token.client_id]
    return {
        "access_token": token.access_token,
        "client_endpoint": emu.client_endpoint(portal),
        "domain": emu.server_host,
        "expires": int(token.expires_at),
        "expires_in": emu.config.token_lifetime,
        "member_id": portal.member_id,
        "refresh_token": token.refresh_token,
        "scope": ",".join(install.app.scopes),
        "server_endpoint": emu.server_endpoint,
        "status": install.status,
        "user_id": token.user_id,
    }


def app_info(emu: Emulator, req: Request) -> Response:
    """``{oauth}/rest/app.info?auth=TOKEN``: what the token belongs to.

    Logged with ``server="oauth"`` and an empty ``member_id`` (``/requests?member_id=`` lists a
    portal's own REST traffic only).
    """
    params = request_params(req)
    with emu.lock:
        token = emu.tokens.get(str(params.get("auth", "")))
        log_request(
            emu,
            {"time": emu.clock.now(), "member_id": "", "server": "oauth", "method": "app.info"},
        )
        try:
            if token is None or token.revoked:
                raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
            if token.expires_at <= emu.clock.now():
                raise RestError("expired_token", "The access token provided has expired.", 401)
            portal = emu.portal(token.member_id)
            install = portal.installs[token.client_id]
        except (RestError, KeyError) as exc:
            err = (
                exc
                if isinstance(exc, RestError)
                else RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
            )
            return json_response(err.body(), err.status)
        scope = ",".join(install.app.scopes)
        result = {
            "client_id": install.app.client_id,
            "scope": scope,
            "expires": datetime.fromtimestamp(token.expires_at, UTC).isoformat(timespec="seconds"),
            "user_id": token.user_id,
            "install": {
                "installed": install.installed,
                "version": install.version,
                "status": install.status,
                "scope": scope,
                "domain": emu.portal_domain(portal),
                "client_endpoint": emu.client_endpoint(portal),
                "member_id": portal.member_id,
                "member_type": "PORTAL",
                "uri": f"{emu.config.scheme}://{emu.portal_domain(portal)}",
            },
        }
    now = emu.clock.now()
    return json_response({"result": result, "time": {"start": now, "finish": now, "duration": 0}})
