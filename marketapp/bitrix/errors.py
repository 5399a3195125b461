"""Typed Bitrix24 errors and their classification from an HTTP status and an error envelope.

Bitrix24 answers ``{"error": CODE, "error_description": TEXT}``. ``CODE`` may be a string, a
number (``bizproc.event.send`` answers ``{"error": 404, ...}``) or empty (legacy CRM methods
answer ``{"error": "", "error_description": "Not found"}``), so empty codes are classified by
their description. Messages carry only the code, the description and the status: never a token.
"""

from __future__ import annotations

from typing import Any

from marketapp.logging import redact


class BitrixError(Exception):
    """A failed Bitrix24 call: ``code`` as sent (string or number), ``description``, ``status``."""

    #: Whether repeating the same request may succeed without any change on our side.
    retryable = False

    def __init__(self, code: str | int, description: str = "", status: int | None = None):
        self.code = code
        self.description = description
        self.status = status
        super().__init__(self._message())

    def _message(self) -> str:
        code = repr(self.code) if self.code == "" else str(self.code)
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{code}{status}: {self.description}" if self.description else f"{code}{status}"


class TransportError(BitrixError):
    """The request did not get an HTTP answer (connection refused, reset, timeout)."""

    retryable = True

    def __init__(self, description: str, *, sent: bool):
        #: False when the request surely never reached the server (safe to repeat any call).
        self.sent = sent
        super().__init__("TRANSPORT_ERROR", description)


class ServerError(BitrixError):
    """5xx: the server failed; repeatable for idempotent calls."""

    retryable = True


class QueryLimitExceeded(ServerError):
    """503 ``QUERY_LIMIT_EXCEEDED``: the portal's leaky bucket overflowed; nothing ran."""


class OverloadLimit(BitrixError):
    """503 ``OVERLOAD_LIMIT``: blocked by Bitrix24 support; stop and alert, do not retry."""


class OperationTimeLimit(BitrixError):
    """429 ``OPERATION_TIME_LIMIT``: this method's time budget is spent until ``reset_at``."""

    def __init__(
        self,
        code: str | int,
        description: str = "",
        status: int | None = None,
        reset_at: float | None = None,
    ):
        #: Unix time when the method may be called again (from ``time.operating_reset_at``).
        self.reset_at = reset_at
        super().__init__(code, description, status)


class BadRequest(BitrixError):
    """400: validation or business error; the same request will fail again."""


class NotFound(BadRequest):
    """The entity does not exist (often ``{"error": "", "error_description": "Not found"}``)."""


class AuthError(BitrixError):
    """401: the access token was not accepted."""


class ExpiredToken(AuthError):
    """401 ``expired_token``: refresh and retry once."""


class InvalidToken(AuthError):
    """401 ``NO_AUTH_FOUND`` / ``invalid_token``: the token is unknown to the portal."""


class AccessDenied(BitrixError):
    """403: the user, plan or app may not call this method; no retry."""


class InsufficientScope(AccessDenied):
    """403 ``insufficient_scope``: the app card lacks a scope (configuration error)."""


class MethodNotFound(BitrixError):
    """404 ``ERROR_METHOD_NOT_FOUND``: unknown method (a bug on our side)."""


class PortalUnavailable(BitrixError):
    """The portal cannot be called until something outside the job changes; stop, do not loop.

    Job code catches this one class to park all work of the portal.
    """


class NeedsReauth(PortalUnavailable):
    """Refresh failed (``invalid_grant``/``NO_AUTH_FOUND``): wait for a new install or page POST."""


class PortalSuspended(PortalUnavailable):
    """``PAYMENT_REQUIRED``: the app's paid period is over."""


class PortalDeleted(PortalUnavailable):
    """``PORTAL_DELETED``: the portal was closed or deleted."""


class OAuthError(BitrixError):
    """The OAuth server refused a refresh for a reason other than those above."""


class ConfigError(BitrixError):
    """Our configuration forbids the call (endpoint not https, OAuth host not allowed, ...)."""

    def __init__(self, description: str):
        super().__init__("CONFIG_ERROR", description)


class RateLimitTimeout(BitrixError):
    """The shared limiter could not grant a slot within the allowed wait."""

    def __init__(self, description: str):
        super().__init__("RATE_LIMIT_TIMEOUT", description)


_BY_CODE: dict[str, type[BitrixError]] = {
    "expired_token": ExpiredToken,
    "no_auth_found": InvalidToken,
    "invalid_token": InvalidToken,
    "invalid_grant": NeedsReauth,
    "payment_required": PortalSuspended,
    "portal_deleted": PortalDeleted,
    "insufficient_scope": InsufficientScope,
    "invalid_scope": InsufficientScope,
    "access_denied": AccessDenied,
    "invalid_credentials": AccessDenied,
    "user_access_error": AccessDenied,
    "wrong_auth_type": AccessDenied,
    "query_limit_exceeded": QueryLimitExceeded,
    "overload_limit": OverloadLimit,
    "operation_time_limit": OperationTimeLimit,
    "error_method_not_found": MethodNotFound,
    "error_manifest_is_not_available": MethodNotFound,
    "internal_server_error": ServerError,
    "error_unexpected_answer": ServerError,
    "invalid_client": OAuthError,
    "invalid_request": BadRequest,
}

# Substrings of descriptions that carry the meaning when ``error`` is empty.
_BY_DESCRIPTION: tuple[tuple[str, type[BitrixError]], ...] = (
    ("not found", NotFound),
    ("access denied", AccessDenied),
    ("too many requests", QueryLimitExceeded),
    ("operation time limit", OperationTimeLimit),
    ("expired", ExpiredToken),
)

_BY_STATUS: tuple[tuple[int, type[BitrixError]], ...] = (
    (401, AuthError),
    (403, AccessDenied),
    (404, MethodNotFound),
    (429, OperationTimeLimit),
    (503, QueryLimitExceeded),
)


def error_class(code: str | int, description: str, status: int | None) -> type[BitrixError]:
    """The exception class for an error code (any case), falling back to description, status."""
    known = _BY_CODE.get(str(code).lower()) if code != "" else None
    if known is not None:
        return known
    if code == "" or isinstance(code, int) or str(code).isdigit():
        text = description.lower()
        for needle, cls in _BY_DESCRIPTION:
            if needle in text:
                return cls
    for known_status, cls in _BY_STATUS:
        if status == known_status and code in ("", None):
            return cls
    if status is not None and status >= 500:
        return ServerError
    if status == 401:
        return AuthError
    if status == 403:
        return AccessDenied
    return BadRequest


def from_envelope(
    envelope: dict[str, Any], status: int | None, reset_at: float | None = None
) -> BitrixError:
    """Build the typed error for a Bitrix24 (or OAuth server) error envelope."""
    code = envelope.get("error", "")
    if not isinstance(code, str | int):
        code = str(code)
    description = str(envelope.get("error_description") or "")
    cls = error_class(code, description, status)
    if issubclass(cls, OperationTimeLimit):
        return cls(code, description, status, reset_at=reset_at)
    return cls(code, description, status)


def from_status(status: int, text: str) -> BitrixError:
    """Build the typed error for an answer that is not a JSON error envelope (a proxy page)."""
    # A gateway page may echo the request; keep a short, secret-free hint only.
    hint = str(redact(text.strip().splitlines()[0][:120])) if text.strip() else ""
    return from_envelope({"error": "", "error_description": hint}, status)
