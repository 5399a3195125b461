"""Fuzzed inbound calls never produce a 5xx, and rejected calls are logged without secrets.

Every endpoint Bitrix24 (or a user's browser on its behalf) calls gets a few hundred cases:
near-valid payloads from the platform doc (§1.3-1.7, §4.3) mutated key by key, JSON bodies,
raw bytes under random content types, and random query strings. One portal is known, so some
cases hit "known member_id, wrong token" and some carry the right token and run deeper (outbound
HTTP is refused by conftest, jobs run immediately). Jobs may fail on the dead network, but never
on the input: a job crash with anything but a Bitrix24/retry error fails the test too.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from marketapp.bitrix.client import RetryPolicy
from marketapp.bitrix.errors import BitrixError
from marketapp.db import db_session
from marketapp.lifecycle.registration import SyncError
from marketapp.logging import JsonFormatter
from marketapp.models import Portal, PortalStatus
from marketapp.robots import RetryLater
from marketapp.security import PortalSession, issue_session
from tests.support import add_portal

MEMBER_ID = "a" * 32
APP_TOKEN = "plain-app-token-789"
WRONG_TOKEN = "wrong-app-token-000"
SECRETS = (APP_TOKEN, WRONG_TOKEN, "s6p6eclrvim6da22", "4s386p3q0tr8dy89")

FUZZ = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

AUTH: dict[str, Any] = {
    "access_token": "s6p6eclrvim6da22ft9ch94ekreb52lv",
    "expires": "1696530600",
    "expires_in": "3600",
    "scope": "crm,placement,bizproc",
    "domain": "portal.bitrix24.com",
    "server_endpoint": "https://oauth.bitrix.info/rest/",
    "status": "F",
    "client_endpoint": "https://portal.bitrix24.com/rest/",
    "member_id": MEMBER_ID,
    "user_id": "1",
    "refresh_token": "4s386p3q0tr8dy89xvmt96234v3dljg8",
    "application_token": APP_TOKEN,
}
NO_TOKENS = {k: v for k, v in AUTH.items() if k in {"domain", "server_endpoint", "client_endpoint"}}

EVENTS: list[dict[str, Any]] = [
    {  # §1.5
        "event": "ONAPPINSTALL",
        "event_handler_id": "12",
        "ts": "1696527000",
        "data": {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"},
        "auth": AUTH,
    },
    {  # §1.6
        "event": "ONAPPUPDATE",
        "event_handler_id": "13",
        "ts": "1696527000",
        "data": {"VERSION": "2", "PREVIOUS_VERSION": "1", "LANGUAGE_ID": "ru"},
        "auth": AUTH,
    },
    {  # §1.7
        "event": "ONAPPUNINSTALL",
        "ts": "1466439714",
        "data": {"LANGUAGE_ID": "en", "CLEAN": "1"},
        "auth": {**NO_TOKENS, "member_id": MEMBER_ID, "application_token": APP_TOKEN},
    },
    {  # any other event (§1.4)
        "event": "ONCRMDEALUPDATE",
        "event_handler_id": "14",
        "ts": "1696527000",
        "data": {"FIELDS": {"ID": "7"}},
        "auth": {**NO_TOKENS, "member_id": MEMBER_ID, "application_token": APP_TOKEN},
    },
]

ROBOT_CODES = ["send_email", "send_sms", "edit_record", "timeline_comment", "run_scenario"]
ROBOT: dict[str, Any] = {  # §4.3
    "workflow_id": "66f0a1b2c3d4e5.12345678",
    "code": "send_email",
    "document_id": ["crm", "CCrmDocumentContact", "CONTACT_42"],
    "document_type": ["crm", "CCrmDocumentContact", "CONTACT"],
    "event_token": "66f0a1b2c3d4e5.12345678|A12345_1_2_3|abc.def",
    "properties": {"subject": "Hello", "body": "<p>Hi</p>", "text": "Hello", "fields": ""},
    "use_subscription": "Y",
    "timeout_duration": "3600",
    "ts": "1700000000",
    "auth": AUTH,
}

PAGE_QUERY = {"DOMAIN": "portal.bitrix24.com", "PROTOCOL": "1", "LANG": "en", "APP_SID": "dd8c" * 8}
PAGE_BODY: dict[str, Any] = {  # §1.3
    "AUTH_ID": "ahodg4h3xlh3glqb",
    "AUTH_EXPIRES": "3600",
    "REFRESH_ID": "2lg086mxk2xmbk0e",
    "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/",
    "APPLICATION_TOKEN": APP_TOKEN,
    "APPLICATION_SCOPE": "crm,placement,bizproc",
    "member_id": MEMBER_ID,
    "status": "F",
    "PLACEMENT": "CRM_DEAL_DETAIL_TOOLBAR",
    "PLACEMENT_OPTIONS": '{"ID":"7"}',
}
PAGE_PATHS = ["/", "/install", "/placements/launch", "/placements/robot-settings"]
ROBOT_SETTINGS_OPTIONS = json.dumps(
    {"code": "send_email", "current_values": {"subject": "Hi", "body": "x"}}
)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
CONTENT_TYPES = [
    FORM,
    f"{FORM}; charset=utf-8",
    f"{FORM}; charset=latin-1",
    JSON,
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "text/json",
    "text/plain",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "",
    ";;;",
]

# --- strategies ---------------------------------------------------------------------------

ODD_VALUES = [
    "",
    " ",
    "Y",
    "N",
    "0",
    "1",
    "-1",
    "1.5",
    "1e309",
    "NaN",
    "null",
    "[]",
    "{}",
    "[[[[",
    '{"a":',
    '{"a": [1, {"b": null}]}',
    "[" * 5000,
    "9" * 30,
    "9" * 5000,
    "-" + "9" * 25,
    "\x00",
    "a\x00b",
    "\u202e\u0000\ufeff",
    "ПОРТАЛ",
    "²",
    "CONTACT_²",
    "CONTACT_" + "9" * 30,
    "DYNAMIC_147_1",
    "X" * 300,
    "x" * 70_000,
    "https://",
    "http://127.0.0.1:1/rest/",
    "https://evil.example/rest/",
    APP_TOKEN,
    WRONG_TOKEN,
    MEMBER_ID,
]
ODD_KEYS = [
    "",
    "[",
    "]",
    "]]",
    "[]",
    "auth[",
    "auth]",
    "auth[]",
    "auth[[member_id]]",
    "auth[member_id",
    "auth[member_id]]",
    "auth[member_id][x]",
    "auth[member_id][]",
    "document_id[]",
    "document_id[3]",
    "document_id[x]",
    "data[]",
    "data[CLEAN][]",
    "properties[]",
    "properties[a][b][c][d][e][f][g][h][i]",
    "a" + "[b]" * 12,
    "a" * 300,
    "a\x00",
    "PLACEMENT_OPTIONS[x]",
    "DOMAIN",
    "member_id[]",
]

short_text = st.text(max_size=24)
values = st.one_of(
    st.sampled_from(ODD_VALUES),
    short_text,
    st.integers().map(str),
    st.floats(allow_nan=True).map(repr),
)
keys = st.one_of(st.sampled_from(ODD_KEYS), st.text(max_size=16))
tokens = st.sampled_from([APP_TOKEN, APP_TOKEN, WRONG_TOKEN, ""])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**40)
    | st.floats()
    | short_text
    | st.sampled_from(ODD_VALUES),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4),
    max_leaves=10,
)


# Few mutations more often than many, so that a fair share of cases passes parsing.
mutation_counts = st.sampled_from([0, 0, 1, 1, 1, 2, 3, 4])


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested data as PHP bracket pairs, the way Bitrix24 form-encodes it."""
    if isinstance(data, dict):
        items: list[tuple[Any, Any]] = list(data.items())
    elif isinstance(data, list):
        items = list(enumerate(data))
    else:
        return [(prefix, "" if data is None else str(data))]
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        pairs += flatten(value, f"{prefix}[{key}]" if prefix else str(key))
    return pairs


