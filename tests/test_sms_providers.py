"""SMS providers against ``responses``: Twilio- and SMS.ru-shaped requests, replies and errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
import requests
import responses

from marketapp.channels.sms import (
    OutboxProvider,
    SmsError,
    SmsReceipt,
    SmsRuProvider,
    TwilioProvider,
    provider_for,
)
from marketapp.models import ChannelSettings

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "tw-auth-token-5e3a9c0d7b"
API_KEY = "SK" + "fedcba9876543210" * 2
MESSAGE_SID = "SM" + "a1b2c3d4e5f6a7b8" * 2
SERVICE_SID = "MG" + "00112233445566778899" + "aabbccddeeff"
API_ID = "A1B2C3D4-E5F6-7A8B-9C0D-E1F2A3B4C5D6"
SECRETS = (AUTH_TOKEN, API_KEY, API_ID)

TW_BASE = "https://api.twilio.test"
TW_MESSAGES = f"{TW_BASE}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
TW_MESSAGE = f"{TW_BASE}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{MESSAGE_SID}.json"
RU_BASE = "https://smsru.test"
RU_SEND = f"{RU_BASE}/sms/send"
RU_STATUS = f"{RU_BASE}/sms/status"
FORM = "application/x-www-form-urlencoded"
TIMEOUT = 7.5

PHONE = "+79161234567"
TEXT = "Привет! Ваш заказ №42 готов."


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def twilio(base_url: str = TW_BASE, **creds: str) -> TwilioProvider:
    base = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
    return TwilioProvider({**base, **creds}, requests.Session(), TIMEOUT, base_url)


def smsru(**creds: str) -> SmsRuProvider:
    return SmsRuProvider({"api_id": API_ID, **creds}, requests.Session(), TIMEOUT, RU_BASE)


@pytest.fixture
def operator_gateways(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator points both providers at the test endpoints (``MARKETAPP_SMS_GATEWAYS``)."""
    monkeypatch.setenv("MARKETAPP_SMS_GATEWAYS", f"twilio={TW_BASE}/,smsru={RU_BASE}")


def form_of(call: Any) -> list[tuple[str, str]]:
    """The request's form fields, in order, after checking it is really form-encoded."""
    request = call.request
    assert request.headers["Content-Type"] == FORM
    body = request.body.decode("ascii") if isinstance(request.body, bytes) else request.body
    assert isinstance(body, str)
    return parse_qsl(body, keep_blank_values=True, strict_parsing=True)


def timeout_of(call: Any) -> Any:
    return call.request.req_kwargs["timeout"]  # recorded by responses


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def assert_no_secrets(exc: BaseException) -> None:
    for text in (str(exc), repr(exc)):
        for secret in SECRETS:
            assert secret not in text


def twilio_message(status: str = "queued", **extra: Any) -> dict[str, Any]:
    """A Messages resource as Twilio returns it (the fields we rely on, and some others)."""
    return {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": TEXT,
        "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
        "date_sent": None,
        "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": "+15557122661",
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": MESSAGE_SID,
        "status": status,
        "to": PHONE,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{MESSAGE_SID}.json",
        **extra,
    }


def twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


# --- Twilio-compatible ---------------------------------------------------------------------


def test_twilio_send_posts_form_with_basic_auth(rsps: responses.RequestsMock) -> None:
    rsps.post(TW_MESSAGES, json=twilio_message("queued"), status=201)

    receipt = twilio(**{"from": "+15557122661"}).send("run:1:sms:0", PHONE, TEXT, "")

    assert receipt == SmsReceipt(message_id=MESSAGE_SID, status="queued")
    assert len(rsps.calls) == 1
    call = rsps.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == TW_MESSAGES
    assert call.request.headers["Authorization"] == basic(ACCOUNT_SID, AUTH_TOKEN)
    assert form_of(call) == [("To", PHONE), ("Body", TEXT), ("From", "+15557122661")]
    # Cyrillic travels as percent-encoded UTF-8, "+" of the number as %2B.
    raw = call.request.body
    raw = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
    assert "To=%2B79161234567" in raw
    assert f"Body={quote(TEXT, safe='').replace('%20', '+')}" in raw
    assert timeout_of(call) == TIMEOUT


