"""Frequency caps on the real database under a controlled clock (``at`` is always given):
rolling periods, several caps on a channel, a send recorded twice is one touch, other
records, channels and portals do not count, and 2,500 records are answered in one query."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from marketapp.actions.base import sent, skipped
from marketapp.caps import Cap, Sent, caps_for, record_touches, room, sent_messages
from marketapp.channel_settings import channel_settings
from marketapp.models import Touch
from tests.support import add_portal

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SMS_DAY = Cap(channel="sms", count=1, period="day")
EMAIL_WEEK = Cap(channel="email", count=3, period="week")
EMAIL_MONTH = Cap(channel="email", count=5, period="month")


def touch(db: Session, portal_id: int, channel: str, entity_id: int, at: datetime) -> None:
    key = f"k:{channel}:{entity_id}:{at.isoformat()}"
    record_touches(db, portal_id, [Sent(key, "CONTACT", entity_id, channel)], at)  # type: ignore[arg-type]


H = timedelta(hours=1)
D = timedelta(days=1)
# (what, caps, touches of CONTACT 1 as (channel, offset from T0), asked at offset, expected)
CASES: list[tuple[str, list[Cap], list[tuple[str, timedelta]], timedelta, timedelta | None]] = [
    ("no touches", [SMS_DAY], [], 0 * H, None),
    ("1 SMS a day: one an hour ago", [SMS_DAY], [("sms", 0 * H)], 1 * H, 24 * H),
    ("1 SMS a day: 24 h later there is room", [SMS_DAY], [("sms", 0 * H)], 24 * H, None),
    (
        "rolling, not calendar: 23:59 then 00:01",
        [SMS_DAY],
        [("sms", 14 * H + 59 * H / 60)],
        15 * H + H / 60,
        38 * H + 59 * H / 60,
    ),
    ("an e-mail does not count for SMS", [SMS_DAY], [("email", 0 * H)], 1 * H, None),
    (
        "3 e-mails a week: two leave room",
        [EMAIL_WEEK],
        [("email", 0 * D), ("email", 1 * D)],
        2 * D,
        None,
    ),
    (
        "3 e-mails a week: the third fills it until the first is 7 days old",
        [EMAIL_WEEK],
        [("email", 0 * D), ("email", 1 * D), ("email", 2 * D)],
        3 * D,
        7 * D,
    ),
    (
        "4 in the week (a robot is never held): the second must age out",
        [EMAIL_WEEK],
        [("email", 0 * D), ("email", 1 * D), ("email", 2 * D), ("email", 3 * D)],
        4 * D,
        8 * D,
    ),
    (
        "older than the period does not count",
        [EMAIL_WEEK],
        [("email", -8 * D), ("email", 0 * D), ("email", 1 * D)],
        2 * D,
        None,
    ),
    (
        "the stricter of two caps wins",
        [EMAIL_WEEK, EMAIL_MONTH],
        [("email", n * 7 * D / 2) for n in range(5)],
        15 * D,
        30 * D,
    ),
    ("a cap of another channel is not applied", [SMS_DAY], [("email", 0 * D)] * 1, 1 * H, None),
]


@pytest.mark.parametrize(("caps", "touches", "asked", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_room(
    db: Session,
    caps: list[Cap],
    touches: list[tuple[str, timedelta]],
    asked: timedelta,
    expected: timedelta | None,
) -> None:
    portal = add_portal(db)
    for channel, offset in touches:
        touch(db, portal.id, channel, 1, T0 + offset)
    db.commit()
    channel = caps[0].channel
    got = room(db, portal.id, channel, [("CONTACT", 1), ("CONTACT", 2)], T0 + asked, caps)
    assert got[("CONTACT", 1)] == (None if expected is None else T0 + expected)
    assert got[("CONTACT", 2)] is None  # another record is not touched
    if expected is not None:  # at the moment it names, there is room
        later = room(db, portal.id, channel, [("CONTACT", 1)], T0 + expected, caps)
        assert later[("CONTACT", 1)] is None


def test_no_caps_or_no_records_ask_nothing(db: Session) -> None:
    portal = add_portal(db)
    assert room(db, portal.id, "sms", [("CONTACT", 1)], T0, []) == {("CONTACT", 1): None}
    assert room(db, portal.id, "sms", [("CONTACT", 1)], T0, [EMAIL_WEEK]) == {("CONTACT", 1): None}
    assert room(db, portal.id, "sms", [], T0, [SMS_DAY]) == {}


def test_a_send_recorded_twice_is_one_touch(db: Session) -> None:
    portal = add_portal(db)
    once = Sent("robot:7", "CONTACT", 1, "sms")
    record_touches(db, portal.id, [once, once], T0)
    db.commit()
    record_touches(db, portal.id, [once], T0 + H)  # a retried call reports it again
    db.commit()
    rows = db.scalars(select(Touch)).all()
    assert [(t.key, t.channel, t.entity_id) for t in rows] == [("robot:7", "sms", 1)]
    assert rows[0].at.replace(tzinfo=UTC) == T0


def test_touches_are_per_portal_and_entity_type(db: Session) -> None:
    one, other = add_portal(db), add_portal(db, member_id="b" * 32)
    touch(db, one.id, "sms", 1, T0)
    record_touches(db, one.id, [Sent("deal", "DEAL", 5, "sms")], T0)
    db.commit()
    refs = [("CONTACT", 1), ("DEAL", 1), ("DEAL", 5)]
    assert room(db, other.id, "sms", refs, T0 + H, [SMS_DAY]) == dict.fromkeys(refs)
    mine = room(db, one.id, "sms", refs, T0 + H, [SMS_DAY])
    assert mine == {("CONTACT", 1): T0 + D, ("DEAL", 1): None, ("DEAL", 5): T0 + D}


@pytest.fixture
def queries(db: Session) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = db.get_bind()

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def test_room_for_2500_records_is_one_query(db: Session, queries: list[str]) -> None:
    portal = add_portal(db)
    rows = [Sent(f"k{i}", "CONTACT", i, "sms") for i in range(1, 2501, 2)]  # every other one
    record_touches(db, portal.id, rows, T0)
    db.commit()
    refs = [("CONTACT", i) for i in range(1, 2501)]
    queries.clear()
    got = room(db, portal.id, "sms", refs, T0 + H, [SMS_DAY])
    assert len(queries) == 1
    assert len(got) == 2500
    assert {r for r, when in got.items() if when == T0 + D} == {
        ("CONTACT", i) for i in range(1, 2501, 2)
    }
    assert sum(1 for when in got.values() if when is None) == 1250
    assert db.scalar(select(func.count()).select_from(Touch)) == 1250


def test_sent_messages_are_the_sent_emails_and_sms() -> None:
    codes = {
        "a": ("send_email", "CONTACT", 1),
        "b": ("send_sms", "LEAD", 2),
        "c": ("send_sms", "CONTACT", 3),
        "d": ("timeline_comment", "CONTACT", 4),
    }
    outcomes = {
        "a": sent("Sent."),
        "b": sent("Sent."),
        "c": skipped("no_phone", "No phone."),
        "d": sent("Done."),
    }
    assert sent_messages(codes, outcomes) == [
        Sent("a", "CONTACT", 1, "email"),
        Sent("b", "LEAD", 2, "sms"),
    ]


def test_caps_for_reads_the_settings(db: Session) -> None:
    portal = add_portal(db)
    row = channel_settings(db, portal)
    assert caps_for(row) == []
    row.caps = [{"channel": "sms", "count": 1, "period": "day"}, {"channel": "fax", "count": 1}]
    assert caps_for(row) == [SMS_DAY]  # a stored entry that no longer reads is no cap
