"""SMS gateways behind one interface.

* ``outbox`` (default, development): stores the message; nothing leaves the machine.
* ``twilio``: a Twilio-compatible REST API (``POST /2010-04-01/Accounts/{sid}/Messages.json``).
* ``smsru``: an SMS.ru-compatible API (``POST /sms/send`` and ``/sms/status`` with ``json=1``).

A gateway's endpoint is the provider's official HTTPS URL, or the one the operator sets in
``MARKETAPP_SMS_GATEWAYS``; a portal admin chooses the provider and credentials only, so the
app never sends credentials to an address of the admin's choosing.

Every provider gets the ledger key of the send, so the outbox can be reconciled exactly; HTTP
gateways cannot be asked "did you get key K?", so an unknown outcome there is never resent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import requests

from marketapp.channels.network import operator_config
from marketapp.models import ChannelSettings

ENDPOINTS = {"twilio": "https://api.twilio.com", "smsru": "https://sms.ru"}

# Provider statuses mapped to ours: queued, sent, delivered, undelivered, failed.
_TWILIO_STATUS = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}
_SMSRU_STATUS = {
    100: "queued",
    101: "queued",
    102: "sent",
    103: "delivered",
    104: "undelivered",
    105: "undelivered",
    106: "undelivered",
    107: "undelivered",
    108: "failed",
    110: "delivered",  # read (Viber)
    150: "failed",
}


class SmsError(Exception):
    """The gateway refused the message (``retryable``: trying later may work), or the outcome
    is ``unknown`` (the request may have reached the gateway)."""

    def __init__(self, message: str, *, retryable: bool = False, unknown: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.unknown = unknown


@dataclass(frozen=True)
class SmsReceipt:
    message_id: str
    status: str


class SmsProvider(Protocol):
    name: str

    def send(self, key: str, phone: str, text: str, sender: str) -> SmsReceipt: ...

    def status(self, message_id: str) -> str: ...

    def find(self, key: str) -> SmsReceipt | None:
        """The message sent under ``key``, if the gateway can tell (else ``None``: unknown)."""
        ...


class OutboxProvider:
    """Development provider: accepting the message is all it does (the row is the outbox)."""

    name = "outbox"

    def send(self, key: str, phone: str, text: str, sender: str) -> SmsReceipt:
        return SmsReceipt(message_id=f"outbox-{key}", status="delivered")

    def find(self, key: str) -> SmsReceipt | None:
        # The outbox row written before the attempt is the message: it was sent.
        return self.send(key, "", "", "")

    def status(self, message_id: str) -> str:
        return "delivered"


class TwilioProvider:
    name = "twilio"

    def __init__(
        self,
        creds: dict[str, str],
        http: requests.Session,
        timeout: float,
        base: str = ENDPOINTS["twilio"],
    ):
        self.base = base.rstrip("/")
        self.sid = creds["account_sid"]
        self.auth = (creds.get("api_key") or self.sid, creds["auth_token"])
        self.sender = creds.get("from", "")
        self.service = creds.get("messaging_service_sid", "")
        self.callback = creds.get("status_callback", "")
        self.http, self.timeout = http, timeout

    def send(self, key: str, phone: str, text: str, sender: str) -> SmsReceipt:
        form = {"To": phone, "Body": text}
        if self.service:
            form["MessagingServiceSid"] = self.service
        else:
            form["From"] = sender or self.sender
        if self.callback:
            form["StatusCallback"] = self.callback
        body = self._request("POST", "Messages.json", data=form)
        if not body.get("sid"):
            # Accepted (2xx) but unreadable: the message may be on its way; never resend.
            raise SmsError("Twilio accepted the request without a message sid", unknown=True)
        return SmsReceipt(str(body["sid"]), _TWILIO_STATUS.get(str(body.get("status")), "queued"))

    def status(self, message_id: str) -> str:
        body = self._request("GET", f"Messages/{quote(message_id, safe='')}.json")
        return _TWILIO_STATUS.get(str(body.get("status")), "queued")

    def find(self, key: str) -> SmsReceipt | None:
        return None  # Twilio has no lookup by our key: an unknown outcome stays unknown

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.base}/2010-04-01/Accounts/{quote(self.sid, safe='')}/{path}"
        resp = _http(self.http, method, url, auth=self.auth, timeout=self.timeout, **kwargs)
        body = _json(resp)
        if resp.status_code >= 400:
            # {"code": 21211, "message": "...", "more_info": "...", "status": 400}
            message = (
                f"Twilio error {body.get('code', resp.status_code)}: {body.get('message', '')}"
            )
            raise SmsError(message, retryable=resp.status_code == 429 or resp.status_code >= 500)
        return body


class SmsRuProvider:
    name = "smsru"

    def __init__(
        self,
        creds: dict[str, str],
        http: requests.Session,
        timeout: float,
        base: str = ENDPOINTS["smsru"],
    ):
        self.base = base.rstrip("/")
        self.api_id = creds["api_id"]
        self.sender = creds.get("from", "")
        self.http, self.timeout = http, timeout

    def send(self, key: str, phone: str, text: str, sender: str) -> SmsReceipt:
        form = {"api_id": self.api_id, "to": phone.lstrip("+"), "msg": text, "json": "1"}
        if sender or self.sender:
            form["from"] = sender or self.sender
        body = self._request("sms/send", form)
        entry: dict[str, Any] | None = next(iter((body.get("sms") or {}).values()), None)
        if not isinstance(entry, dict):
            # Accepted without a per-number result: the message may be on its way.
            raise SmsError("SMS.ru accepted the request without a per-number result", unknown=True)
        if entry.get("status") != "OK":
            raise SmsError(f"SMS.ru error {entry.get('status_code')}: {entry.get('status_text')}")
        if not entry.get("sms_id"):
            # Accepted but unreadable: the message may be on its way; never resend.
            raise SmsError("SMS.ru accepted the request without an sms_id", unknown=True)
        code = int(entry.get("status_code", 100))
        return SmsReceipt(str(entry["sms_id"]), _SMSRU_STATUS.get(code, "queued"))

    def status(self, message_id: str) -> str:
        body = self._request(
            "sms/status", {"api_id": self.api_id, "sms_id": message_id, "json": "1"}
        )
        entry: dict[str, Any] = (body.get("sms") or {}).get(message_id, {})
        return _SMSRU_STATUS.get(int(entry.get("status_code", 100)), "queued")

    def find(self, key: str) -> SmsReceipt | None:
        return None  # SMS.ru has no lookup by our key: an unknown outcome stays unknown

    def _request(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        resp = _http(self.http, "POST", f"{self.base}/{path}", data=form, timeout=self.timeout)
        body = _json(resp)
        if resp.status_code >= 500:
            raise SmsError(f"SMS.ru answered HTTP {resp.status_code}", retryable=True)
        if resp.ok and not body:
            # A 2xx without a readable answer: the request may have been carried out.
            raise SmsError(f"SMS.ru answered HTTP {resp.status_code} without JSON", unknown=True)
        if body.get("status") != "OK":
            # {"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"}
            raise SmsError(f"SMS.ru error {body.get('status_code')}: {body.get('status_text')}")
        return body


def provider_for(channels: ChannelSettings, http: requests.Session, timeout: float) -> SmsProvider:
    """The portal's provider; a misconfiguration is an ``SmsError`` (never retryable)."""
    if channels.sms_provider in (None, "", "outbox"):
        return OutboxProvider()
    if channels.sms_provider not in ("twilio", "smsru"):
        # Falling back to the outbox would report "delivered" for messages never sent.
        raise SmsError(f"unknown SMS provider {channels.sms_provider!r}")
    try:
        creds = json.loads(channels.sms_credentials or "{}")
    except ValueError:
        creds = None
    if not isinstance(creds, dict):
        raise SmsError(f"{channels.sms_provider} credentials are not a JSON object") from None
    # A "base_url" stored among the credentials by an older version is ignored on purpose.
    base = gateway_url(channels.sms_provider)
    try:
        if channels.sms_provider == "twilio":
            return TwilioProvider(creds, http, timeout, base)
        return SmsRuProvider(creds, http, timeout, base)
    except KeyError as exc:
        raise SmsError(f"{channels.sms_provider} credentials lack {exc.args[0]!r}") from None


def gateway_url(provider: str) -> str:
    """The provider's endpoint: the operator's choice, else the official one (HTTPS both)."""
    return operator_config().sms_gateway_urls.get(provider, ENDPOINTS[provider])


def _http(http: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    try:
        return http.request(method, url, **kwargs)
    except requests.RequestException as exc:
        # The request may have reached the gateway: the caller must not resend blindly.
        raise SmsError(f"gateway unreachable: {type(exc).__name__}", unknown=True) from exc


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}