def test_twilio_send_sender_argument_wins_over_configured_from(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TW_MESSAGES, json=twilio_message(), status=201)
    twilio(**{"from": "+15557122661"}).send("k", PHONE, "hi", "ACME")
    assert dict(form_of(rsps.calls[0]))["From"] == "ACME"


def test_twilio_send_with_messaging_service_and_status_callback(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TW_MESSAGES, json=twilio_message("accepted"), status=201)
    provider = twilio(
        messaging_service_sid=SERVICE_SID,
        status_callback="https://app.example/sms/twilio/status",
        **{"from": "+15557122661"},
    )

    receipt = provider.send("k", PHONE, "hi", "ignored-sender")

    assert receipt == SmsReceipt(MESSAGE_SID, "queued")  # accepted = still queued for us
    assert form_of(rsps.calls[0]) == [
        ("To", PHONE),
        ("Body", "hi"),
        ("MessagingServiceSid", SERVICE_SID),
        ("StatusCallback", "https://app.example/sms/twilio/status"),
    ]


def test_twilio_api_key_authenticates_but_url_names_the_account(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TW_MESSAGES, json=twilio_message(), status=201)
    twilio(api_key=API_KEY).send("k", PHONE, "hi", "+15557122661")
    call = rsps.calls[0]
    assert call.request.url == TW_MESSAGES
    assert call.request.headers["Authorization"] == basic(API_KEY, AUTH_TOKEN)


def test_twilio_default_base_url_and_trailing_slash(rsps: responses.RequestsMock) -> None:
    default = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    rsps.post(default, json=twilio_message(), status=201)
    rsps.post(TW_MESSAGES, json=twilio_message(), status=201)
    creds = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
    TwilioProvider(creds, requests.Session(), TIMEOUT).send("k", PHONE, "hi", "+1555")
    twilio(base_url=TW_BASE + "/").send("k", PHONE, "hi", "+1555")
    assert [c.request.url for c in rsps.calls] == [default, TW_MESSAGES]


@pytest.mark.parametrize(
    ("http_status", "body", "retryable", "expected"),
    [
        (
            400,
            twilio_error(21211, "The 'To' number +1555 is not a valid phone number.", 400),
            False,
            "Twilio error 21211: The 'To' number +1555 is not a valid phone number.",
        ),
        (
            400,
            twilio_error(21610, "Attempt to send to unsubscribed recipient", 400),
            False,
            "Twilio error 21610: Attempt to send to unsubscribed recipient",
        ),
        (
            401,
            {**twilio_error(20003, "Authenticate", 401), "detail": "AuthToken was incorrect."},
            False,
            "Twilio error 20003: Authenticate",
        ),
        (
            404,
            twilio_error(20404, "The requested resource was not found", 404),
            False,
            "Twilio error 20404: The requested resource was not found",
        ),
        (429, twilio_error(20429, "Too Many Requests", 429), True, "Twilio error 20429"),
        (500, twilio_error(20500, "Internal Server Error", 500), True, "Twilio error 20500"),
        (503, twilio_error(20503, "Service Unavailable", 503), True, "Twilio error 20503"),
    ],
)
def test_twilio_send_error_replies(
    rsps: responses.RequestsMock,
    http_status: int,
    body: dict[str, Any],
    retryable: bool,
    expected: str,
) -> None:
    rsps.post(TW_MESSAGES, json=body, status=http_status)
    with pytest.raises(SmsError) as info:
        twilio(api_key=API_KEY).send("k", PHONE, "hi", "+15557122661")
    assert str(info.value).startswith(expected)
    assert info.value.retryable is retryable
    assert info.value.unknown is False
    assert_no_secrets(info.value)


@pytest.mark.parametrize(("http_status", "retryable"), [(502, True), (504, True), (403, False)])
def test_twilio_error_without_json_body(
    rsps: responses.RequestsMock, http_status: int, retryable: bool
) -> None:
    rsps.post(TW_MESSAGES, body="<html>Bad Gateway</html>", status=http_status)
    with pytest.raises(SmsError) as info:
        twilio().send("k", PHONE, "hi", "+15557122661")
    assert str(info.value) == f"Twilio error {http_status}: "
    assert info.value.retryable is retryable
    assert info.value.unknown is False


