"""E-mail through the portal's own SMTP server (STARTTLS and login when configured).

The host is resolved and checked (:mod:`marketapp.channels.network`) right before connecting,
and the connection goes to an address that passed the check; STARTTLS still verifies the
certificate against the configured host name.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from marketapp.channels.network import BlockedHost, operator_config, resolve
from marketapp.models import ChannelSettings

log = logging.getLogger(__name__)
UNREACHABLE = "SMTP: could not connect to the SMTP server"


class SmtpError(Exception):
    """The server refused the message or could not be reached."""


class _PinnedSMTP(smtplib.SMTP):
    """Connects to ``address`` while speaking to ``host`` (EHLO, STARTTLS server name)."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        self._address = address
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self._address, port), timeout, self.source_address)


def _connect(channels: ChannelSettings, timeout: float) -> smtplib.SMTP:
    """A connection to the first approved address of the host; no internal detail escapes."""
    host, port = channels.smtp_host.strip().strip("[]"), channels.smtp_port
    try:
        addresses = resolve(host, port, allow_private=operator_config().allow_private_smtp)
    except BlockedHost as exc:
        log.debug("SMTP host refused: %s", exc)
        raise SmtpError(UNREACHABLE) from None
    for address in addresses:
        try:
            return _PinnedSMTP(host, address, port, timeout)
        except (smtplib.SMTPException, OSError) as exc:
            log.debug("SMTP connection failed: %s", type(exc).__name__)
    raise SmtpError(UNREACHABLE)


def send_email(
    channels: ChannelSettings,
    *,
    key: str,
    to: str,
    subject: str,
    html: str,
    text: str,
    sender: str = "",
    unsubscribe: str = "",
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> str:
    """Send one message; return its Message-ID (derived from the ledger ``key``).

    ``unsubscribe`` (an https URL) adds ``List-Unsubscribe`` with RFC 8058 one-click: the mail
    client POSTs ``List-Unsubscribe=One-Click`` to that URL.
    """
    message = EmailMessage()
    try:
        message["From"] = sender or channels.smtp_from
        message["To"] = to
        message["Subject"] = subject
    except ValueError as exc:  # a line break in a header value (header injection)
        raise SmtpError(f"SMTP: invalid header: {exc}") from None
    # Only atext may stand left of the "@" of a msg-id; ":" and anything else become ".".
    idstring = re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+", ".", key).strip(".")
    message["Message-ID"] = make_msgid(idstring=idstring or None, domain="smart-scenarios")
    if unsubscribe:
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    connection = _connect(channels, timeout)
    try:
        with connection as smtp:
            if channels.smtp_starttls:
                smtp.starttls(context=tls or ssl.create_default_context())
            if channels.smtp_username:
                smtp.login(channels.smtp_username, channels.smtp_password or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, ssl.SSLError) as exc:
        raise SmtpError(f"SMTP: {type(exc).__name__}: {_safe(exc)}") from exc
    except OSError as exc:  # reset, timeout: errno texts say nothing useful to the admin
        log.debug("SMTP connection lost: %s", type(exc).__name__)
        raise SmtpError("SMTP: the connection to the SMTP server was lost") from exc
    return str(message["Message-ID"])


def _safe(exc: Exception) -> str:
    # SMTP replies can echo the login; keep the reply code and a short text only.
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error
        text = text.decode(errors="replace") if isinstance(text, bytes) else text
        return f"{exc.smtp_code} {text[:120]}"
    return str(exc)[:120]
