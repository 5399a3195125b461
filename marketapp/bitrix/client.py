"""The Bitrix24 REST client for one portal: ``call``, ``batch``, ``iterate``.

Every request goes through the portal's shared limiter, carries a timeout and the current access
token (refreshed once, single-flight, on ``expired_token`` or a known-past expiry), and is
retried only where repeating is safe: ``QUERY_LIMIT_EXCEEDED`` and unsent requests always,
other 5xx and transport errors for idempotent calls, ``OPERATION_TIME_LIMIT`` after the method's
pause. 400/403/404 surface at once as typed errors.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from marketapp.bitrix import errors
from marketapp.bitrix.errors import BitrixError
from marketapp.bitrix.http import shared_session, validate_endpoint
from marketapp.bitrix.limiter import Limiter
from marketapp.bitrix.oauth import OAuthRefresher, PortalTokens, Token, TokenSource
from marketapp.models.portal import Portal

log = logging.getLogger(__name__)

BATCH_SIZE = 50
PAGE_SIZE = 50
# Read-only method suffixes: repeating them after an ambiguous failure changes nothing.
_IDEMPOTENT = re.compile(r"\.(get|list|fields|info|current|search|getlist|userfieldtypes)$")


@dataclass(frozen=True)
class CallResult:
    """A successful call: ``result`` plus ``total``/``next`` (lists) and the ``time`` block."""

    result: Any
    total: int | None = None
    next: int | None = None
    time: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> CallResult:
        return cls(
            result=envelope.get("result"),
            total=_int_or_none(envelope.get("total")),
            next=_int_or_none(envelope.get("next")),
            time=envelope.get("time") or {},
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: exponential back-off with full jitter, capped waits."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    # Longest we sleep for a method paused by OPERATION_TIME_LIMIT before raising instead.
    max_operating_wait: float = 120.0
    # Pause used when a 429 carries no operating_reset_at (nothing better is known).
    default_operating_pause: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


Params = Mapping[str, Any]
Command = tuple[str, Params | None]


class PortalClient:
    """REST access to one portal. Collaborators are injected so tests swap in fakes."""

    def __init__(
        self,
        tokens: TokenSource,
        limiter: Limiter,
        http: requests.Session,
        *,
        timeout: float = 30.0,
        allow_insecure_loopback: bool = False,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.tokens = tokens
        self.limiter = limiter
        self.http = http
        self.timeout = timeout
        self.allow_insecure_loopback = allow_insecure_loopback
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security

    # --- public API ---------------------------------------------------------------------

    def call(
        self, method: str, params: Params | None = None, *, idempotent: bool | None = None
    ) -> CallResult:
        """Call ``method`` with ``params`` (sent as JSON) and return its result.

        ``idempotent`` (default: guessed from the method name, ``*.get``/``*.list``/…) allows
        repeating the call after a 5xx or a transport error that may have reached the server.
        """
        if idempotent is None:
            idempotent = bool(_IDEMPOTENT.search(method.lower()))
        envelope = self._request(method, dict(params or {}), idempotent, (method,))
        result = CallResult.from_envelope(envelope)
        self._record_operating(method, result.time)
        return result

    def batch(
        self,
        commands: Mapping[str, Command] | Sequence[Command],
        halt: bool = False,
    ) -> BatchResult:
        """Run any number of commands in batches of 50; results come back under the caller's keys.

        ``commands`` is a map ``key → (method, params)`` or a list (keys are the indexes).
        References such as ``$result[key][0][ID]`` work between commands of the same batch of 50.
        With ``halt`` the first failing command stops everything after it.
        """
        items = _command_items(commands)
        chunks = [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]
        cmds = [{str(key): _command_string(m, p) for key, (m, p) in chunk} for chunk in chunks]
        for cmd in cmds:
            _check_references(cmd)  # before sending anything
        merged = BatchResult()
        for chunk, cmd in zip(chunks, cmds, strict=True):
            self._batch_chunk(chunk, cmd, halt, merged)
            if halt and merged.errors:
                break
        return merged

    def iterate(
        self,
        method: str,
        params: Params | None = None,
        *,
        ordered: bool = False,
        id_field: str | None = None,
    ) -> Iterator[Any]:
        """Yield every item of a ``*.list`` method.

        By default a fast ``ID`` cursor (``order ID ASC``, ``filter >ID``, ``start=-1``): no
        ``total`` counting and no skipped or repeated rows when the table changes. With
        ``ordered=True`` (or an ``order`` other than by ID) it pages with ``start`` instead,
        keeping the caller's ordering.
        """
        params = dict(params or {})
        key = id_field or ("id" if method.lower().startswith("crm.item.") else "ID")
        if ordered or _custom_order(params.get("order"), key):
            yield from self._iterate_pages(method, params)
        else:
            yield from self._iterate_cursor(method, params, key)

    # --- requests -----------------------------------------------------------------------

    def _request(
        self, method: str, body: dict[str, Any], idempotent: bool, methods: tuple[str, ...]
    ) -> dict[str, Any]:
        token = self.tokens.current()
        if token.expired(self.clock()):
            token = self.tokens.refresh(token)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            self._wait_for_pauses(methods)
            self.limiter.acquire()
            try:
                return self._send(token, method, body)
            except errors.AuthError as exc:
                if refreshed and isinstance(exc, errors.InvalidToken):
                    self.tokens.needs_reauth()  # even a fresh token is unknown: stop, don't loop
                    raise errors.NeedsReauth(exc.code, exc.description, exc.status) from None
                if refreshed or not isinstance(exc, errors.ExpiredToken | errors.InvalidToken):
                    raise
                token, refreshed = self.tokens.refresh(token), True
                attempt -= 1  # a refresh is not a failed attempt
            except errors.OperationTimeLimit as exc:
                self._pause_method(method, exc)
                if attempt >= self.retry.attempts:
                    raise
            except (errors.ServerError, errors.TransportError) as exc:
                if attempt >= self.retry.attempts or not _may_repeat(exc, idempotent):
                    raise
                delay = self.retry.backoff(attempt, self.rng)
                log.warning("bitrix24 %s failed (%s), retry in %.2fs", method, exc.code, delay)
                self.sleep(delay)

    def _send(self, token: Token, method: str, body: dict[str, Any]) -> dict[str, Any]:
        endpoint = validate_endpoint(token.client_endpoint, self.allow_insecure_loopback)
        response = self._post(f"{endpoint}{method}", body, token)
        if response.is_redirect:
            return self._moved(token, method, body, response)
        return _envelope(response)

    def _moved(
        self, token: Token, method: str, body: dict[str, Any], response: requests.Response
    ) -> dict[str, Any]:
        """302 from the old portal host after a domain change: re-send there once, store it."""
        location = urlsplit(response.headers.get("Location", ""))
        old = urlsplit(token.client_endpoint)
        if not location.hostname or location.hostname == old.hostname:
            raise errors.from_status(response.status_code, "redirect without a new host")
        port = f":{location.port}" if location.port else ""
        new_endpoint = f"{location.scheme}://{location.hostname}{port}{old.path}"
        new_endpoint = validate_endpoint(new_endpoint, self.allow_insecure_loopback)
        log.info("portal moved from %s to %s", old.hostname, location.hostname)
        moved = self.tokens.moved(token, new_endpoint)
        return _envelope(self._post(f"{moved.client_endpoint}{method}", body, moved))

    def _post(self, url: str, body: dict[str, Any], token: Token) -> requests.Response:
        try:
            return self.http.post(
                url,
                json={**body, "auth": token.access_token},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise _transport_error(exc) from None

    # --- operating-time pauses ----------------------------------------------------------

    def _wait_for_pauses(self, methods: tuple[str, ...]) -> None:
        for method in methods:
            until = self.limiter.paused_until(method)
            if until is None:
                continue
            delay = until - self.clock()
            if delay <= 0:
                continue
            if delay > self.retry.max_operating_wait:
                raise errors.OperationTimeLimit(
                    "OPERATION_TIME_LIMIT",
                    f"{method} is paused for another {delay:.0f}s",
                    429,
                    reset_at=until,
                )
            log.info("bitrix24 %s paused by operating time, waiting %.1fs", method, delay)
            self.sleep(delay)

    def _pause_method(self, method: str, exc: errors.OperationTimeLimit) -> None:
        until = exc.reset_at or self.clock() + self.retry.default_operating_pause
        self.limiter.pause(method, until)

    def _record_operating(self, method: str, time_block: Mapping[str, Any]) -> None:
        operating = time_block.get("operating")
        if isinstance(operating, int | float):
            self.limiter.record(method, float(operating), _reset_at(time_block))

    # --- batch --------------------------------------------------------------------------

    def _batch_chunk(
        self,
        chunk: list[tuple[Any, Command]],
        cmd: dict[str, str],
        halt: bool,
        merged: BatchResult,
    ) -> None:
        keys = {str(key): key for key, _ in chunk}
        methods = tuple(dict.fromkeys(method for _, (method, _p) in chunk))
        # Only reads in a batch may be repeated after an ambiguous failure.
        idempotent = all(_IDEMPOTENT.search(m.lower()) for m in methods)
        envelope = self._request("batch", {"halt": int(halt), "cmd": cmd}, idempotent, methods)
        merged.merge(envelope.get("result") or {}, keys)
        for key, (method, _params) in chunk:
            times = merged.times.get(key)
            if times is not None:
                self._record_operating(method, times)

    # --- lists --------------------------------------------------------------------------

    def _iterate_pages(self, method: str, params: dict[str, Any]) -> Iterator[Any]:
        start = 0
        while True:
            page = self.call(method, {**params, "start": start}, idempotent=True)
            yield from _items(page.result)
            if page.next is None:
                return
            start = page.next

    def _iterate_cursor(self, method: str, params: dict[str, Any], key: str) -> Iterator[Any]:
        filters = dict(params.get("filter") or {})
        last = filters.pop(f">{key}", None)
        select = params.get("select")
        if select and key not in select and "*" not in select:
            params["select"] = [*select, key]
        while True:
            page_filter = {**filters, f">{key}": last} if last is not None else filters
            page = self.call(
                method,
                {**params, "filter": page_filter, "order": {key: "ASC"}, "start": -1},
                idempotent=True,
            )
            rows = _items(page.result)
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            last = rows[-1][key]


class BatchResult:
    """Per-command outcomes of :meth:`PortalClient.batch`, keyed by the caller's keys."""

    def __init__(self) -> None:
        self.results: dict[Any, Any] = {}
        self.errors: dict[Any, BitrixError] = {}
        self.totals: dict[Any, int] = {}
        self.nexts: dict[Any, int] = {}
        self.times: dict[Any, dict[str, Any]] = {}

    def __getitem__(self, key: Any) -> Any:
        """The command's result; raises its error if it failed."""
        if key in self.errors:
            raise self.errors[key]
        return self.results[key]

    def merge(self, body: Mapping[str, Any], keys: Mapping[str, Any]) -> None:
        """Add one batch response, mapping its string keys back to the caller's keys."""
        for name, value in _as_map(body.get("result")).items():
            self.results[keys.get(name, name)] = value
        for name, value in _as_map(body.get("result_error")).items():
            envelope = (
                value if isinstance(value, dict) else {"error": "", "error_description": str(value)}
            )
            self.errors[keys.get(name, name)] = errors.from_envelope(envelope, None)
        for name, value in _as_map(body.get("result_total")).items():
            self.totals[keys.get(name, name)] = int(value)
        for name, value in _as_map(body.get("result_next")).items():
            self.nexts[keys.get(name, name)] = int(value)
        for name, value in _as_map(body.get("result_time")).items():
            self.times[keys.get(name, name)] = value