@pytest.mark.parametrize("body", ["", "not json", json.dumps({"status": "queued"}), "[]"])
def test_twilio_accepted_without_sid_is_an_unknown_outcome(
    rsps: responses.RequestsMock, body: str
) -> None:
    rsps.post(TW_MESSAGES, body=body, status=201, content_type="application/json")
    with pytest.raises(SmsError) as info:
        twilio().send("k", PHONE, "hi", "+15557122661")
    # It may have been sent: not retryable, and reconciled as an unknown outcome.
    assert (info.value.retryable, info.value.unknown) == (False, True)


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError("Connection aborted: RemoteDisconnected"),
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ChunkedEncodingError("connection broken"),
    ],
)
def test_twilio_dropped_connection_is_not_retryable(
    rsps: responses.RequestsMock, failure: Exception
) -> None:
    rsps.post(TW_MESSAGES, body=failure)
    with pytest.raises(SmsError) as info:
        twilio(api_key=API_KEY).send("k", PHONE, "hi", "+15557122661")
    assert (info.value.retryable, info.value.unknown) == (False, True)
    assert str(info.value) == f"gateway unreachable: {type(failure).__name__}"
    assert_no_secrets(info.value)
    assert ACCOUNT_SID not in str(info.value)


@pytest.mark.parametrize(
    ("twilio_status", "ours"),
    [
        ("accepted", "queued"),
        ("scheduled", "queued"),
        ("queued", "queued"),
        ("sending", "queued"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "delivered"),
        ("undelivered", "undelivered"),
        ("failed", "failed"),
        ("canceled", "failed"),
        ("something-new", "queued"),
    ],
)
def test_twilio_status_fetch_maps_statuses(
    rsps: responses.RequestsMock, twilio_status: str, ours: str
) -> None:
    rsps.get(TW_MESSAGE, json=twilio_message(twilio_status))

    assert twilio().status(MESSAGE_SID) == ours

    call = rsps.calls[0]
    assert call.request.method == "GET"
    assert call.request.url == TW_MESSAGE
    assert call.request.headers["Authorization"] == basic(ACCOUNT_SID, AUTH_TOKEN)
    assert call.request.body is None
    assert timeout_of(call) == TIMEOUT


@pytest.mark.parametrize("twilio_status", ["sent", "delivered", "undelivered", "failed"])
def test_twilio_send_reports_the_returned_status(
    rsps: responses.RequestsMock, twilio_status: str
) -> None:
    rsps.post(TW_MESSAGES, json=twilio_message(twilio_status), status=201)
    assert twilio().send("k", PHONE, "hi", "+1555").status == twilio_status


@pytest.mark.parametrize(
    ("http_status", "body", "retryable"),
    [
        (404, twilio_error(20404, "The requested resource was not found", 404), False),
        (401, twilio_error(20003, "Authenticate", 401), False),
        (429, twilio_error(20429, "Too Many Requests", 429), True),
        (503, twilio_error(20503, "Service Unavailable", 503), True),
    ],
)
def test_twilio_status_fetch_errors(
    rsps: responses.RequestsMock, http_status: int, body: dict[str, Any], retryable: bool
) -> None:
    rsps.get(TW_MESSAGE, json=body, status=http_status)
    with pytest.raises(SmsError) as info:
        twilio().status(MESSAGE_SID)
    assert str(info.value).startswith(f"Twilio error {body['code']}: ")
    assert info.value.retryable is retryable
    assert_no_secrets(info.value)


# --- SMS.ru-compatible ---------------------------------------------------------------------


def smsru_sent(status_code: int = 100, sms_id: str = "000000-10000000") -> dict[str, Any]:
    return {
        "status": "OK",
        "status_code": 100,
        "sms": {"79161234567": {"status": "OK", "status_code": status_code, "sms_id": sms_id}},
        "balance": 4122.56,
    }


def test_smsru_send_posts_api_id_digits_and_json_flag(rsps: responses.RequestsMock) -> None:
    rsps.post(RU_SEND, json=smsru_sent())

    receipt = smsru().send("run:1:sms:0", PHONE, TEXT, "")

    assert receipt == SmsReceipt(message_id="000000-10000000", status="queued")
    call = rsps.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == RU_SEND
    assert "Authorization" not in call.request.headers
    assert form_of(call) == [
        ("api_id", API_ID),
        ("to", "79161234567"),
        ("msg", TEXT),
        ("json", "1"),
    ]
    assert timeout_of(call) == TIMEOUT


