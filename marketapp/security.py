"""Trust primitives: token comparison, signed iframe sessions, framing policy, rejection log.

Placement pages live in a cross-site iframe where third-party cookies are unreliable, so after a
verified placement POST the page gets a short-lived signed session token that it sends back in the
``X-Session-Token`` header (fetch) or a ``_session`` form field. Because the token is never a
cookie, a forged cross-site request cannot carry it: requiring it on every state-changing request
is the CSRF defence.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, request
from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from marketapp.errors import AppError

security_log = logging.getLogger("marketapp.security")

SESSION_HEADER = "X-Session-Token"
SESSION_FIELD = "_session"
SESSION_MAX_AGE = 3600  # the lifetime of the Bitrix24 token it was minted from


def tokens_match(stored: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing value never matches."""
    if not stored or not given:
        return False
    return hmac.compare_digest(stored.encode(), given.encode())


def security_event(message: str, reason: str, *, member_id: str | None, **extra: Any) -> None:
    """Log a refused or ignored call on the security logger (no secrets; jobs use it too)."""
    security_log.warning(message, extra={"reason": reason, "member_id": member_id, **extra})


def reject(reason: str, *, member_id: str | None = None, status: int = 401) -> AppError:
    """Log a refused call (without secrets) and return the error to raise."""
    security_event(
        "rejected call",
        reason,
        member_id=member_id,
        path=request.path,
        remote_addr=request.remote_addr,
    )
    message = _("This request could not be verified.")  # the reason is for the log only
    return AppError(message, status=status, code="unauthorized" if status == 401 else "forbidden")


@dataclass(frozen=True)
class PortalSession:
    """Who is using a placement page: signed into the page, checked on every request."""

    portal_id: int
    member_id: str
    user_id: int
    is_admin: bool
    language: str
    #: The portal's ``session_epoch`` when minted; an uninstall moves it on, ending old sessions.
    epoch: int = 0


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="portal-session")


def issue_session(session: PortalSession) -> str:
    return _serializer().dumps(asdict(session))


def read_session(token: str | None) -> PortalSession:
    """Decode the session token sent by the page; raise 401 when absent, forged or expired."""
    if not token:
        raise reject("missing session token")
    try:
        data: dict[str, Any] = _serializer().loads(token, max_age=SESSION_MAX_AGE)
        return PortalSession(**data)
    except SignatureExpired as exc:
        raise AppError(
            _("Your session has expired: reopen the application."), status=401, code="expired"
        ) from exc
    except (BadSignature, TypeError) as exc:
        raise reject("bad session token") from exc


def session_from_request() -> PortalSession:
    token = request.headers.get(SESSION_HEADER) or request.form.get(SESSION_FIELD)
    return read_session(token)


def portal_origin(domain: str) -> str:
    """The origin that may frame our pages for a portal domain (``host[:port]``)."""
    host = urlsplit(f"//{domain}").hostname or ""
    scheme = "http" if host in {"127.0.0.1", "localhost"} or host.startswith("127.") else "https"
    return f"{scheme}://{domain}"


_HOST_PORT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$")


def allow_framing_by(response: Response, domain: str | None) -> Response:
    """Let only the portal frame the page (no X-Frame-Options; CSP frame-ancestors).

    A domain that is not a plain ``host[:port]`` (it may come from an unverified request) frames
    nothing, and never reaches the header as anything but a host.
    """
    ancestors = portal_origin(domain) if domain and _HOST_PORT.match(domain) else "'none'"
    response.headers["Content-Security-Policy"] = f"frame-ancestors {ancestors}"
    response.headers.pop("X-Frame-Options", None)
    return response