def with_token(base: dict[str, Any], token: str) -> dict[str, Any]:
    data = copy.deepcopy(base)
    if isinstance(data.get("auth"), dict):
        data["auth"]["application_token"] = token
    if "APPLICATION_TOKEN" in data:
        data["APPLICATION_TOKEN"] = token
    return data


@st.composite
def mutated_pairs(draw: st.DrawFn, base: dict[str, Any]) -> list[tuple[str, str]]:
    """Bracket pairs of ``base`` with a few mutations: drops, odd values, odd keys, repeats."""
    pairs = flatten(base)
    for _ in range(draw(mutation_counts)):
        op = draw(st.sampled_from(["drop", "value", "key", "deepen", "repeat", "add"]))
        i = draw(st.integers(0, max(len(pairs) - 1, 0)))
        if not pairs:
            op = "add"
        if op == "drop":
            del pairs[i]
        elif op == "value":
            pairs[i] = (pairs[i][0], draw(values))
        elif op == "key":
            pairs[i] = (draw(keys), pairs[i][1])
        elif op == "deepen":
            pairs[i] = (pairs[i][0] + "[x]" * draw(st.integers(1, 10)), pairs[i][1])
        elif op == "repeat":
            pairs.insert(i, (pairs[i][0], draw(values)))
        else:
            pairs.insert(i, (draw(keys), draw(values)))
    return pairs