@pytest.mark.parametrize(
    ("configured", "argument", "expected"),
    [("ACME", "", "ACME"), ("ACME", "Shop", "Shop"), ("", "Shop", "Shop")],
)
def test_smsru_send_sender_name(
    rsps: responses.RequestsMock, configured: str, argument: str, expected: str
) -> None:
    rsps.post(RU_SEND, json=smsru_sent())
    smsru(**{"from": configured}).send("k", PHONE, "hi", argument)
    assert form_of(rsps.calls[0]) == [
        ("api_id", API_ID),
        ("to", "79161234567"),
        ("msg", "hi"),
        ("json", "1"),
        ("from", expected),
    ]


def test_smsru_default_base_url(rsps: responses.RequestsMock) -> None:
    rsps.post("https://sms.ru/sms/send", json=smsru_sent())
    SmsRuProvider({"api_id": API_ID}, requests.Session(), TIMEOUT).send("k", PHONE, "hi", "")
    assert rsps.calls[0].request.url == "https://sms.ru/sms/send"


def test_smsru_per_number_error(rsps: responses.RequestsMock) -> None:
    rsps.post(
        RU_SEND,
        json={
            "status": "OK",
            "status_code": 100,
            "sms": {
                "79161234567": {
                    "status": "ERROR",
                    "status_code": 207,
                    "status_text": "На этот номер нельзя отправлять сообщения",
                }
            },
        },
    )
    with pytest.raises(SmsError) as info:
        smsru().send("k", PHONE, "hi", "")
    assert str(info.value) == "SMS.ru error 207: На этот номер нельзя отправлять сообщения"
    assert (info.value.retryable, info.value.unknown) == (False, False)
    assert_no_secrets(info.value)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (200, "Неправильный api_id"),
        (201, "Не хватает средств на лицевом счету"),
        (204, "Имя отправителя не согласовано с администрацией"),
    ],
)
def test_smsru_request_level_error(rsps: responses.RequestsMock, code: int, text: str) -> None:
    rsps.post(RU_SEND, json={"status": "ERROR", "status_code": code, "status_text": text})
    with pytest.raises(SmsError) as info:
        smsru().send("k", PHONE, "hi", "")
    assert str(info.value) == f"SMS.ru error {code}: {text}"
    assert (info.value.retryable, info.value.unknown) == (False, False)
    assert_no_secrets(info.value)


@pytest.mark.parametrize("http_status", [500, 502, 503, 504])
def test_smsru_server_errors_are_retryable(rsps: responses.RequestsMock, http_status: int) -> None:
    rsps.post(RU_SEND, body="<html>oops</html>", status=http_status)
    with pytest.raises(SmsError) as info:
        smsru().send("k", PHONE, "hi", "")
    assert str(info.value) == f"SMS.ru answered HTTP {http_status}"
    assert (info.value.retryable, info.value.unknown) == (True, False)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        json.dumps({"status": "OK", "status_code": 100}),
        json.dumps({"status": "OK", "status_code": 100, "sms": {}}),
        json.dumps({"status": "OK", "status_code": 100, "sms": {"79161234567": {"status": "OK"}}}),
    ],
)
def test_smsru_unreadable_success_is_an_unknown_outcome(
    rsps: responses.RequestsMock, body: str
) -> None:
    rsps.post(RU_SEND, body=body, content_type="application/json")
    with pytest.raises(SmsError) as info:
        smsru().send("k", PHONE, "hi", "")
    assert (info.value.retryable, info.value.unknown) == (False, True)


