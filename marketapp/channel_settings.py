"""A portal's channel settings: read with defaults, validated partial updates from the admin."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from marketapp.caps import Cap
from marketapp.channels.network import BlockedHost, operator_config, resolve
from marketapp.errors import AppError
from marketapp.models import ChannelSettings, Portal
from marketapp.scenarios.policies import SendWindow
from marketapp.scenarios.windows import window_problems, zone_named

_FIELD = re.compile(r"^(UF_CRM_[A-Z0-9_]+|[A-Z][A-Z0-9_]*)?$")
# NUL and other control characters: PostgreSQL refuses NUL, and a line break in an address
# or login is a header or SMTP command injection. No setting needs one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Credentials each SMS provider needs (secret ones are never shown back).
PROVIDER_FIELDS = {
    "outbox": (),
    "twilio": ("account_sid", "auth_token", "from", "messaging_service_sid"),
    "smsru": ("api_id", "from"),
}
SECRET_FIELDS = {"auth_token", "api_id"}


def channel_settings(session: Session, portal: Portal) -> ChannelSettings:
    """The portal's channel settings; a missing row is created (defaults apply on insert)."""
    query = select(ChannelSettings).where(ChannelSettings.portal_id == portal.id)
    found = session.scalar(query)
    if found is not None:
        return found
    session.add(ChannelSettings(portal_id=portal.id))
    try:
        session.commit()
    except IntegrityError:  # created by another worker meanwhile
        session.rollback()
    row = session.scalar(query)
    assert row is not None
    return row