# --- encoding -----------------------------------------------------------------------------

# A batch reference such as $result[find][0][ID]; sent verbatim so the server can resolve it.
_REFERENCE = re.compile(r"\$(?:result|next|total|time|error)(?:\[[\w.\-]*\])+")
_REFERENCE_KEY = re.compile(r"\$(?:result|next|total|time|error)\[([\w.\-]*)\]")


def encode_query(params: Params) -> str:
    """Encode params as a PHP query string: ``fields[PHONE][0][VALUE]=…``, ``True`` → ``Y``."""
    return "&".join(f"{key}={_encode_value(value)}" for key, value in _flatten(params, ""))


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        items: Iterator[tuple[Any, Any]] = iter(value.items())
    elif isinstance(value, list | tuple):
        items = iter(enumerate(value))
    else:
        yield prefix, _scalar(value)
        return
    empty = True
    for key, item in items:
        empty = False
        part = quote(str(key), safe="")
        yield from _flatten(item, f"{prefix}[{part}]" if prefix else part)
    if empty and prefix:
        yield prefix, ""  # PHP cannot express an empty array in a query; send an empty value


def _scalar(value: Any) -> str:
    if value is True:
        return "Y"
    if value is False:
        return "N"
    if value is None:
        return ""
    return str(value)


def _encode_value(value: str) -> str:
    """Percent-encode ``value`` but keep batch references intact."""
    out, pos = [], 0
    for match in _REFERENCE.finditer(value):
        out.append(quote(value[pos : match.start()], safe=""))
        out.append(match.group(0))
        pos = match.end()
    out.append(quote(value[pos:], safe=""))
    return "".join(out)