@st.composite
def mutated_json(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """``base`` as nested JSON with a few values replaced or removed, or any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    data = copy.deepcopy(base)
    for _ in range(draw(mutation_counts)):
        node: Any = data
        while isinstance(node, dict) and node and draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node)))]
            if not isinstance(child, dict):
                break
            node = child
        if not isinstance(node, dict):
            continue
        if node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()):
                del node[key]
                continue
        else:
            key = draw(keys)
        node[key] = draw(json_values)
    return data


@st.composite
def bodies(draw: st.DrawFn, bases: list[dict[str, Any]]) -> tuple[bytes, str]:
    """A request body and its content type: form, JSON or raw bytes, types sometimes wrong."""
    base = with_token(draw(st.sampled_from(bases)), draw(tokens))
    kind = draw(st.sampled_from(["form", "form", "form", "json", "json", "raw"]))
    wrong_type = draw(st.integers(0, 5)) == 0
    content_type = draw(st.sampled_from(CONTENT_TYPES)) if wrong_type else None
    if kind == "form":
        body = urlencode(draw(mutated_pairs(base))).encode()
        return body, content_type if content_type is not None else FORM
    if kind == "json":
        body = json.dumps(draw(mutated_json(base))).encode()
        return body, content_type if content_type is not None else JSON
    raw = draw(st.binary(max_size=600))
    ascii_type = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    return raw, draw(st.one_of(st.sampled_from(CONTENT_TYPES), ascii_type))


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    """The page POST's query (DOMAIN, PROTOCOL, LANG, APP_SID) mutated, or any query text."""
    if draw(st.integers(0, 3)) == 0:
        return quote(draw(st.text(max_size=60)), safe="=&[]%+;")
    return urlencode(draw(mutated_pairs(PAGE_QUERY)))


# --- harness ------------------------------------------------------------------------------

# What a job may fail with when the portal and OAuth server are unreachable; anything else
# (ValueError, OverflowError, KeyError…) means the input crashed the job.
EXPECTED_JOB_FAILURES = (BitrixError, RetryLater, SyncError)


class _JobCrashes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.crashes: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and not isinstance(exc, EXPECTED_JOB_FAILURES):
            self.crashes.append(exc)


@pytest.fixture
def job_crashes() -> Iterator[_JobCrashes]:
    handler = _JobCrashes()
    logger = logging.getLogger("huey")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def portal_app(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Flask:
    """The app with one known portal; REST retries do not sleep (the network is refused)."""
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt, rng: 0.0)
    with app.app_context():
        add_portal(db_session(), MEMBER_ID)
    return app


def reset_portal(app: Flask, installed: bool, status: PortalStatus) -> int:
    """Put the known portal back (an earlier case may have uninstalled or purged it)."""
    with app.app_context():
        session = db_session()
        portal = session.scalar(select(Portal).where(Portal.member_id == MEMBER_ID))
        if portal is None:
            portal = add_portal(session, MEMBER_ID)
        portal.application_token = APP_TOKEN
        portal.domain = "portal.bitrix24.com"
        portal.installed = installed
        portal.status = status
        session.commit()
        return portal.id


def check(response: Any, crashes: _JobCrashes, json_errors: bool) -> None:
    body = response.get_data()
    data = response.get_json(silent=True)
    outcome = data.get("error") or data.get("result") if isinstance(data, dict) else None
    event(f"{response.status_code} {outcome or ''}".strip())  # --hypothesis-show-statistics
    assert response.status_code < 500, body[:500]
    assert b"Traceback" not in body
    crashed, crashes.crashes = crashes.crashes, []  # per case, so that shrinking stays honest
    assert not crashed, repr(crashed[:3])
    if json_errors and response.status_code >= 400:
        assert isinstance(data, dict), body[:300]
        assert isinstance(data.get("error"), str) and data["error"]
        assert isinstance(data.get("error_description"), str)


portal_states = st.tuples(st.booleans(), st.sampled_from(list(PortalStatus)))

# --- the endpoints ------------------------------------------------------------------------


@FUZZ
@given(case=bodies(EVENTS), state=portal_states)
@example(case=(b"[" * 100_000, JSON), state=(True, PortalStatus.ACTIVE))  # RecursionError
@example(case=(b"0=x&1=y", FORM), state=(True, PortalStatus.ACTIVE))  # top level as a list
@example(case=(b'{"0": {}}', JSON), state=(True, PortalStatus.ACTIVE))
@example(  # expires beyond datetime's range crashed the install job
    case=(
        urlencode(flatten({**EVENTS[0], "auth": {**AUTH, "expires": "9" * 30}})).encode(),
        FORM,
    ),
    state=(True, PortalStatus.ACTIVE),
)
@example(  # user_id beyond the INTEGER column crashed the install job
    case=(
        urlencode(flatten({**EVENTS[0], "auth": {**AUTH, "user_id": "9" * 30}})).encode(),
        FORM,
    ),
    state=(True, PortalStatus.ACTIVE),
)
def test_events_never_fail(
    portal_app: Flask,
    client: FlaskClient,
    job_crashes: _JobCrashes,
    case: tuple[bytes, str],
    state: tuple[bool, PortalStatus],
) -> None:
    reset_portal(portal_app, *state)
    body, content_type = case
    response = client.post("/events", data=body, content_type=content_type)
    check(response, job_crashes, json_errors=True)


@st.composite
def robot_cases(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """The URL's robot code and a body; the body's ``code`` mostly matches the URL's."""
    code = draw(
        st.one_of(
            st.sampled_from(ROBOT_CODES),
            st.sampled_from(ROBOT_CODES),
            st.sampled_from(ROBOT_CODES),
            st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
        )
    )
    in_body = code if draw(st.integers(0, 5)) else draw(st.sampled_from(ROBOT_CODES))
    body, content_type = draw(bodies([{**ROBOT, "code": in_body}]))
    return code, body, content_type


def robot_case(**changes: Any) -> tuple[str, bytes, str]:
    return "send_email", urlencode(flatten({**ROBOT, **changes})).encode(), FORM


@FUZZ
@given(
    case=robot_cases(),
    event_token=st.text("0123456789abcdef.|", min_size=1, max_size=16),
    state=portal_states,
)
@example(  # a Unicode digit in document_id made int() fail
    case=robot_case(document_id=["crm", "C", "CONTACT_²"]),
    event_token="1",
    state=(True, PortalStatus.ACTIVE),
)
@example(  # an id beyond the INTEGER column
    case=robot_case(document_id=["crm", "C", "CONTACT_" + "9" * 30]),
    event_token="2",
    state=(True, PortalStatus.ACTIVE),
)
@example(  # a document id longer than its column (PostgreSQL refused it)
    case=robot_case(document_id=["crm", "C", "X" * 80 + "_1"]),
    event_token="3",
    state=(True, PortalStatus.ACTIVE),
)
@example(  # properties as a JSON string nested too deep for the parser
    case=("send_email", json.dumps({**ROBOT, "properties": "[" * 5000}).encode(), JSON),
    event_token="4",
    state=(True, PortalStatus.ACTIVE),
)
@example(  # NaN cannot be stored in a JSON column (PostgreSQL refused it)
    case=("send_email", json.dumps({**ROBOT, "properties": {"a": float("nan")}}).encode(), JSON),
    event_token="5",
    state=(True, PortalStatus.ACTIVE),
)
@example(  # NUL cannot be stored in a text column (PostgreSQL refused it)
    case=robot_case(workflow_id="wf\x00"),
    event_token="6",
    state=(True, PortalStatus.ACTIVE),
)
@example(case=("a/b", b"", FORM), event_token="7", state=(True, PortalStatus.ACTIVE))  # 404 JSON
def test_robot_calls_never_fail(
    portal_app: Flask,
    client: FlaskClient,
    job_crashes: _JobCrashes,
    case: tuple[str, bytes, str],
    event_token: str,
    state: tuple[bool, PortalStatus],
) -> None:
    reset_portal(portal_app, *state)
    code, body, content_type = case
    # A fresh event_token now and then, so that accepted calls are not all duplicates.
    body = body.replace(b"abc.def", quote(event_token).encode())
    response = client.post(f"/robots/{quote(code, safe='')}", data=body, content_type=content_type)
    check(response, job_crashes, json_errors=True)


@FUZZ
@given(
    path=st.sampled_from(PAGE_PATHS),
    query=query_strings(),
    case=bodies(
        [
            PAGE_BODY,
            {**PAGE_BODY, "PLACEMENT": "DEFAULT"},
            {**PAGE_BODY, "PLACEMENT": "DEFAULT", "PLACEMENT_OPTIONS": ROBOT_SETTINGS_OPTIONS},
        ]
    ),
    state=portal_states,
)
@example(  # a body whose only field is "0" was nested into a list, not a map
    path="/",
    query="",
    case=(b"0", FORM),
    state=(False, PortalStatus.ACTIVE),
)
@example(  # PLACEMENT_OPTIONS nested too deep for the JSON parser
    path="/placements/launch",
    query=urlencode(PAGE_QUERY),
    case=(urlencode({**PAGE_BODY, "PLACEMENT_OPTIONS": "[" * 5000}).encode(), FORM),
    state=(True, PortalStatus.ACTIVE),
)
def test_pages_never_fail(
    portal_app: Flask,
    client: FlaskClient,
    job_crashes: _JobCrashes,
    path: str,
    query: str,
    case: tuple[bytes, str],
    state: tuple[bool, PortalStatus],
) -> None:
    reset_portal(portal_app, *state)
    body, content_type = case
    response = client.post(path, query_string=query, data=body, content_type=content_type)
    check(response, job_crashes, json_errors=False)


@st.composite
def session_headers(draw: st.DrawFn, portal_id: int) -> tuple[dict[str, str], bool]:
    """An ``X-Session-Token`` header (none, garbage, minted, tampered) and whether it is a
    valid administrator's session for the known portal."""
    kind = draw(st.sampled_from(["none", "garbage", "valid", "valid", "tampered"]))
    if kind == "none":
        return {}, False
    if kind == "garbage":
        printable = st.characters(min_codepoint=33, max_codepoint=126)
        return {"X-Session-Token": draw(st.text(printable))}, False
    session = PortalSession(
        portal_id=draw(st.sampled_from([portal_id, portal_id + 1, 0, -1, 10**6])),
        member_id=draw(st.sampled_from([MEMBER_ID, "b" * 32, ""])),
        user_id=draw(st.integers(-1, 10)),
        is_admin=draw(st.booleans()),
        language=draw(st.sampled_from(["en", "ru"])),  # minted by us: normalized
    )
    token = issue_session(session)
    if kind == "tampered":
        i = draw(st.integers(0, len(token) - 1))
        token = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    admin = token == issue_session(session) and session.is_admin and session.portal_id == portal_id
    return {"X-Session-Token": token}, admin


SESSION_CALLS = [
    ("GET", "/api/session"),
    ("POST", "/api/registration/sync"),
    ("GET", "/api/settings"),
    ("POST", "/api/settings"),
    ("POST", "/api/sms/size"),
    ("GET", "/api/sms/outbox"),
]


def test_sms_size_with_a_json_array_is_not_a_500(portal_app: Flask, client: FlaskClient) -> None:
    """Regression: a JSON body that is not an object made ``.get`` fail (500)."""
    portal_id = reset_portal(portal_app, True, PortalStatus.ACTIVE)
    with portal_app.app_context():
        token = issue_session(PortalSession(portal_id, MEMBER_ID, 1, False, "en"))
    headers = {"X-Session-Token": token}
    response = client.post("/api/sms/size", json=[None], headers=headers)
    assert response.status_code == 200
    assert response.get_json()["characters"] == 0


SETTINGS_BODY = {
    "email_channel": "smtp",
    "smtp_host": "smtp.example.com",
    "smtp_port": 587,
    "smtp_username": "user",
    "smtp_password": "secret",
    "smtp_starttls": True,
    "smtp_from": "shop@example.com",
    "sms_provider": "smsru",
    "sms_credentials": {"api_id": "x"},
    "sms_max_length": 3,
}


@settings(FUZZ, max_examples=500)
@given(data=st.data(), state=portal_states)
def test_session_api_never_fails(
    portal_app: Flask,
    client: FlaskClient,
    job_crashes: _JobCrashes,
    data: st.DataObject,
    state: tuple[bool, PortalStatus],
) -> None:
    portal_id = reset_portal(portal_app, *state)
    with portal_app.app_context():
        headers, admin = data.draw(session_headers(portal_id))
    query = data.draw(st.one_of(st.just(""), query_strings(), st.just(f"member_id={MEMBER_ID}")))
    method, path = data.draw(st.sampled_from(SESSION_CALLS))
    if method == "GET":
        response = client.get(path, query_string=query, headers=headers)
    else:
        base = {"member_id": MEMBER_ID, "_session": "x", "text": "Hello"}
        body, content_type = data.draw(bodies([base, SETTINGS_BODY]))
        response = client.post(
            path, query_string=query, data=body, content_type=content_type, headers=headers
        )
    if admin and path == "/api/registration/sync" and response.status_code == 502:
        # The one deliberate 5xx: a verified administrator's sync could not reach Bitrix24.
        assert response.get_json()["error"] == "sync_incomplete"
        return
    check(response, job_crashes, json_errors=True)


def test_sync_with_unreachable_portal_is_a_handled_502(
    portal_app: Flask, client: FlaskClient
) -> None:
    """Regression: ``TransportError`` from ``sync_portal`` escaped as a 500 with a traceback log."""
    portal_id = reset_portal(portal_app, True, PortalStatus.ACTIVE)
    with portal_app.app_context():
        token = issue_session(PortalSession(portal_id, MEMBER_ID, 1, True, "en"))
    response = client.post("/api/registration/sync", headers={"X-Session-Token": token})
    assert response.status_code == 502
    assert response.get_json()["error"] == "sync_incomplete"
    assert "TRANSPORT_ERROR" in response.get_json()["error_description"]


# --- rejected calls are logged without secrets --------------------------------------------


def _rejections(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name == "marketapp.security" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/events", EVENTS[2]),
        ("/robots/send_email", ROBOT),
    ],
    ids=["uninstall", "robot"],
)
def test_rejected_call_is_logged_without_tokens(
    portal_app: Flask,
    client: FlaskClient,
    caplog: pytest.LogCaptureFixture,
    path: str,
    payload: dict[str, Any],
) -> None:
    caplog.set_level(logging.INFO)
    body = urlencode(flatten(with_token(payload, WRONG_TOKEN))).encode()
    response = client.post(path, data=body, content_type=FORM)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"

    (entry,) = _rejections(caplog)
    assert entry["member_id"] == MEMBER_ID
    assert "wrong application_token" in entry["reason"]
    assert entry["path"] == path
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    for secret in SECRETS:
        assert secret not in logged
    assert APP_TOKEN not in response.get_data(as_text=True)
    with portal_app.app_context():
        portal = db_session().scalar(select(Portal).where(Portal.member_id == MEMBER_ID))
        assert portal is not None and portal.status is PortalStatus.ACTIVE
