"""Send windows: when a message may go out, in whose time zone. Pure functions, no clock.

A window is weekdays and a local time span (``"HH:MM"``). ``end`` before ``start`` spans
midnight, and the part after midnight belongs to the day it started on (a Friday 22:00–02:00
window is open on Saturday at 01:00, not on Sunday at 01:00). ``end == start`` is the whole of
each listed day. Local times are read in a ``zoneinfo`` zone, so a window is right across DST:
a start that does not exist that day (the clock springs forward over it) opens at the first
minute that exists after it; a time that happens twice (the clock falls back) is its first
occurrence.

The recipient's zone comes from a CRM field holding an IANA name, else from the first phone
number (``phonenumbers`` knows the zones of number ranges), else it is the portal's. A number
whose range spans several zones (a Russian or a US toll-free mobile) says nothing reliable, so
the portal's zone is used for it; only a number of a single zone (+7 495 is Moscow, +1 212 New
York) moves the window.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones

from marketapp.scenarios import steps as st
from marketapp.scenarios.messages import message
from marketapp.scenarios.policies import SendWindow

# ``\Z``, not ``$``: ``$`` also matches before a final newline ("09:00\n").
_HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d\Z")
_ZONE_FIELD = re.compile(r"^[A-Z][A-Z0-9_]{0,63}\Z")
_UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers answers for a number it cannot place
# Longest run of wall-clock minutes that ever did not exist (Samoa skipped 30 Dec 2011).
_MAX_GAP = timedelta(hours=48)


# -- when the window opens -----------------------------------------------------------------


def next_opening(window: SendWindow, at: datetime, zone: tzinfo) -> datetime:
    """``at`` (aware) if the window is open then, else the next moment it opens; aware UTC."""
    if at.tzinfo is None:
        raise ValueError("next_opening needs an aware datetime")
    moment = at.astimezone(UTC)
    for opens, closes in _spans(window, moment.astimezone(zone).date(), zone):
        if closes <= moment:
            continue
        return max(opens, moment)
    raise ValueError("the send window has no day")  # SendWindow requires at least one


def is_open(window: SendWindow, at: datetime, zone: tzinfo) -> bool:
    """Whether a message may go out at ``at``."""
    return next_opening(window, at, zone) == at.astimezone(UTC)


def _spans(window: SendWindow, first: date, zone: tzinfo) -> Iterator[tuple[datetime, datetime]]:
    """The window's open spans (UTC) in time order, from the one that started the day before
    ``first`` (it may still be open after midnight) to a week and more after it."""
    start, end = _clock(window.start), _clock(window.end)
    days = {st.WEEKDAYS.index(d) for d in window.days}
    for n in range(-1, 9):
        day = first + timedelta(days=n)
        if day.weekday() not in days:
            continue
        if start == end:  # the whole day
            opens, closes = _instant(day, time(0, 0), zone), _instant(day, time(0, 0), zone, 1)
        else:
            opens = _instant(day, start, zone)
            closes = _instant(day, end, zone, 1 if end < start else 0)
        if opens < closes:  # a span wholly inside a spring-forward gap never opens
            yield opens, closes


def _instant(day: date, clock: time, zone: tzinfo, add_days: int = 0) -> datetime:
    """The UTC instant of a local wall time: a time that does not exist is the first existing
    minute after it, a time that happens twice its first occurrence (``fold=0``)."""
    wall = datetime.combine(day + timedelta(days=add_days), clock)
    limit = wall + _MAX_GAP
    while wall < limit:
        local = wall.replace(tzinfo=zone, fold=0)
        instant = local.astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            return instant
        wall += timedelta(minutes=1)
    raise ValueError(f"no existing time near {wall:%Y-%m-%d %H:%M} in {zone}")


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


# -- whose time zone -----------------------------------------------------------------------


def recipient_zone(
    record: Mapping[str, Any], window: SendWindow, portal_zone: tzinfo, default_country: str
) -> tzinfo:
    """The zone ``window`` is read in for ``record``: the portal's, or the recipient's (a valid
    IANA name in ``record[window.zone_field]``, else the zone of the first phone number when
    it has exactly one, else the portal's)."""
    if window.zone != "recipient":
        return portal_zone
    if window.zone_field:
        named = zone_named(record.get(window.zone_field))
        if named is not None:
            return named
    return phone_zone(record.get("PHONE"), default_country) or portal_zone


def zone_named(value: Any) -> ZoneInfo | None:
    """``value`` as an IANA zone (a multiple field: its first value); ``None`` if it is not one.
    CRM values are anyone's input: a path or a made-up name is simply not a zone."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("VALUE")
    if not isinstance(value, str):
        return None
    name = value.strip()
    if not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def phone_zone(phones: Any, default_country: str) -> ZoneInfo | None:
    """The zone of the first phone number (``PHONE`` as Bitrix24 returns it: a list of
    ``{"VALUE": …}``) when its number range lies in exactly one zone."""
    raw = _first_phone(phones)
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, (default_country or "RU").upper())
    except phonenumbers.NumberParseException:
        return None
    zones = [z for z in phone_zones.time_zones_for_number(number) if z != _UNKNOWN_ZONE]
    if len(zones) != 1:
        return None
    return zone_named(zones[0])


def _first_phone(phones: Any) -> str:
    if isinstance(phones, list):
        for item in phones:
            value = item.get("VALUE") if isinstance(item, dict) else item
            if isinstance(value, str) and value.strip():
                return value.strip()[:64]
        return ""
    return phones.strip()[:64] if isinstance(phones, str) else ""


def window_fields(window: SendWindow | None, entity_type: str = "CONTACT") -> set[str]:
    """The record fields :func:`recipient_zone` reads (the engine adds them to its read); a
    deal has no phone of its own."""
    if window is None or window.zone != "recipient":
        return set()
    fields = {window.zone_field} if window.zone_field else set()
    return fields if entity_type == "DEAL" else fields | {"PHONE"}


def window_for(scenario: SendWindow | None, portal_default: Any) -> SendWindow | None:
    """The window that applies: the scenario's own, else the portal's default (settings JSON,
    validated when saved; a stored value that no longer reads as a window is no window)."""
    if scenario is not None:
        return scenario
    if not isinstance(portal_default, dict):
        return None
    try:
        window = SendWindow.model_validate(portal_default)
    except ValueError:
        return None
    return None if window_problems(window) else window


# -- checks --------------------------------------------------------------------------------


def window_problems(window: SendWindow, language: str = "en") -> list[tuple[str, str]]:
    """What is wrong with ``window``, as (path suffix, message in ``language``) pairs, for the
    definition checker (``policies.window.<suffix>``) and the settings form."""
    problems: list[tuple[str, str]] = []
    for name in ("start", "end"):
        if not _HHMM.match(getattr(window, name)):
            problems.append((name, message(language, "time_format")))
    for n, day in enumerate(window.days):
        if day in window.days[:n]:
            problems.append((f"days[{n}]", message(language, "duplicate", value=day)))
    if window.zone_field is not None and not _ZONE_FIELD.match(window.zone_field):
        problems.append(("zone_field", message(language, "pattern")))
    return problems