def _command_string(method: str, params: Params | None) -> str:
    query = encode_query(params) if params else ""
    return f"{method}?{query}" if query else method


def _command_items(
    commands: Mapping[str, Command] | Sequence[Command],
) -> list[tuple[Any, Command]]:
    if isinstance(commands, Mapping):
        return [(key, _command(value)) for key, value in commands.items()]
    return [(index, _command(value)) for index, value in enumerate(commands)]


def _command(value: Any) -> Command:
    if isinstance(value, str):
        return value, None
    method, params = value
    return str(method), params


def _check_references(cmd: Mapping[str, str]) -> None:
    """A reference can only name an earlier command of the same batch of 50."""
    seen: set[str] = set()
    for key, command in cmd.items():
        for ref in _REFERENCE_KEY.findall(command):
            if ref not in seen:
                raise ValueError(
                    f"batch command {key!r} refers to {ref!r}, not earlier in its batch"
                )
        seen.add(key)


# --- responses ----------------------------------------------------------------------------


def _envelope(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise errors.from_status(response.status_code, response.text)
    if "error" in body or response.status_code >= 400:
        time_block = body.get("time") or {}
        raise errors.from_envelope(body, response.status_code, _reset_at(time_block))
    return body


def _reset_at(time_block: Mapping[str, Any]) -> float | None:
    value = time_block.get("operating_reset_at")
    return float(value) if isinstance(value, int | float) else None


def _transport_error(exc: requests.RequestException) -> errors.TransportError:
    return errors.TransportError(type(exc).__name__, sent=not _never_sent(exc))


def _never_sent(exc: requests.RequestException) -> bool:
    """Only a failed connect proves the server never saw the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        return isinstance(getattr(exc.args[0], "reason", None), NewConnectionError)
    return False


def _may_repeat(exc: BitrixError, idempotent: bool) -> bool:
    if isinstance(exc, errors.QueryLimitExceeded):
        return True  # rejected by the bucket before the method ran
    if isinstance(exc, errors.TransportError) and not exc.sent:
        return True
    return idempotent


def _as_map(value: Any) -> dict[str, Any]:
    """Batch maps come back as ``[]`` when empty and as lists when keyed ``0…n``."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _items(result: Any) -> list[Any]:
    """List rows: a plain list, or ``{"items": [...]}`` as ``crm.item.list`` answers."""
    if isinstance(result, dict):
        inner = result.get("items", [])
        return list(inner) if isinstance(inner, list) else list(_as_map(inner).values())
    return list(result) if isinstance(result, list) else []


def _custom_order(order: Any, key: str) -> bool:
    if not order:
        return False
    return not (
        isinstance(order, Mapping) and list(order) == [key] and str(order[key]).upper() == "ASC"
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def client_for(portal: Portal) -> PortalClient:
    """A client for ``portal`` wired to the current app: configuration, database, shared limiter."""
    from marketapp.bitrix.limiter import limiter_for
    from marketapp.config import get_config
    from marketapp.db import get_db

    config = get_config()
    http = shared_session()
    refresher = OAuthRefresher(
        config.client_id,
        config.client_secret.get_secret_value(),
        config.oauth_host_list,
        http,
        timeout=config.http_timeout,
        allow_insecure_loopback=config.allow_insecure_loopback,
    )
    return PortalClient(
        PortalTokens(get_db().sessions, portal.id, refresher),
        limiter_for(portal),
        http,
        timeout=config.http_timeout,
        allow_insecure_loopback=config.allow_insecure_loopback,
    )


class UserToken:
    """A launching user's access token from the page: used as it is, never refreshed or stored.

    Reads made with it see what the user's CRM rights allow. When it expires the caller gets
    ``ExpiredToken`` (the page has to hand over a fresh one); an invalid one never marks the
    portal for re-authorisation, since the portal's own tokens are fine.
    """

    def __init__(self, access_token: str, client_endpoint: str) -> None:
        self._token = Token(access_token=access_token, client_endpoint=client_endpoint)

    def current(self) -> Token:
        return self._token

    def refresh(self, stale: Token) -> Token:
        raise errors.ExpiredToken("expired_token", "the user's access token has expired", 401)

    def moved(self, token: Token, client_endpoint: str) -> Token:
        self._token = Token(access_token=token.access_token, client_endpoint=client_endpoint)
        return self._token

    def needs_reauth(self) -> None:
        return None


def client_for_user(portal: Portal, access_token: str) -> PortalClient:
    """A client acting as the user whose ``access_token`` a page passed, through the portal's
    shared limiter (the user's requests spend the same budget as the app's)."""
    from marketapp.bitrix.limiter import limiter_for
    from marketapp.config import get_config

    config = get_config()
    return PortalClient(
        UserToken(access_token, portal.client_endpoint),
        limiter_for(portal),
        shared_session(),
        timeout=config.http_timeout,
        allow_insecure_loopback=config.allow_insecure_loopback,
    )