@pytest.mark.parametrize("http_status", [400, 403, 404])
def test_smsru_client_errors_without_json_are_refusals(
    rsps: responses.RequestsMock, http_status: int
) -> None:
    rsps.post(RU_SEND, body="<html>Forbidden</html>", status=http_status)
    with pytest.raises(SmsError) as info:
        smsru().send("k", PHONE, "hi", "")
    assert (info.value.retryable, info.value.unknown) == (False, False)


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError("Connection aborted: RemoteDisconnected"),
        requests.exceptions.ReadTimeout("read timed out"),
    ],
)
def test_smsru_dropped_connection_is_not_retryable(
    rsps: responses.RequestsMock, failure: Exception
) -> None:
    rsps.post(RU_SEND, body=failure)
    with pytest.raises(SmsError) as info:
        smsru().send("k", PHONE, "hi", "")
    assert (info.value.retryable, info.value.unknown) == (False, True)
    assert str(info.value) == f"gateway unreachable: {type(failure).__name__}"
    assert_no_secrets(info.value)


@pytest.mark.parametrize(
    ("code", "text", "ours"),
    [
        (100, "Сообщение находится в нашей очереди", "queued"),
        (101, "Сообщение передается оператору", "queued"),
        (102, "Сообщение отправлено (в пути)", "sent"),
        (103, "Сообщение доставлено", "delivered"),
        (104, "Не может быть доставлено: время жизни истекло", "undelivered"),
        (105, "Не может быть доставлено: удалено оператором", "undelivered"),
        (106, "Не может быть доставлено: сбой в телефоне", "undelivered"),
        (107, "Не может быть доставлено: неизвестная причина", "undelivered"),
        (108, "Не может быть доставлено: отклонено", "failed"),
        (110, "Сообщение прочитано", "delivered"),
        (150, "Не может быть доставлено: не найден маршрут на данный номер", "failed"),
    ],
)
def test_smsru_status_maps_codes(
    rsps: responses.RequestsMock, code: int, text: str, ours: str
) -> None:
    rsps.post(
        RU_STATUS,
        json={
            "status": "OK",
            "status_code": 100,
            "sms": {"000000-10000000": {"status": "OK", "status_code": code, "status_text": text}},
            "balance": 4122.56,
        },
    )

    assert smsru().status("000000-10000000") == ours

    call = rsps.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == RU_STATUS
    assert form_of(call) == [("api_id", API_ID), ("sms_id", "000000-10000000"), ("json", "1")]


def test_smsru_send_status_code_in_receipt(rsps: responses.RequestsMock) -> None:
    rsps.post(RU_SEND, json=smsru_sent(status_code=103, sms_id="201737-1000007"))
    assert smsru().send("k", PHONE, "hi", "") == SmsReceipt("201737-1000007", "delivered")


def test_smsru_status_errors(rsps: responses.RequestsMock) -> None:
    rsps.post(RU_STATUS, json={"status": "ERROR", "status_code": 200, "status_text": "Bad id"})
    rsps.post(RU_STATUS, status=503)
    with pytest.raises(SmsError) as info:
        smsru().status("000000-10000000")
    assert (str(info.value), info.value.retryable) == ("SMS.ru error 200: Bad id", False)
    with pytest.raises(SmsError) as info:
        smsru().status("000000-10000000")
    assert info.value.retryable is True


# --- Outbox and provider_for ---------------------------------------------------------------


def settings_with(provider: str | None, creds: Any = None) -> ChannelSettings:
    settings = ChannelSettings(sms_provider=provider)
    if creds is not None:
        settings.sms_credentials = creds if isinstance(creds, str) else json.dumps(creds)
    return settings


def test_outbox_provider_accepts_everything_locally() -> None:
    provider = OutboxProvider()
    assert provider.send("run:1:sms:0", PHONE, "hi", "") == SmsReceipt(
        "outbox-run:1:sms:0", "delivered"
    )
    assert provider.status("outbox-run:1:sms:0") == "delivered"


@pytest.mark.parametrize("name", [None, "", "outbox"])
def test_provider_for_defaults_to_outbox(name: str | None) -> None:
    provider = provider_for(settings_with(name), requests.Session(), TIMEOUT)
    assert isinstance(provider, OutboxProvider)
    assert provider.name == "outbox"


