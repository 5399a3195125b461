"""Inbound Bitrix24 payloads: PHP-style bracket fields into nested data, then typed models.

Bitrix24 posts events, robot calls and placement pages as ``application/x-www-form-urlencoded``
with PHP brackets (``auth[member_id]=…``, ``document_id[0]=crm``, ``data[FIELDS][ID]=7``), every
value a string. :func:`nest` turns such pairs (or a JSON object) into nested dicts and lists under
size limits; the ``parse_*`` functions validate them into models. Every failure is a
:class:`PayloadError` whose message names the field but never echoes a value (values may be tokens).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 512 * 1024
MAX_FIELDS = 1000
MAX_DEPTH = 8
MAX_KEY_LENGTH = 200
MAX_VALUE_LENGTH = 64 * 1024
INT32_MAX = 2**31 - 1  # ids, durations and counts end up in INTEGER columns
MAX_TIMESTAMP = 253_402_214_399  # 9999-12-30: still a datetime in every time zone

# name, then any number of [segment]; a segment may be empty (``list[]`` appends).
_KEY = re.compile(r"^(?P<name>[^\[\]]+)(?P<rest>(?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class PayloadError(ValueError):
    """An inbound payload is malformed, too large or misses required fields."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = problems or [message]
        super().__init__(message)


Source = Mapping[str, Any] | Iterable[tuple[str, Any]]


def nest(source: Source) -> dict[str, Any]:
    """Turn bracket-keyed pairs (or an already nested JSON object) into nested dicts and lists.

    Maps whose keys are exactly ``"0"…"n-1"`` become lists, as PHP arrays do. Duplicate keys,
    a field given both as a value and as a map, and inputs beyond the size limits are rejected.
    """
    root: dict[str, Any] = {}
    for count, (key, value) in enumerate(_pairs(source), start=1):
        if count > MAX_FIELDS:
            raise PayloadError(f"too many fields (more than {MAX_FIELDS})")
        _check_value(value, depth=1, field=key)
        _assign(root, _path(key), value, key)
    # Only nested maps become lists: the top level stays a map even for keys "0", "1"…
    return {k: _listify(v) for k, v in root.items()}


def _pairs(source: Source) -> Iterable[tuple[str, Any]]:
    items = getattr(source, "items", None)
    if items is None:
        return source  # type: ignore[return-value]
    try:
        return list(items(multi=True))  # werkzeug MultiDict keeps repeated keys
    except TypeError:
        return list(items())


def _path(key: str) -> list[str]:
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or "\x00" in key:
        raise PayloadError("field name too long, not text or with a NUL character")
    match = _KEY.match(key)
    if match is None:
        raise PayloadError(f"malformed field name {key[:60]!r}")
    path = [match["name"], *_SEGMENT.findall(match["rest"])]
    if len(path) > MAX_DEPTH:
        raise PayloadError(f"field {match['name']!r} nested deeper than {MAX_DEPTH}")
    return path


def _assign(root: dict[str, Any], path: list[str], value: Any, key: str) -> None:
    node = root
    for segment in path[:-1]:
        child = node.setdefault(_append_key(node, segment), {})
        if not isinstance(child, dict):
            raise PayloadError(f"field {key[:60]!r} is both a value and a map")
        node = child
    last = _append_key(node, path[-1])
    if last in node:
        raise PayloadError(f"field {key[:60]!r} given twice")
    node[last] = value


def _append_key(node: dict[str, Any], segment: str) -> str:
    """``[]`` appends like PHP: the next integer key of this map."""
    if segment != "":
        return segment
    return str(sum(1 for k in node if k.isdigit()))


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and sorted(converted) == sorted(str(i) for i in range(len(converted))):
        return [converted[str(i)] for i in range(len(converted))]
    return converted


def _check_value(value: Any, depth: int, field: str) -> None:
    if depth > MAX_DEPTH:
        raise PayloadError(f"field {field[:60]!r} nested deeper than {MAX_DEPTH}")
    if isinstance(value, str):
        if len(value) > MAX_VALUE_LENGTH:
            raise PayloadError(f"field {field[:60]!r} longer than {MAX_VALUE_LENGTH} characters")
        if "\x00" in value:  # no database column can hold it
            raise PayloadError(f"field {field[:60]!r} contains a NUL character")
    elif isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"field {field[:60]!r} is not a finite number")
    elif isinstance(value, dict):
        if len(value) > MAX_FIELDS:
            raise PayloadError(f"field {field[:60]!r} has more than {MAX_FIELDS} keys")
        for k, v in value.items():
            if "\x00" in k:
                raise PayloadError(f"field {field[:60]!r} has a key with a NUL character")
            _check_value(v, depth + 1, f"{field}[{k}]")
    elif isinstance(value, list):
        if len(value) > MAX_FIELDS:
            raise PayloadError(f"field {field[:60]!r} has more than {MAX_FIELDS} items")
        for i, v in enumerate(value):
            _check_value(v, depth + 1, f"{field}[{i}]")
    elif value is not None and not isinstance(value, bool | int | float):
        raise PayloadError(f"field {field[:60]!r} has an unsupported type")


