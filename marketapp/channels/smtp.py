"""E-mail through the portal's own SMTP server (STARTTLS and login when configured)."""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from marketapp.models import PortalSettings


class SmtpError(Exception):
    """The server refused the message or could not be reached."""


def send_email(
    settings: PortalSettings,
    *,
    key: str,
    to: str,
    subject: str,
    html: str,
    text: str,
    sender: str = "",
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> str:
    """Send one message; return its Message-ID (derived from the ledger ``key``)."""
    message = EmailMessage()
    try:
        message["From"] = sender or settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
    except ValueError as exc:  # a line break in a header value (header injection)
        raise SmtpError(f"SMTP: invalid header: {exc}") from None
    # Only atext may stand left of the "@" of a msg-id; ":" and anything else become ".".
    idstring = re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+", ".", key).strip(".")
    message["Message-ID"] = make_msgid(idstring=idstring or None, domain="smart-scenarios")
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=tls or ssl.create_default_context())
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise SmtpError(f"SMTP: {type(exc).__name__}: {_safe(exc)}") from exc
    return str(message["Message-ID"])


def _safe(exc: Exception) -> str:
    # SMTP replies can echo the login; keep the reply code and a short text only.
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error
        text = text.decode(errors="replace") if isinstance(text, bytes) else text
        return f"{exc.smtp_code} {text[:120]}"
    return str(exc)[:120]
