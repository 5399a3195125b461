"""Send windows under a controlled clock (``at`` is always given): weekdays, spans across
midnight, whole days, DST spring-forward and fall-back in Moscow (no DST), Berlin and New York,
and the recipient's zone from a field or the phone number."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from marketapp.scenarios.definition import DefinitionError, requirements, validate_definition
from marketapp.scenarios.policies import SendWindow
from marketapp.scenarios.windows import (
    is_open,
    next_opening,
    recipient_zone,
    window_fields,
    window_for,
    window_problems,
)

MSK, BER, NYC = ZoneInfo("Europe/Moscow"), ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
ALL = [*WEEKDAYS, "sat", "sun"]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(zone: ZoneInfo, text: str, fold: int = 0) -> datetime:
    """A wall time in ``zone`` as the aware UTC instant the callers pass."""
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold).astimezone(UTC)


def window(days: list[str], start: str, end: str) -> SendWindow:
    return SendWindow.model_validate({"days": days, "start": start, "end": end})


# 2026: Mon 2 March; Fri 6 March; New York springs forward Sun 8 March, Berlin Sun 29 March;
# Berlin falls back Sun 25 October, New York Sun 1 November.
CASES: list[tuple[str, ZoneInfo, SendWindow, datetime, datetime]] = [
    # (what, zone, window, at, expected opening)
    (
        "inside",
        MSK,
        window(WEEKDAYS, "09:00", "21:00"),
        local(MSK, "2026-03-02 10:00"),
        utc("2026-03-02 07:00"),
    ),
    (
        "before the start",
        MSK,
        window(WEEKDAYS, "09:00", "21:00"),
        local(MSK, "2026-03-02 08:59"),
        utc("2026-03-02 06:00"),
    ),
    (
        "the end is closed",
        MSK,
        window(WEEKDAYS, "09:00", "21:00"),
        local(MSK, "2026-03-02 21:00"),
        utc("2026-03-03 06:00"),
    ),
    (
        "Friday night waits for Monday",
        MSK,
        window(WEEKDAYS, "09:00", "21:00"),
        local(MSK, "2026-03-06 22:00"),
        utc("2026-03-09 06:00"),
    ),
    (
        "Friday 22-02 is open on Saturday 01:00",
        MSK,
        window(["fri"], "22:00", "02:00"),
        local(MSK, "2026-03-07 01:00"),
        local(MSK, "2026-03-07 01:00"),
    ),
    (
        "Friday 22-02 closes on Saturday 02:00",
        MSK,
        window(["fri"], "22:00", "02:00"),
        local(MSK, "2026-03-07 02:00"),
        local(MSK, "2026-03-13 22:00"),
    ),
    (
        "Friday 01:00 is Thursday's night, not Friday's",
        MSK,
        window(["fri"], "22:00", "02:00"),
        local(MSK, "2026-03-06 01:00"),
        local(MSK, "2026-03-06 22:00"),
    ),
    (
        "Saturday 23:30 in a Saturday night window",
        MSK,
        window(["sat"], "22:00", "02:00"),
        local(MSK, "2026-03-07 23:30"),
        local(MSK, "2026-03-07 23:30"),
    ),
    (
        "a window up to midnight",
        MSK,
        window(["mon"], "18:00", "00:00"),
        local(MSK, "2026-03-02 23:59"),
        local(MSK, "2026-03-02 23:59"),
    ),
    (
        "end == start is the whole day: waits for Saturday",
        MSK,
        window(["sat", "sun"], "10:00", "10:00"),
        local(MSK, "2026-03-06 15:00"),
        local(MSK, "2026-03-07 00:00"),
    ),
    (
        "end == start is the whole day: Sunday 23:59",
        MSK,
        window(["sat", "sun"], "10:00", "10:00"),
        local(MSK, "2026-03-08 23:59"),
        local(MSK, "2026-03-08 23:59"),
    ),
    (
        "Moscow keeps its offset on Berlin's DST day",
        MSK,
        window(ALL, "09:00", "21:00"),
        utc("2026-03-29 05:00"),
        utc("2026-03-29 06:00"),
    ),
    # Berlin, spring forward: 02:00 CET -> 03:00 CEST on 29 March.
    (
        "Berlin: a start in the gap opens at 03:00 CEST",
        BER,
        window(["sun"], "02:30", "05:00"),
        utc("2026-03-28 12:00"),
        utc("2026-03-29 01:00"),
    ),
    (
        "Berlin: a span wholly in the gap does not open that day",
        BER,
        window(ALL, "02:00", "03:00"),
        utc("2026-03-29 00:30"),
        utc("2026-03-30 00:00"),
    ),
    (
        "Berlin: a night window ending in the gap is open at 01:30 CET",
        BER,
        window(ALL, "22:00", "02:00"),
        utc("2026-03-29 00:30"),
        utc("2026-03-29 00:30"),
    ),
    (
        "Berlin: ... and closed from 03:00 CEST",
        BER,
        window(ALL, "22:00", "02:00"),
        utc("2026-03-29 01:00"),
        local(BER, "2026-03-29 22:00"),
    ),
    (
        "Berlin: summer time after the change",
        BER,
        window(WEEKDAYS, "09:00", "18:00"),
        utc("2026-03-27 18:00"),
        utc("2026-03-30 07:00"),
    ),
    # Berlin, fall back: 03:00 CEST -> 02:00 CET on 25 October; 02:30 happens twice.
    (
        "Berlin: an ambiguous start is the first 02:30 (CEST)",
        BER,
        window(["sun"], "02:30", "05:00"),
        utc("2026-10-24 12:00"),
        utc("2026-10-25 00:30"),
    ),
    (
        "Berlin: the second 02:10 (CET) is inside",
        BER,
        window(["sun"], "02:30", "05:00"),
        utc("2026-10-25 01:10"),
        utc("2026-10-25 01:10"),
    ),
    (
        "Berlin: closes at 05:00 CET",
        BER,
        window(["sun"], "02:30", "05:00"),
        utc("2026-10-25 04:00"),
        local(BER, "2026-11-01 02:30"),
    ),
    # New York, spring forward on 8 March (02:00 EST -> 03:00 EDT), fall back on 1 November.
    (
        "New York: Friday evening waits for Monday 09:00 EDT",
        NYC,
        window(WEEKDAYS, "09:00", "17:00"),
        local(NYC, "2026-03-06 18:00"),
        utc("2026-03-09 13:00"),
    ),
    (
        "New York: a start in the gap opens at 03:00 EDT",
        NYC,
        window(["sun"], "02:30", "04:00"),
        utc("2026-03-07 12:00"),
        utc("2026-03-08 07:00"),
    ),
    (
        "New York: an ambiguous start is the first 01:30 (EDT)",
        NYC,
        window(["sun"], "01:30", "03:00"),
        utc("2026-10-31 12:00"),
        utc("2026-11-01 05:30"),
    ),
    (
        "New York: the second 01:45 (EST) is inside",
        NYC,
        window(["sun"], "01:30", "03:00"),
        local(NYC, "2026-11-01 01:45", fold=1),
        local(NYC, "2026-11-01 01:45", fold=1),
    ),
]


@pytest.mark.parametrize(("zone", "win", "at", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_next_opening(zone: ZoneInfo, win: SendWindow, at: datetime, expected: datetime) -> None:
    opening = next_opening(win, at, zone)
    assert opening == expected
    assert opening.tzinfo == UTC
    assert is_open(win, at, zone) == (opening == at)
    assert is_open(win, opening, zone)


def test_next_opening_takes_any_aware_time_and_refuses_naive() -> None:
    win = window(WEEKDAYS, "09:00", "21:00")
    plus5 = datetime(2026, 3, 2, 15, 0, tzinfo=timezone(timedelta(hours=5)))  # 10:00Z, 13:00 MSK
    assert next_opening(win, plus5, MSK) == utc("2026-03-02 10:00")
    with pytest.raises(ValueError, match="aware"):
        next_opening(win, datetime(2026, 3, 2, 10, 0), MSK)


def test_a_week_of_minutes_is_open_exactly_inside_the_window() -> None:
    """Every 10 minutes over a DST week in Berlin: open iff the local time is in the window."""
    win = window(["fri", "sat", "sun"], "22:00", "02:00")
    at = utc("2026-10-22 00:00")
    while at < utc("2026-10-29 00:00"):
        wall = at.astimezone(BER)
        owner = wall - timedelta(days=1) if wall.hour < 2 else wall
        inside = (wall.hour >= 22 or wall.hour < 2) and owner.strftime("%a").lower() in win.days
        assert is_open(win, at, BER) == inside, wall
        at += timedelta(minutes=10)


# -- the recipient's zone --------------------------------------------------------------------


def phones(*values: str) -> list[dict[str, str]]:
    return [{"ID": str(n), "VALUE_TYPE": "WORK", "VALUE": v} for n, v in enumerate(values, 1)]


RECIPIENT = SendWindow(zone="recipient", zone_field="UF_CRM_TZ")
ZONES: list[tuple[str, dict[str, Any], SendWindow, str]] = [
    (
        "portal zone ignores the record",
        {"UF_CRM_TZ": "America/New_York"},
        SendWindow(),
        "Europe/Berlin",
    ),
    (
        "from the field",
        {"UF_CRM_TZ": "America/New_York", "PHONE": phones("+74951234567")},
        RECIPIENT,
        "America/New_York",
    ),
    ("field trimmed", {"UF_CRM_TZ": " Asia/Tokyo "}, RECIPIENT, "Asia/Tokyo"),
    (
        "a bad name falls back to the phone",
        {"UF_CRM_TZ": "Mars/Olympus", "PHONE": phones("+74951234567")},
        RECIPIENT,
        "Europe/Moscow",
    ),
    ("a path is not a zone", {"UF_CRM_TZ": "../../../etc/passwd"}, RECIPIENT, "Europe/Berlin"),
    ("a list field: its first value", {"UF_CRM_TZ": ["Europe/Moscow"]}, RECIPIENT, "Europe/Moscow"),
    ("+7 495 is Moscow", {"PHONE": phones("+7 495 123-45-67")}, RECIPIENT, "Europe/Moscow"),
    (
        "8 495 with the default country",
        {"PHONE": phones("8 (495) 123-45-67")},
        RECIPIENT,
        "Europe/Moscow",
    ),
    ("+1 212 is New York", {"PHONE": phones("+1 212 555 1234")}, RECIPIENT, "America/New_York"),
    ("+49 30 is Berlin", {"PHONE": phones("+49 30 1234567")}, RECIPIENT, "Europe/Berlin"),
    (
        "the first number counts",
        {"PHONE": phones("+1 212 555 1234", "+74951234567")},
        RECIPIENT,
        "America/New_York",
    ),
    (
        "a Russian mobile spans 11 zones: the portal's",
        {"PHONE": phones("+7 916 123-45-67")},
        RECIPIENT,
        "Europe/Berlin",
    ),
    (
        "an unknown number: the portal's",
        {"PHONE": phones("+1 555 123 4567")},
        RECIPIENT,
        "Europe/Berlin",
    ),
    ("not a number: the portal's", {"PHONE": phones("call me")}, RECIPIENT, "Europe/Berlin"),
    ("no phone: the portal's", {}, RECIPIENT, "Europe/Berlin"),
    (
        "no field configured: the phone",
        {"PHONE": phones("+12125551234")},
        SendWindow(zone="recipient"),
        "America/New_York",
    ),
]


@pytest.mark.parametrize(("record", "win", "expected"), [z[1:] for z in ZONES],
                         ids=[z[0] for z in ZONES])  # fmt: skip
def test_recipient_zone(record: dict[str, Any], win: SendWindow, expected: str) -> None:
    assert str(recipient_zone(record, win, BER, "RU")) == expected


def test_a_window_in_the_recipients_zone() -> None:
    """Moscow portal, 09:00-21:00 for the recipient: a New York number waits for 09:00 EDT."""
    win = SendWindow(zone="recipient")
    record = {"PHONE": phones("+1 212 555 1234")}
    at = local(MSK, "2026-03-09 12:00")  # 05:00 EDT
    zone = recipient_zone(record, win, MSK, "RU")
    assert next_opening(win, at, zone) == local(NYC, "2026-03-09 09:00")
    assert next_opening(win, at, recipient_zone({}, win, MSK, "RU")) == at


def test_window_fields_and_window_for() -> None:
    assert window_fields(None) == set() == window_fields(SendWindow())
    assert window_fields(RECIPIENT) == {"PHONE", "UF_CRM_TZ"}
    own = window(["mon"], "10:00", "11:00")
    assert window_for(own, {"start": "08:00"}) is own
    assert window_for(None, {"days": ["sat"], "start": "08:00", "end": "12:00"}) == window(
        ["sat"], "08:00", "12:00"
    )
    assert window_for(None, None) is None
    assert window_for(None, {"start": "8am"}) is None  # stored before a rule: no window


# -- checks ---------------------------------------------------------------------------------

PROBLEMS = [
    ({"start": "9:00"}, [("start", "Use the HH:MM format.")]),
    ({"end": "24:00"}, [("end", "Use the HH:MM format.")]),
    (
        {"start": "12:60", "end": "x"},
        [("start", "Use the HH:MM format."), ("end", "Use the HH:MM format.")],
    ),
    ({"days": ["mon", "tue", "mon"]}, [("days[2]", '"mon" is repeated.')]),
    ({"zone": "recipient", "zone_field": "uf_crm_tz"}, [("zone_field", "Invalid format.")]),
    ({"zone": "recipient", "zone_field": "UF_CRM_TZ"}, []),
    ({"start": "22:00", "end": "02:00"}, []),
]


@pytest.mark.parametrize(("data", "expected"), PROBLEMS)
def test_window_problems(data: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert window_problems(SendWindow.model_validate(data)) == expected


def test_window_problems_in_russian() -> None:
    assert window_problems(SendWindow(start="9"), "ru") == [
        ("start", "Укажите время в формате ЧЧ:ММ.")
    ]


def definition(window: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": 1,
        "key": "windowed",
        "name": {"en": "W", "ru": "W"},
        "description": {"en": "W", "ru": "W"},
        "entity_types": ["CONTACT"],
        "steps": [{"type": "send_sms", "text": "Hi"}],
        "policies": {"window": window},
    }


def test_the_definition_checker_reports_window_problems_with_their_path() -> None:
    bad = definition({"start": "25:00", "days": ["mon", "mon"]})
    with pytest.raises(DefinitionError) as caught:
        validate_definition(bad)
    paths = {p.path for p in caught.value.problems}
    assert paths == {"policies.window.start", "policies.window.days[1]"}
    recipient = definition({"zone": "recipient", "zone_field": "UF_CRM_TZ"})
    with pytest.raises(DefinitionError) as caught:
        validate_definition(recipient, known_fields={"CONTACT": {"PHONE", "NAME"}})
    assert [p.path for p in caught.value.problems] == ["policies.window.zone_field"]
    ok = validate_definition(recipient, known_fields={"CONTACT": {"PHONE", "UF_CRM_TZ"}})
    assert ok.policies.window is not None and ok.policies.window.zone_field == "UF_CRM_TZ"
    # A run and a preview read what the recipient's zone needs.
    assert {"PHONE", "UF_CRM_TZ"} <= requirements(ok).fields["CONTACT"]
