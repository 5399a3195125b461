"""Inbound payloads written exactly as the platform doc prints them, plus malformed ones."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from marketapp.bitrix import payloads
from marketapp.bitrix.payloads import (
    AppInstallEvent,
    AppUninstallEvent,
    AppUpdateEvent,
    Event,
    PayloadError,
    decode_body,
    nest,
    parse_event,
    parse_placement,
    parse_robot_call,
)

FORM = "application/x-www-form-urlencoded"

AUTH = [
    ("auth[access_token]", "s6p6eclrvim6da22ft9ch94ekreb52lv"),
    ("auth[expires]", "1696530600"),
    ("auth[expires_in]", "3600"),
    ("auth[scope]", "crm,placement,bizproc"),
    ("auth[domain]", "portal.bitrix24.com"),
    ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
    ("auth[status]", "F"),
    ("auth[client_endpoint]", "https://portal.bitrix24.com/rest/"),
    ("auth[member_id]", "a223c6b3710f85df22e9377d6c4f7553"),
    ("auth[user_id]", "1"),
    ("auth[refresh_token]", "4s386p3q0tr8dy89xvmt96234v3dljg8"),
    ("auth[application_token]", "51856fefc120afa4b628cc82d3935cce"),
]

# doc §1.5
ONAPPINSTALL = [
    ("event", "ONAPPINSTALL"),
    ("event_handler_id", "12"),
    ("ts", "1696527000"),
    ("data[VERSION]", "1"),
    ("data[ACTIVE]", "Y"),
    ("data[INSTALLED]", "Y"),
    ("data[LANGUAGE_ID]", "en"),
    *AUTH,
]

# doc §1.7: no tokens at all
ONAPPUNINSTALL = [
    ("event", "ONAPPUNINSTALL"),
    ("ts", "1466439714"),
    ("data[LANGUAGE_ID]", "en"),
    ("data[CLEAN]", "1"),
    ("auth[domain]", "portal.bitrix24.com"),
    ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
    ("auth[client_endpoint]", "https://portal.bitrix24.com/rest/"),
    ("auth[member_id]", "a223c6b3710f85df22e9377d6c4f7553"),
    ("auth[application_token]", "51856fefc120afa4b628cc82d3935cce"),
]

# doc §4.3
ROBOT_CALL = [
    ("workflow_id", "66f0a1b2c3d4e5.12345678"),
    ("code", "send_msg"),
    ("document_id[0]", "crm"),
    ("document_id[1]", "CCrmDocumentContact"),
    ("document_id[2]", "CONTACT_42"),
    ("document_type[0]", "crm"),
    ("document_type[1]", "CCrmDocumentContact"),
    ("document_type[2]", "CONTACT"),
    ("event_token", "66f0a1b2c3d4e5.12345678|A12345_1_2_3|" + "a" * 32 + "." + "f" * 64),
    ("properties[text]", "Hello"),
    ("properties[channel]", "email"),
    ("use_subscription", "Y"),
    ("timeout_duration", "3600"),
    ("ts", "1700000000"),
    *AUTH,
]

# doc §1.3: query part and body part
PLACEMENT_QUERY = {
    "DOMAIN": "portal.bitrix24.com",
    "PROTOCOL": "1",
    "LANG": "en",
    "APP_SID": "dd8c" * 8,
}
PLACEMENT_BODY = {
    "AUTH_ID": "ahodg4h3dzcpk4iv2e35x3np1pdk1y8v",
    "AUTH_EXPIRES": "3600",
    "REFRESH_ID": "2lg086mxbbu2e8hs3rwqtrpoce5lsnwr",
    "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/",
    "APPLICATION_TOKEN": "ec1b20d2ef3a6bd81e3e4a4f8c2bb2b1",
    "APPLICATION_SCOPE": "crm,placement,bizproc",
    "member_id": "a223c6b3710f85df22e9377d6c4f7553",
    "status": "F",
    "PLACEMENT": "CRM_CONTACT_DETAIL_TAB",
    "PLACEMENT_OPTIONS": '{"ID":"42"}',
}


def test_nest_brackets_into_maps_and_lists() -> None:
    fields = nest(
        [
            ("data[FIELDS][ID]", "7"),
            ("document_id[0]", "crm"),
            ("document_id[1]", "CCrmDocumentDeal"),
            ("tags[]", "a"),
            ("tags[]", "b"),
            ("plain", ""),
        ]
    )
    assert fields == {
        "data": {"FIELDS": {"ID": "7"}},
        "document_id": ["crm", "CCrmDocumentDeal"],
        "tags": ["a", "b"],
        "plain": "",
    }


def test_onappinstall_form_body() -> None:
    event = parse_event(decode_body(FORM, urlencode(ONAPPINSTALL).encode()))
    assert isinstance(event, AppInstallEvent)
    assert event.data.version == 1 and event.data.active is True and event.data.installed
    assert event.event_handler_id == 12
    assert event.auth.member_id == "a223c6b3710f85df22e9377d6c4f7553"
    assert event.auth.scope == ("crm", "placement", "bizproc")
    assert event.auth.user_id == 1 and event.auth.expires == 1696530600
    assert event.auth.refresh_token == "4s386p3q0tr8dy89xvmt96234v3dljg8"
    assert "4s386p3q" not in repr(event) and "51856fef" not in repr(event)


def test_onappupdate_and_generic_events() -> None:
    update = parse_event(
        [
            ("event", "onappupdate"),
            ("ts", "1"),
            ("data[VERSION]", "3"),
            ("data[PREVIOUS_VERSION]", "2"),
            ("data[LANGUAGE_ID]", "de"),
            *AUTH,
        ]
    )
    assert isinstance(update, AppUpdateEvent)
    assert (update.data.version, update.data.previous_version) == (3, 2)
    other = parse_event(
        [("event", "ONCRMDEALUPDATE"), ("ts", "1"), ("data[FIELDS][ID]", "9"), *AUTH]
    )
    assert isinstance(other, Event) and other.data == {"FIELDS": {"ID": "9"}}


def test_onappuninstall_without_tokens() -> None:
    event = parse_event(ONAPPUNINSTALL)
    assert isinstance(event, AppUninstallEvent)
    assert event.data.clean is True
    assert event.auth.access_token is None and not event.auth.has_tokens


def test_scope_space_separated_and_json_body() -> None:
    body = {
        "event": "ONAPPUNINSTALL",
        "ts": 1,
        "data": {"CLEAN": 0},
        "auth": {**dict(nest(ONAPPUNINSTALL))["auth"], "scope": "crm bizproc"},
    }
    event = parse_event(decode_body("application/json", json.dumps(body).encode()))
    assert isinstance(event, AppUninstallEvent)
    assert event.data.clean is False and event.auth.scope == ("crm", "bizproc")


def test_robot_call() -> None:
    call = parse_robot_call(decode_body(FORM, urlencode(ROBOT_CALL).encode()))
    assert call.code == "send_msg"
    assert call.document_id == ("crm", "CCrmDocumentContact", "CONTACT_42")
    assert call.entity_id == 42
    assert call.properties == {"text": "Hello", "channel": "email"}
    assert call.use_subscription is True and call.timeout_duration == 3600
    assert call.auth.application_token == "51856fefc120afa4b628cc82d3935cce"


def test_robot_call_without_properties_or_tokens() -> None:
    fields = [(k, v) for k, v in ROBOT_CALL if not k.startswith("properties")]
    fields = [(k, v) for k, v in fields if k not in ("auth[access_token]", "auth[refresh_token]")]
    call = parse_robot_call(fields)
    assert call.properties == {} and call.auth.access_token is None


def test_placement_post_query_and_body() -> None:
    request = parse_placement({**PLACEMENT_QUERY, **PLACEMENT_BODY})
    assert request.domain == "portal.bitrix24.com" and request.protocol == 1
    assert request.placement == "CRM_CONTACT_DETAIL_TAB"
    assert request.placement_options == {"ID": "42"}
    assert request.scope == ("crm", "placement", "bizproc")
    assert "ahodg4h3" not in repr(request)


def test_placement_default_without_options() -> None:
    body = {k: v for k, v in PLACEMENT_BODY.items() if k != "PLACEMENT_OPTIONS"}
    request = parse_placement({**PLACEMENT_QUERY, **body, "PLACEMENT": "DEFAULT"})
    assert request.placement == "DEFAULT" and request.placement_options == {}


def test_request_fields_from_flask_request(app) -> None:  # type: ignore[no-untyped-def]
    with app.test_request_context(
        "/?" + urlencode(PLACEMENT_QUERY), method="POST", data=PLACEMENT_BODY
    ):
        from flask import request

        parsed = parse_placement(payloads.request_fields(request))
    assert parsed.member_id == PLACEMENT_BODY["member_id"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([(k, v) for k, v in ROBOT_CALL if k != "event_token"], "event_token: Field required"),
        (
            [(k, v) for k, v in ROBOT_CALL if k != "auth[member_id]"],
            "auth.member_id: Field required",
        ),
        ([*ROBOT_CALL[:-1]], "auth.application_token: Field required"),
        (
            [("ts", "x") if k == "ts" else (k, v) for k, v in ROBOT_CALL],
            "ts: Input should be a valid integer",
        ),
        (
            [
                ("timeout_duration", "-1") if k == "timeout_duration" else (k, v)
                for k, v in ROBOT_CALL
            ],
            "timeout_duration",
        ),
        ([(k, v) for k, v in ROBOT_CALL if k != "document_id[2]"], "document_id"),
        (
            [
                ("use_subscription", "maybe") if k == "use_subscription" else (k, v)
                for k, v in ROBOT_CALL
            ],
            "use_subscription: Value error, expected Y or N",
        ),
        (
            [
                ("auth[client_endpoint]", "javascript:x")
                if k == "auth[client_endpoint]"
                else (k, v)
                for k, v in ROBOT_CALL
            ],
            "auth.client_endpoint",
        ),
    ],
)
def test_malformed_robot_calls(fields: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_robot_call(fields)
    assert message in str(caught.value)
    # Values never appear in messages: they may be tokens.
    assert "51856fef" not in str(caught.value) and "s6p6ecl" not in str(caught.value)


def test_install_without_tokens_is_rejected() -> None:
    fields = [(k, v) for k, v in ONAPPINSTALL if k != "auth[refresh_token]"]
    with pytest.raises(PayloadError, match="refresh_token are required"):
        parse_event(fields)


def test_uninstall_missing_clean() -> None:
    with pytest.raises(PayloadError, match=r"data\.CLEAN: Field required"):
        parse_event([(k, v) for k, v in ONAPPUNINSTALL if k != "data[CLEAN]"])


def test_placement_options_must_be_json() -> None:
    with pytest.raises(PayloadError, match="PLACEMENT_OPTIONS"):
        parse_placement({**PLACEMENT_QUERY, **PLACEMENT_BODY, "PLACEMENT_OPTIONS": "{nope"})


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("a", "1"), ("a", "2")], "given twice"),
        ([("a", "1"), ("a[b]", "2")], "both a value and a map"),
        ([("a[b", "1")], "malformed field name"),
        ([("x" + "[a]" * 9, "1")], "nested deeper"),
        ([(f"k{i}", "v") for i in range(payloads.MAX_FIELDS + 1)], "too many fields"),
        ([("big", "x" * (payloads.MAX_VALUE_LENGTH + 1))], "longer than"),
        ([("k" * 300, "v")], "field name too long"),
    ],
)
def test_malformed_forms(pairs: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        nest(pairs)


def test_oversized_and_broken_bodies() -> None:
    with pytest.raises(PayloadError, match="body larger than"):
        decode_body(FORM, b"a=" + b"x" * payloads.MAX_BODY_BYTES)
    with pytest.raises(PayloadError, match="not valid JSON"):
        decode_body("application/json", b"{")
    with pytest.raises(PayloadError, match="must be an object"):
        decode_body("application/json", b"[1]")
    deep: dict[str, object] = {}
    node = deep
    for _ in range(20):
        node["a"] = {}
        node = node["a"]  # type: ignore[assignment]
    with pytest.raises(PayloadError, match="nested deeper"):
        decode_body("application/json", json.dumps(deep).encode())
    with pytest.raises(PayloadError, match="more than"):
        decode_body(FORM, "&".join(f"k{i}=v" for i in range(2000)).encode())