class SettingsForm(BaseModel):
    """What the admin may change; empty secret fields keep the stored value."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email_channel: Literal["portal", "smtp"] = "portal"
    smtp_host: str = Field(default="", max_length=255)
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = Field(default="", max_length=255)
    smtp_password: str = Field(default="", max_length=255)
    smtp_starttls: bool = True
    smtp_from: str = Field(default="", max_length=255)
    sms_provider: Literal["outbox", "twilio", "smsru"] = "outbox"
    sms_credentials: dict[str, str] = Field(default_factory=dict)
    sms_max_length: int = Field(default=200, ge=1, le=1600)
    default_country: str = Field(default="RU", pattern=r"^[A-Za-z]{2}$")
    timezone: str = Field(default="", max_length=64)
    no_email_field: str = Field(default="", max_length=64)
    no_sms_field: str = Field(default="", max_length=64)
    # Replaced as a whole when given; ``null`` clears the window (messages go at any time).
    send_window: SendWindow | None = None
    caps: list[Cap] = Field(default_factory=list, max_length=6)

    @field_validator(
        "smtp_host", "smtp_username", "smtp_password", "smtp_from", "no_email_field", "no_sms_field"
    )
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("no_email_field", "no_sms_field")
    @classmethod
    def _crm_field(cls, value: str) -> str:
        value = value.upper()
        if not _FIELD.match(value):
            raise ValueError("must be a CRM field code such as UF_CRM_NO_SMS")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        value = value.strip()
        if value and zone_named(value) is None:
            raise ValueError("must be an IANA time zone such as Europe/Moscow, or empty for UTC")
        return value

    @field_validator("send_window")
    @classmethod
    def _window(cls, value: SendWindow | None) -> SendWindow | None:
        problems = window_problems(value) if value is not None else []
        if problems:
            raise ValueError("; ".join(f"{path}: {text}" for path, text in problems))
        return value

    @field_validator("caps")
    @classmethod
    def _one_cap_per_period(cls, value: list[Cap]) -> list[Cap]:
        seen = [(c.channel, c.period) for c in value]
        for n, pair in enumerate(seen):
            if pair in seen[:n]:
                raise ValueError(f"{pair[0]} has two caps per {pair[1]}")
        return value

    @field_validator("sms_credentials")
    @classmethod
    def _known_keys(cls, value: dict[str, str]) -> dict[str, str]:
        known = {k for keys in PROVIDER_FIELDS.values() for k in keys}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown credential fields: {', '.join(sorted(unknown))}")
        if any(_CONTROL.search(v) for v in value.values()):
            raise ValueError("must not contain control characters")
        return {k: v.strip() for k, v in value.items()}


def update_channel_settings(session: Session, portal: Portal, data: Any) -> ChannelSettings:
    """Apply a partial update: the named fields change, absent ones keep their stored value.

    ``data`` must be a JSON object; the merged result is validated as a whole and a problem is
    a 400 naming the field, changing nothing. Blank secrets keep the stored secret.
    """
    if not isinstance(data, dict):
        raise AppError(
            "Invalid settings: the body must be a JSON object (Content-Type: application/json)",
            code="invalid_settings",
        )
    row = channel_settings(session, portal)
    try:
        form = SettingsForm.model_validate({**_stored_fields(row), **data})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise AppError(f"Invalid settings: {problems}", code="invalid_settings") from None
    stored: dict[str, str] = {}
    if row.sms_provider == form.sms_provider:
        loaded = json.loads(row.sms_credentials or "{}")
        stored = loaded if isinstance(loaded, dict) else {}
        stored.pop("base_url", None)  # the endpoint is the operator's (MARKETAPP_SMS_GATEWAYS)
    credentials = {k: v for k, v in form.sms_credentials.items() if v or k not in SECRET_FIELDS}
    missing = _missing_credentials(form, {**stored, **credentials})
    if missing:
        raise AppError(
            f"Invalid settings: {form.sms_provider} needs {', '.join(missing)}",
            code="invalid_settings",
        )
    if form.email_channel == "smtp":
        _check_smtp(form, changed=bool({"email_channel", "smtp_host", "smtp_port"} & set(data)))
    for name, value in form.model_dump(exclude={"sms_credentials", "smtp_password"}).items():
        setattr(row, name, value)
    if form.smtp_password:
        row.smtp_password = form.smtp_password
    row.sms_credentials = json.dumps({**stored, **credentials})
    session.commit()
    return row


def _stored_fields(row: ChannelSettings) -> dict[str, Any]:
    """The row as form values (secrets and credentials are merged separately)."""
    names = set(SettingsForm.model_fields) - {"sms_credentials", "smtp_password"}
    return {name: getattr(row, name) for name in names if getattr(row, name) is not None}


def _check_smtp(form: SettingsForm, *, changed: bool) -> None:
    if not (form.smtp_host and form.smtp_from):
        raise AppError(
            "Invalid settings: SMTP needs a host and a From address", code="invalid_settings"
        )
    if not changed:
        return  # unchanged destination: checked when it was set, and again at every connect
    allow_private = operator_config().allow_private_smtp
    try:
        resolve(form.smtp_host, form.smtp_port, allow_private=allow_private)
    except BlockedHost as exc:
        raise AppError(f"Invalid settings: smtp_host: {exc}", code="invalid_settings") from None


def _missing_credentials(form: SettingsForm, credentials: dict[str, str]) -> list[str]:
    required = {"twilio": ("account_sid", "auth_token"), "smsru": ("api_id",)}
    return [k for k in required.get(form.sms_provider, ()) if not credentials.get(k)]


def public_view(row: ChannelSettings) -> dict[str, Any]:
    """Settings for the page: secrets replaced by whether they are set."""
    credentials = json.loads(row.sms_credentials or "{}")
    return {
        "email_channel": row.email_channel,
        "smtp_host": row.smtp_host,
        "smtp_port": row.smtp_port,
        "smtp_username": row.smtp_username,
        "smtp_password_set": bool(row.smtp_password),
        "smtp_starttls": row.smtp_starttls,
        "smtp_from": row.smtp_from,
        "sms_provider": row.sms_provider,
        "sms_credentials": {k: ("" if k in SECRET_FIELDS else v) for k, v in credentials.items()},
        "sms_secrets_set": sorted(k for k in credentials if k in SECRET_FIELDS and credentials[k]),
        "sms_max_length": row.sms_max_length,
        "default_country": row.default_country,
        "timezone": row.timezone,
        "no_email_field": row.no_email_field,
        "no_sms_field": row.no_sms_field,
        "send_window": row.send_window,
        "caps": row.caps or [],
    }
