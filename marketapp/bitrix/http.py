"""The process-wide HTTP session and endpoint validation shared by the REST and OAuth clients."""

from __future__ import annotations

import ipaddress
import os
import threading
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from marketapp.bitrix.errors import ConfigError

_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid = 0


def shared_session() -> requests.Session:
    """One pooled ``requests.Session`` per process (re-created after a fork)."""
    global _session, _session_pid
    with _lock:
        # A pooled socket inherited across fork would be shared by two processes.
        if _session is None or _session_pid != os.getpid():
            _session = _new_session()
            _session_pid = os.getpid()
        return _session


def _new_session() -> requests.Session:
    session = requests.Session()
    # Many portals, a few connections each: keep more hosts and connections than the defaults.
    adapter = HTTPAdapter(pool_connections=64, pool_maxsize=32, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "marketapp-bitrix24/1"
    return session


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_endpoint(url: str, allow_insecure_loopback: bool) -> str:
    """Return ``url`` with a trailing slash if it is https (or http on loopback when allowed)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"endpoint is not a plain base URL: {parts.scheme}://{host}")
    if parts.scheme != "https" and not (
        parts.scheme == "http" and allow_insecure_loopback and is_loopback(host)
    ):
        raise ConfigError(f"endpoint must use https: {parts.scheme}://{host}")
    return url if url.endswith("/") else url + "/"
