"""Frequency caps: at most N e-mails or SMS per record per period, across every scenario and robot.

Every message that went out (an outcome ``sent`` of ``send_email``/``send_sms``, from a robot or
a scenario) is a *touch*, keyed by its ledger key so a send reported twice is one touch.
:func:`room` answers, for many records at once, whether another message may go now and if not,
from when.

Periods are rolling, not calendar: "1 SMS a day" means no two SMS within 24 hours, "a week"
7 days, "a month" 30 days. A rolling window needs no time zone, treats a record the same
whatever hour it first heard from us, and cannot be gamed at midnight (two messages at 23:59
and 00:01 of a calendar day).

Robots count towards caps but are never held by them: a robot is an automation rule the admin
set deliberately, usually transactional (a receipt, an order status), and Bitrix24 waits for
its answer. Scenarios consult :func:`room` (unless marked transactional) and wait or skip.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from marketapp.models import ChannelSettings, Touch

Channel = Literal["email", "sms"]
Period = Literal["day", "week", "month"]
PERIODS: dict[str, timedelta] = {
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
}
# The action codes whose sends are touches, and their channel.
CHANNEL_OF: dict[str, Channel] = {"send_email": "email", "send_sms": "sms"}
Ref = tuple[str, int]  # (entity type, entity id)
# Records per ``IN (...)``: one query for a 2,500-record group, within every parameter limit.
_IDS_PER_QUERY = 5_000


class Cap(BaseModel):
    """At most ``count`` messages of ``channel`` per record in any rolling ``period``."""

    model_config = ConfigDict(extra="forbid")
    channel: Channel
    count: int = Field(ge=1, le=1000)
    period: Period


@dataclass(frozen=True)
class Sent:
    """A message that went out: its ledger key, record and channel."""

    key: str
    entity_type: str
    entity_id: int
    channel: Channel


def caps_for(settings: ChannelSettings) -> list[Cap]:
    """The portal's caps (validated at save; an entry that no longer reads as a cap is none)."""
    caps: list[Cap] = []
    for raw in settings.caps or []:
        try:
            caps.append(Cap.model_validate(raw))
        except ValidationError:
            continue
    return caps


def record_touches(session: Session, portal_id: int, sent: Iterable[Sent], at: datetime) -> None:
    """One touch per message at ``at``; a key already recorded is left as it is (no commit)."""
    rows = [
        {
            "portal_id": portal_id,
            "key": s.key,
            "entity_type": s.entity_type,
            "entity_id": s.entity_id,
            "channel": s.channel,
            "at": at.astimezone(UTC),
        }
        for s in {s.key: s for s in sent}.values()
    ]
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Touch).on_conflict_do_nothing(index_elements=["portal_id", "key"])
    session.execute(stmt, rows)


def room(
    session: Session,
    portal_id: int,
    channel: str,
    refs: Sequence[Ref],
    at: datetime,
    caps: Sequence[Cap],
) -> dict[Ref, datetime | None]:
    """For each record: ``None`` if a ``channel`` message may go at ``at``, else the earliest
    moment (UTC) every cap on the channel has room again. One query per entity type for up to
    5,000 records."""
    mine = [c for c in caps if c.channel == channel]
    answer: dict[Ref, datetime | None] = dict.fromkeys(refs)
    if not mine or not refs:
        return answer
    moment = at.astimezone(UTC)
    since = moment - max(PERIODS[c.period] for c in mine)
    history = _touches(session, portal_id, channel, refs, since)
    for ref in answer:
        answer[ref] = _next_room(history.get(ref, []), mine, moment)
    return answer


def _touches(
    session: Session, portal_id: int, channel: str, refs: Sequence[Ref], since: datetime
) -> dict[Ref, list[datetime]]:
    """The touch times after ``since`` of each record, oldest first."""
    ids: dict[str, list[int]] = defaultdict(list)
    for entity_type, entity_id in dict.fromkeys(refs):
        ids[entity_type].append(int(entity_id))
    found: dict[Ref, list[datetime]] = defaultdict(list)
    for entity_type, numbers in ids.items():
        for start in range(0, len(numbers), _IDS_PER_QUERY):
            query = (
                select(Touch.entity_id, Touch.at)
                .where(
                    Touch.portal_id == portal_id,
                    Touch.channel == channel,
                    Touch.entity_type == entity_type,
                    Touch.entity_id.in_(numbers[start : start + _IDS_PER_QUERY]),
                    Touch.at > since,
                )
                .order_by(Touch.at)
            )
            for entity_id, when in session.execute(query):
                found[(entity_type, int(entity_id))].append(_utc(when))
    return found


def _next_room(times: list[datetime], caps: Sequence[Cap], at: datetime) -> datetime | None:
    """The earliest moment from ``at`` with fewer than ``count`` touches in each cap's window
    ``(moment - period, moment]``; ``None`` if that is ``at`` itself."""
    earliest = at
    for cap in caps:
        period = PERIODS[cap.period]
        recent = [t for t in times if t > at - period]
        if len(recent) >= cap.count:
            # The window must slide past all but ``count - 1`` of them.
            earliest = max(earliest, recent[len(recent) - cap.count] + period)
    return None if earliest == at else earliest


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sent_messages(codes: dict[str, tuple[str, str, int]], outcomes: dict[str, Any]) -> list[Sent]:
    """The messages among ``outcomes`` that went out: ``codes`` maps each key to its action
    code and record; an outcome counts when its status is ``sent``."""
    found: list[Sent] = []
    for key, (code, entity_type, entity_id) in codes.items():
        channel = CHANNEL_OF.get(code)
        outcome = outcomes.get(key)
        if channel is not None and getattr(outcome, "status", "") == "sent":
            found.append(Sent(key, entity_type, int(entity_id), channel))
    return found
