"""send_email against a real SMTP server on loopback (aiosmtpd): STARTTLS, AUTH, refusals."""

from __future__ import annotations

import email
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from marketapp.channels.smtp import SmtpError, send_email
from marketapp.devportal.tls import make_certificate
from marketapp.models import ChannelSettings
from tests.conftest import free_port

HOST = "127.0.0.1"
USERNAME = "robot@shop.example"
PASSWORD = "s3cret-Pa55word!"
WRONG_PASSWORD = "wr0ng-Pa55word?"
REFUSED = "blocked@client.example"
KEY = "run:42:email:0"


@pytest.fixture(autouse=True)
def _private_smtp_allowed(_clean_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test servers are on loopback: the operator's development setting allows that."""
    monkeypatch.setenv("MARKETAPP_ALLOW_PRIVATE_SMTP", "true")


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path
    pem: str

    def server(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client(self) -> ssl.SSLContext:
        """Trusts the test certificate only, with hostname checks (and strict X.509 checks)."""
        context = ssl.create_default_context(cadata=self.pem)
        context.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
        return context


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1 and localhost (the emulator's generator)."""
    cert, key = make_certificate(tmp_path_factory.mktemp("tls"), [HOST])
    return Tls(cert, key, cert.read_text())


@dataclass
class Received:
    envelope: Envelope
    tls: bool
    login: bytes | None

    @property
    def message(self) -> EmailMessage:
        assert isinstance(self.envelope.content, bytes)
        parsed = email.message_from_bytes(self.envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Handler:
    """Keeps what arrived; refuses one recipient."""

    received: list[Received] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == REFUSED:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(Received(envelope, session.ssl is not None, login))
        return "250 2.0.0 Message accepted"

    def authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(data, LoginPassword) and data == (USERNAME.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False, auth_data=data)


@dataclass
class Server:
    port: int
    handler: Handler

    @property
    def received(self) -> list[Received]:
        return self.handler.received


def run_server(**options: Any) -> Iterator[Server]:
    handler = Handler()
    if options.pop("auth", False):
        options["authenticator"] = handler.authenticator
    controller = Controller(handler, hostname=HOST, port=free_port(), **options)
    controller.start()
    try:
        yield Server(controller.port, handler)
    finally:
        controller.stop()


@pytest.fixture(params=["PLAIN", "LOGIN"])
def secure_server(request: pytest.FixtureRequest, tls: Tls) -> Iterator[Server]:
    """STARTTLS required before anything, AUTH (one mechanism) required and only under TLS."""
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[request.param]
    yield from run_server(
        tls_context=tls.server(),
        require_starttls=True,
        auth=True,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=[other],
    )


@pytest.fixture
def plain_server() -> Iterator[Server]:
    """No STARTTLS, no AUTH."""
    yield from run_server()


def settings_for(port: int, **values: Any) -> ChannelSettings:
    settings = ChannelSettings(
        email_channel="smtp",
        smtp_host=HOST,
        smtp_port=port,
        smtp_username=USERNAME,
        smtp_starttls=True,
        smtp_from="Shop <robot@shop.example>",
    )
    settings.smtp_password = PASSWORD
    for name, value in values.items():
        setattr(settings, name, value)
    return settings


def plain_settings(port: int) -> ChannelSettings:
    return settings_for(port, smtp_username="", smtp_password=None, smtp_starttls=False)


def send(settings: ChannelSettings, **kwargs: Any) -> str:
    """send_email with a typical message; ``tls`` and any field can be overridden."""
    values: dict[str, Any] = {
        "key": KEY,
        "to": "client@client.example",
        "subject": "Ваш заказ №42 готов",
        "html": "<p>Здравствуйте, <b>Анна</b>!</p>",
        "text": "Здравствуйте, Анна!",
        "timeout": 5.0,
        "tls": None,
        **kwargs,
    }
    return send_email(settings, **values)


def assert_no_password(exc: BaseException) -> None:
    for text in (str(exc), repr(exc)):
        assert PASSWORD not in text
        assert WRONG_PASSWORD not in text


MSGID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@smart-scenarios>")


def test_delivers_over_starttls_with_auth(secure_server: Server, tls: Tls) -> None:
    message_id = send(settings_for(secure_server.port), tls=tls.client())

    assert len(secure_server.received) == 1
    got = secure_server.received[0]
    assert got.tls is True
    assert got.login == USERNAME.encode()
    assert len(secure_server.handler.mechanisms) == 1  # the one mechanism offered, first try
    assert got.envelope.mail_from == "robot@shop.example"
    assert got.envelope.rcpt_tos == ["client@client.example"]

    message = got.message
    assert message["From"] == "Shop <robot@shop.example>"
    assert message["To"] == "client@client.example"
    assert message["Subject"] == "Ваш заказ №42 готов"
    assert message["Message-ID"].strip() == message_id  # long ids are folded onto a new line
    assert MSGID.fullmatch(message_id)
    assert ".run.42.email.0@smart-scenarios>" in message_id
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() == "Здравствуйте, Анна!"
    assert html.get_content().strip() == "<p>Здравствуйте, <b>Анна</b>!</p>"


def test_message_ids_differ_per_key(plain_server: Server) -> None:
    first = send(plain_settings(plain_server.port), key="run:1:email:0")
    second = send(plain_settings(plain_server.port), key="run:1:email:1")
    assert first != second
    assert first.endswith(".run.1.email.0@smart-scenarios>")
    assert second.endswith(".run.1.email.1@smart-scenarios>")


@pytest.mark.parametrize("key", ["run 7/<x>@y;z", "::", "ключ:1", ""])
def test_message_id_is_well_formed_for_any_key(plain_server: Server, key: str) -> None:
    message_id = send(plain_settings(plain_server.port), key=key)
    assert MSGID.fullmatch(message_id)
    assert plain_server.received[0].message["Message-ID"].strip() == message_id


def test_sender_argument_overrides_configured_from(plain_server: Server) -> None:
    send(plain_settings(plain_server.port), sender="Sales <sales@shop.example>")
    got = plain_server.received[0]
    assert got.envelope.mail_from == "sales@shop.example"
    assert got.message["From"] == "Sales <sales@shop.example>"


def test_text_only_message(plain_server: Server) -> None:
    send(plain_settings(plain_server.port), html="", text="Just text.")
    message = plain_server.received[0].message
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Just text."


def test_plain_server_without_starttls_or_auth(plain_server: Server) -> None:
    message_id = send(plain_settings(plain_server.port))
    got = plain_server.received[0]
    assert (got.tls, got.login) == (False, None)
    assert got.message["Message-ID"].strip() == message_id
    assert got.message["Subject"] == "Ваш заказ №42 готов"


def test_wrong_password_is_refused_without_echoing_it(secure_server: Server, tls: Tls) -> None:
    settings = settings_for(secure_server.port)
    settings.smtp_password = WRONG_PASSWORD
    with pytest.raises(SmtpError) as info:
        send(settings, tls=tls.client())
    assert str(info.value).startswith("SMTP: SMTPAuthenticationError: 535")
    assert_no_password(info.value)
    assert secure_server.received == []


def test_missing_login_is_refused(secure_server: Server, tls: Tls) -> None:
    settings = settings_for(secure_server.port, smtp_username="", smtp_password=None)
    with pytest.raises(SmtpError, match="530"):
        send(settings, tls=tls.client())
    assert secure_server.received == []


def test_no_starttls_against_a_server_requiring_it(secure_server: Server) -> None:
    # Without TLS the server offers no AUTH, so the login is refused before the password.
    with pytest.raises(SmtpError, match="SMTPNotSupportedError") as info:
        send(settings_for(secure_server.port, smtp_starttls=False))
    assert_no_password(info.value)
    # And without a login the server insists on STARTTLS first.
    with pytest.raises(SmtpError, match="530"):
        send(settings_for(secure_server.port, smtp_starttls=False, smtp_username=""))
    assert secure_server.handler.mechanisms == []
    assert secure_server.received == []


def test_untrusted_certificate_is_refused(secure_server: Server) -> None:
    # No ``tls`` argument: the default context does not trust the self-signed certificate.
    with pytest.raises(SmtpError, match="SSLCertVerificationError") as info:
        send(settings_for(secure_server.port))
    assert_no_password(info.value)
    assert secure_server.received == []


def test_certificate_checked_against_host_name(secure_server: Server, tls: Tls) -> None:
    send(settings_for(secure_server.port, smtp_host="localhost"), tls=tls.client())
    assert [r.tls for r in secure_server.received] == [True]


def test_starttls_requested_but_not_offered(plain_server: Server, tls: Tls) -> None:
    with pytest.raises(SmtpError, match="SMTPNotSupportedError"):
        send(settings_for(plain_server.port, smtp_username=""), tls=tls.client())
    assert plain_server.received == []


def test_login_configured_but_server_offers_no_auth(plain_server: Server) -> None:
    with pytest.raises(SmtpError, match="SMTPNotSupportedError") as info:
        send(settings_for(plain_server.port, smtp_starttls=False))
    assert_no_password(info.value)
    assert plain_server.received == []


def test_refused_recipient(plain_server: Server) -> None:
    with pytest.raises(SmtpError, match="SMTPRecipientsRefused"):
        send(plain_settings(plain_server.port), to=REFUSED)
    assert plain_server.received == []


def test_unreachable_port_names_no_internal_detail() -> None:
    port = free_port()
    with pytest.raises(SmtpError) as info:
        send(settings_for(port))
    assert str(info.value) == "SMTP: could not connect to the SMTP server"
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert_no_password(info.value)


@pytest.mark.parametrize("host", [HOST, "localhost", "[::1]", "::ffff:127.0.0.1", "0.0.0.0"])  # noqa: S104
def test_private_host_is_refused_before_connecting(
    plain_server: Server, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.delenv("MARKETAPP_ALLOW_PRIVATE_SMTP")
    connects: list[Any] = []
    monkeypatch.setattr("socket.create_connection", lambda *a, **k: connects.append(a))
    with pytest.raises(SmtpError, match="^SMTP: could not connect to the SMTP server$"):
        send(settings_for(plain_server.port, smtp_host=host, smtp_starttls=False))
    assert connects == [] and plain_server.received == []


def test_connects_to_the_checked_address_but_verifies_the_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, by the check; the certificate is still checked for the name."""
    cert, key = make_certificate(tmp_path, [])  # valid for "localhost" only, not 127.0.0.1
    pem = Tls(cert, key, cert.read_text())
    servers = run_server(tls_context=pem.server(), require_starttls=True)
    server = next(servers)
    lookups: list[str] = []
    real = socket.getaddrinfo

    def counted(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return [i for i in real(host, *args, **kwargs) if i[0] == socket.AF_INET]

    monkeypatch.setattr(socket, "getaddrinfo", counted)
    try:
        plain = {"smtp_username": "", "smtp_starttls": True}
        send(settings_for(server.port, smtp_host="localhost", **plain), tls=pem.client())
        assert [r.tls for r in server.received] == [True]
        assert [h for h in lookups if h != HOST] == ["localhost"]  # then connects to the IP
        with pytest.raises(SmtpError, match="SSLCertVerificationError"):
            send(settings_for(server.port, smtp_host=HOST, **plain), tls=pem.client())
    finally:
        servers.close()


@pytest.mark.parametrize(
    "header",
    [
        {"subject": "Hello\r\nBcc: victim@elsewhere.example"},
        {"to": "client@client.example\nBcc: victim@elsewhere.example"},
        {"sender": "robot@shop.example\r\nX-Injected: yes"},
    ],
)
def test_header_injection_is_an_smtp_error(plain_server: Server, header: dict[str, str]) -> None:
    with pytest.raises(SmtpError, match="invalid header"):
        send(plain_settings(plain_server.port), **header)
    assert plain_server.received == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),
        *(
            (a, False)
            for a in (
                "127.0.0.1",
                "10.0.0.1",
                "172.16.0.1",
                "192.168.1.1",
                "169.254.169.254",
                "100.64.0.1",
                "0.0.0.0",  # noqa: S104
                "224.0.0.1",
                "239.255.255.250",
                "240.0.0.1",
                "255.255.255.255",
                "192.0.0.1",
                "198.18.0.1",
                "::1",
                "::",
                "fe80::1",
                "fc00::1",
                "ff02::1",
                "::ffff:127.0.0.1",
                "::ffff:10.0.0.1",
                "2002:7f00:1::1",
                "64:ff9b::7f00:1",
                "2001::1",
            )
        ),
    ],
)
def test_only_global_addresses_are_public(address: str, public: bool) -> None:
    import ipaddress

    from marketapp.channels.network import is_public

    assert is_public(ipaddress.ip_address(address)) is public