def decode_body(content_type: str, body: bytes) -> dict[str, Any]:
    """Decode a request body, form-encoded (PHP brackets) or JSON, into nested data."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(f"body larger than {MAX_BODY_BYTES} bytes")
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            data = json.loads(body or b"{}")
        except (ValueError, RecursionError) as exc:
            raise PayloadError("body is not valid JSON or nested too deeply") from exc
        if not isinstance(data, dict):
            raise PayloadError("JSON body must be an object")
        return nest(data)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"form body is malformed or has more than {MAX_FIELDS} fields") from exc
    return nest(pairs)


def request_fields(request: Any) -> dict[str, Any]:
    """Nested fields of a Flask request: query string plus the form or JSON body.

    Page POSTs put ``DOMAIN``/``PROTOCOL``/``LANG``/``APP_SID`` in the query and the rest in the
    body; a key present in both is rejected.
    """
    body = decode_body(request.content_type or "", request.get_data(cache=True))
    query = nest(request.args)
    clash = set(query) & set(body)
    if clash:
        raise PayloadError(f"fields in both query and body: {', '.join(sorted(clash))}")
    return {**query, **body}


# --- field types -------------------------------------------------------------------------


def _yes_no(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().upper()
    if text in ("Y", "1", "TRUE"):
        return True
    if text in ("N", "0", "FALSE"):
        return False
    raise ValueError("expected Y or N")


def _scope(value: Any) -> Any:
    # Docs say space-separated, payloads use commas: accept both (and a JSON list).
    if isinstance(value, str):
        return tuple(s for s in re.split(r"[\s,]+", value) if s)
    return value


def _blank_to_none(value: Any) -> Any:
    # Form fields arrive as "" for null; an empty refresh token is no refresh token.
    return None if value == "" else value


def _json_object(value: Any) -> Any:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise ValueError("expected a JSON object string") from exc
        _check_value(value, depth=1, field="PLACEMENT_OPTIONS")
    if isinstance(value, list) and not value:
        return {}  # PHP encodes an empty map as []
    return value


YesNo = Annotated[bool, BeforeValidator(_yes_no)]
Scope = Annotated[tuple[str, ...], BeforeValidator(_scope)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
# Bounded so that storing or adding them to a datetime cannot overflow.
OptionalInt = Annotated[
    Annotated[int, Field(ge=0, le=INT32_MAX)] | None, BeforeValidator(_blank_to_none)
]
Timestamp = Annotated[
    Annotated[int, Field(ge=0, le=MAX_TIMESTAMP)] | None, BeforeValidator(_blank_to_none)
]
# OAuth tokens are printable ASCII; bounded to fit their encrypted columns.
TokenText = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[!-~]+$")]
Secret = Annotated[TokenText | None, BeforeValidator(_blank_to_none), Field(repr=False)]
MemberId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Endpoint = Annotated[str, Field(min_length=8, max_length=512, pattern=r"^https?://[^\s]+/$")]


class _Model(BaseModel):
    # Bitrix24 adds fields over time: ignore unknown ones, validate the known ones strictly.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Auth(_Model):
    """The ``auth`` block of events and robot calls (token keys absent when no user resolves)."""

    member_id: MemberId
    application_token: str = Field(min_length=1, max_length=128, repr=False)
    domain: str = Field(min_length=1, max_length=255)
    client_endpoint: Endpoint
    server_endpoint: Endpoint
    access_token: Secret = None
    refresh_token: Secret = None
    expires: Timestamp = None
    expires_in: OptionalInt = None
    scope: Scope = ()
    status: OptionalText = None
    user_id: OptionalInt = None

    @property
    def has_tokens(self) -> bool:
        return bool(self.access_token and self.refresh_token)


class EventBase(_Model):
    """The envelope of every event delivery: ``event``, ``event_handler_id``, ``ts``, ``auth``."""

    event: str = Field(min_length=1, max_length=100)
    event_handler_id: OptionalInt = None
    ts: int
    auth: Auth

    @model_validator(mode="before")
    @classmethod
    def _upper_event(cls, values: Any) -> Any:
        if isinstance(values, dict) and isinstance(values.get("event"), str):
            values = {**values, "event": values["event"].upper()}
        return values


class Event(EventBase):
    """Any other event; ``data`` kept as nested fields (``data.FIELDS.ID``)."""

    data: dict[str, Any] | list[Any] = Field(default_factory=dict)


class InstallData(_Model):
    version: int = Field(alias="VERSION")
    active: YesNo | None = Field(default=None, alias="ACTIVE")
    installed: YesNo | None = Field(default=None, alias="INSTALLED")
    language_id: OptionalText = Field(default=None, alias="LANGUAGE_ID")


class UpdateData(_Model):
    version: int = Field(alias="VERSION")
    previous_version: OptionalInt = Field(default=None, alias="PREVIOUS_VERSION")
    language_id: OptionalText = Field(default=None, alias="LANGUAGE_ID")


class UninstallData(_Model):
    clean: YesNo = Field(alias="CLEAN")
    language_id: OptionalText = Field(default=None, alias="LANGUAGE_ID")


class AppInstallEvent(EventBase):
    """``ONAPPINSTALL``: carries the portal's first token pair and ``application_token``."""

    event: Literal["ONAPPINSTALL"]
    data: InstallData

    @model_validator(mode="after")
    def _needs_tokens(self) -> AppInstallEvent:
        if not self.auth.has_tokens:
            raise ValueError("auth.access_token and auth.refresh_token are required")
        return self


