"""The environment configuration ``Config`` (prefix ``MARKETAPP_``) with embedded defaults.

Nothing here needs a server: without ``MARKETAPP_DATABASE_URL`` the app uses SQLite in its instance
folder, without ``MARKETAPP_REDIS_URL`` the job queue is Huey on SQLite, and the secret and
encryption keys are generated once and kept in the instance folder.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_OAUTH_HOSTS = ("oauth.bitrix.info", "oauth.bitrix24.tech")


class Config(BaseSettings):
    """Typed environment configuration; every field maps to ``MARKETAPP_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="MARKETAPP_", extra="ignore")

    instance_path: Path = Field(default_factory=lambda: Path.cwd() / "instance")
    database_url: str = ""
    redis_url: str = ""
    secret_key: SecretStr = SecretStr("")
    # Comma-separated Fernet keys; the first encrypts, all decrypt (key rotation).
    encryption_keys: SecretStr = SecretStr("")
    public_url: str = "http://127.0.0.1:8000"
    client_id: str = "local.marketapp"
    client_secret: SecretStr = SecretStr("")
    app_code: str = "smart_scenarios"
    # OAuth servers the app will send client_secret to (host or host:port).
    oauth_hosts: str = ",".join(DEFAULT_OAUTH_HOSTS)
    # Allow plain http endpoints on loopback (development and tests only).
    allow_insecure_loopback: bool = False
    # Let portal admins point SMTP at loopback/private addresses (development and tests only).
    allow_private_smtp: bool = False
    # Operator-chosen SMS gateway endpoints, "provider=https://host[/path]" comma-separated;
    # unset providers use the official endpoint. Portal admins can never change these.
    sms_gateways: str = ""
    bx24_js_url: str = "//api.bitrix24.com/api/v1/"
    jobs_immediate: bool = False
    jobs_workers: int = 2
    # Seconds before a failed job runs again (each job has its own default when unset).
    jobs_retry_delay: float | None = None
    # Robot calls wait this long so that a burst (a smart scenario on 1,000 records) is
    # handled in groups of up to 50 per REST batch instead of one by one.
    robot_group_delay: float = 0.5
    # The web server of ``marketapp run`` (waitress, see marketapp.server): threads per process,
    # seconds of silence before a connection is closed, connections per process, body cap.
    web_threads: int = Field(default=8, ge=1)
    web_channel_timeout: int = Field(default=30, ge=1)
    web_connection_limit: int = Field(default=1000, ge=1)
    web_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    web_request_timeout: int = Field(default=30, ge=1)  # seconds for one request to arrive
    web_connections_per_client: int = Field(default=100, ge=1)  # per client address and process
    log_level: str = "INFO"
    http_timeout: float = 30.0
    testing: bool = False

    @field_validator("instance_path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("sms_gateways")
    @classmethod
    def _https_gateways(cls, value: str) -> str:
        parse_gateways(value)
        return value

    @property
    def sms_gateway_urls(self) -> dict[str, str]:
        return parse_gateways(self.sms_gateways)

    @property
    def oauth_host_list(self) -> list[str]:
        return [h.strip().lower() for h in self.oauth_hosts.split(",") if h.strip()]

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.instance_path / 'marketapp.db'}"

    @property
    def fernet_keys(self) -> list[str]:
        return [k.strip() for k in self.encryption_keys.get_secret_value().split(",") if k.strip()]


SMS_PROVIDERS = ("twilio", "smsru")


def parse_gateways(value: str) -> dict[str, str]:
    """``twilio=https://a,smsru=https://b`` as a dict; only known providers and HTTPS URLs."""
    urls: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        provider, _, url = entry.partition("=")
        provider, url = provider.strip(), url.strip().rstrip("/")
        parts = urlsplit(url)
        if provider not in SMS_PROVIDERS or parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"sms_gateways: {entry!r} is not provider=https://host")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(f"sms_gateways: {entry!r} must be a plain https://host[/path]")
        urls[provider] = url
    return urls


DEVPORTAL_ENV = "devportal.env"  # written by `marketapp run --devportal` into its instance


def load_config(overrides: dict[str, Any] | None = None) -> Config:
    """Build the configuration from the environment, apply ``overrides``, fill generated secrets.

    An instance that `marketapp run --devportal` uses holds ``devportal.env`` (the emulator's
    OAuth host, the shared client secret, loopback allowed), so that any other command on that
    instance (``marketapp scenarios …`` in a second terminal) talks to the same emulator; the
    environment and ``overrides`` still win.
    """
    config = Config(**(overrides or {}))
    local = _devportal_env(config.instance_path)
    if local:
        config = Config(**{**local, **(overrides or {})})
    config.instance_path.mkdir(parents=True, exist_ok=True)
    if not config.secret_key.get_secret_value():
        config.secret_key = SecretStr(
            _persisted(config.instance_path / "secret_key", lambda: secrets.token_hex(32))
        )
    if not config.fernet_keys:
        key = _persisted(
            config.instance_path / "encryption_key", lambda: Fernet.generate_key().decode()
        )
        config.encryption_keys = SecretStr(key)
    return config


def write_devportal_env(instance: Path, values: dict[str, str]) -> None:
    path = instance / DEVPORTAL_ENV
    path.touch(mode=0o600)
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def _devportal_env(instance: Path) -> dict[str, str]:
    """``devportal.env`` entries not set in the environment, as ``Config`` field names."""
    path = instance / DEVPORTAL_ENV
    if not path.is_file():
        return {}
    entries = (line.partition("=") for line in path.read_text().splitlines())
    return {
        key.removeprefix("MARKETAPP_").lower(): value
        for key, sep, value in entries
        if sep and key.startswith("MARKETAPP_") and key not in os.environ
    }


def get_config() -> Config:
    """The running app's configuration (needs an app context)."""
    from flask import current_app

    config: Config = current_app.extensions["marketapp.settings"]
    return config


def _persisted(path: Path, make: Any) -> str:
    """Read a generated secret from ``path``, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    value: str = make()
    path.touch(mode=0o600)
    path.write_text(value)
    return value