def test_provider_for_twilio_uses_credentials_session_and_timeout(
    rsps: responses.RequestsMock, operator_gateways: None
) -> None:
    rsps.post(TW_MESSAGES, json=twilio_message(), status=201)
    session = requests.Session()
    creds = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "api_key": API_KEY,
        "from": "+15557122661",
        "status_callback": "https://app.example/cb",
    }
    provider = provider_for(settings_with("twilio", creds), session, 3.0)

    assert isinstance(provider, TwilioProvider)
    assert provider.name == "twilio"
    assert provider.http is session
    assert provider.send("k", PHONE, "hi", "").message_id == MESSAGE_SID
    call = rsps.calls[0]
    assert call.request.headers["Authorization"] == basic(API_KEY, AUTH_TOKEN)
    assert dict(form_of(call)) == {
        "To": PHONE,
        "Body": "hi",
        "From": "+15557122661",
        "StatusCallback": "https://app.example/cb",
    }
    assert timeout_of(call) == 3.0


def test_provider_for_smsru(rsps: responses.RequestsMock, operator_gateways: None) -> None:
    rsps.post(RU_SEND, json=smsru_sent())
    creds = {"api_id": API_ID, "from": "ACME"}
    provider = provider_for(settings_with("smsru", creds), requests.Session(), TIMEOUT)
    assert isinstance(provider, SmsRuProvider)
    assert provider.name == "smsru"
    provider.send("k", PHONE, "hi", "")
    assert dict(form_of(rsps.calls[0]))["from"] == "ACME"


@pytest.mark.parametrize(
    ("name", "creds"),
    [
        ("twilio", {"account_sid": ACCOUNT_SID, "api_key": API_KEY}),
        ("twilio", {"auth_token": AUTH_TOKEN}),
        ("twilio", None),
        ("smsru", {"from": "ACME"}),
        ("smsru", ""),
        ("twilio", '{"account_sid": "' + ACCOUNT_SID + '", "auth_token": "' + AUTH_TOKEN),
        ("smsru", '["' + API_ID + '"]'),
    ],
)
def test_provider_for_misconfigured_credentials(name: str, creds: Any) -> None:
    with pytest.raises(SmsError) as info:
        provider_for(settings_with(name, creds), requests.Session(), TIMEOUT)
    assert (info.value.retryable, info.value.unknown) == (False, False)
    assert name in str(info.value)
    assert_no_secrets(info.value)
    assert_no_secrets(info.value.__cause__ or info.value)


def test_provider_for_unknown_provider_is_not_the_outbox() -> None:
    # Falling back to the outbox would mark messages "delivered" that were never sent.
    with pytest.raises(SmsError, match="unknown SMS provider 'twillio'"):
        provider_for(settings_with("twillio", {"api_id": API_ID}), requests.Session(), TIMEOUT)


def test_gateway_endpoint_is_never_taken_from_the_credentials(
    rsps: responses.RequestsMock,
) -> None:
    """An admin-chosen ``base_url`` (stored by an older version) is ignored: the official one."""
    rsps.post(
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        json=twilio_message(),
        status=201,
    )
    rsps.post("https://sms.ru/sms/send", json=smsru_sent())
    for name, creds in [
        ("twilio", {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}),
        ("smsru", {"api_id": API_ID}),
    ]:
        stored = {**creds, "base_url": "http://127.0.0.1:9/internal-service"}
        provider_for(settings_with(name, stored), requests.Session(), TIMEOUT).send(
            "k", PHONE, "hi", "+1555"
        )
    assert len(rsps.calls) == 2


@pytest.mark.parametrize(
    "value",
    [
        "twilio=http://api.twilio.test",
        "twilio=https://user:pw@api.twilio.test",
        "nexmo=https://rest.nexmo.test",
        "twilio",
        "smsru=https://",
    ],
)
def test_operator_gateways_are_https_urls_of_known_providers(value: str) -> None:
    from pydantic import ValidationError

    from marketapp.config import Config

    with pytest.raises(ValidationError, match="sms_gateways"):
        Config(sms_gateways=value)


def test_account_sid_cannot_leave_its_path_segment(rsps: responses.RequestsMock) -> None:
    sid = "AC1/../../evil?x=#"
    rsps.post(
        f"{TW_BASE}/2010-04-01/Accounts/{quote(sid, safe='')}/Messages.json",
        json=twilio_message(),
        status=201,
    )
    twilio(account_sid=sid).send("k", PHONE, "hi", "+1555")
    assert rsps.calls[0].request.url.startswith(f"{TW_BASE}/2010-04-01/Accounts/AC1%2F..%2F")