class AppUpdateEvent(EventBase):
    """``ONAPPUPDATE``: a new version; ``application_token`` may be new."""

    event: Literal["ONAPPUPDATE"]
    data: UpdateData


class AppUninstallEvent(EventBase):
    """``ONAPPUNINSTALL``: no tokens; ``application_token`` is the only authentication."""

    event: Literal["ONAPPUNINSTALL"]
    data: UninstallData


_EVENTS: dict[str, type[EventBase]] = {
    "ONAPPINSTALL": AppInstallEvent,
    "ONAPPUPDATE": AppUpdateEvent,
    "ONAPPUNINSTALL": AppUninstallEvent,
}


DocumentPart = Annotated[str, Field(max_length=64)]


class RobotCall(_Model):
    """A robot handler POST (platform doc §4.3)."""

    workflow_id: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=64)
    document_id: tuple[DocumentPart, DocumentPart, DocumentPart]
    document_type: tuple[DocumentPart, DocumentPart, DocumentPart]
    event_token: TokenText = Field(repr=False)
    properties: Annotated[dict[str, Any], BeforeValidator(_json_object)] = Field(
        default_factory=dict
    )
    use_subscription: YesNo = True
    timeout_duration: int = Field(default=0, ge=0)
    ts: int
    auth: Auth

    @property
    def entity_id(self) -> int | None:
        """The numeric id in ``document_id[2]`` (``CONTACT_42`` → 42, ``DYNAMIC_147_1`` → 1)."""
        return document_entity_id(self.document_id[2])


def document_entity_id(document_id: str) -> int | None:
    """The id after the last ``_`` when it is an ASCII number that fits an INTEGER column."""
    tail = document_id.rsplit("_", 1)[-1]
    if not (tail.isascii() and tail.isdigit()) or len(tail) > 10 or int(tail) > INT32_MAX:
        return None
    return int(tail)


class PlacementRequest(_Model):
    """The page POST for the installer, the main page and every placement (doc §1.3)."""

    domain: str = Field(alias="DOMAIN", min_length=1, max_length=255)
    protocol: int = Field(default=1, alias="PROTOCOL", ge=0, le=1)
    lang: str = Field(default="en", alias="LANG", max_length=8)
    app_sid: OptionalText = Field(default=None, alias="APP_SID")
    auth_id: str = Field(alias="AUTH_ID", min_length=1, max_length=256, repr=False)
    auth_expires: OptionalInt = Field(default=None, alias="AUTH_EXPIRES")
    refresh_id: Secret = Field(default=None, alias="REFRESH_ID")
    server_endpoint: Endpoint = Field(alias="SERVER_ENDPOINT")
    application_token: str = Field(
        alias="APPLICATION_TOKEN", min_length=1, max_length=128, repr=False
    )
    scope: Scope = Field(default=(), alias="APPLICATION_SCOPE")
    member_id: MemberId
    status: OptionalText = None
    placement: str = Field(default="DEFAULT", alias="PLACEMENT", min_length=1, max_length=100)
    placement_options: Annotated[dict[str, Any], BeforeValidator(_json_object)] = Field(
        default_factory=dict, alias="PLACEMENT_OPTIONS"
    )


# --- parsing entry points -----------------------------------------------------------------


def parse_event(source: Source) -> EventBase:
    """Validate an event delivery; app lifecycle events get their specific model."""
    fields = nest(source)
    name = str(fields.get("event", "")).upper()
    return _validate(_EVENTS.get(name, Event), fields, "event")


def parse_robot_call(source: Source) -> RobotCall:
    """Validate a robot handler POST."""
    return _validate(RobotCall, nest(source), "robot call")


def parse_placement(source: Source) -> PlacementRequest:
    """Validate a page/placement POST (merge the query string into ``source`` first)."""
    return _validate(PlacementRequest, nest(source), "placement request")


def _validate(model: type[M], fields: dict[str, Any], what: str) -> M:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        # Our own wording: pydantic's default message would echo input values (tokens).
        problems = [f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise PayloadError(f"invalid {what}: " + "; ".join(problems), problems) from None


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(body)"
