"""Template filters for dates in the portal's language and for plurals.

``{{ deal.CLOSEDATE|date('long') }}`` → ``1 мая 2024 г.`` on a Russian portal, ``May 1, 2024``
on an English one. The language is the template context's ``portal.language`` (``en`` when the
context has no portal, as in robot templates). ``{{ n }} {{ n|plural('товар', 'товара',
'товаров') }}``: three forms follow the Russian rule, two forms (``'item', 'items'``) the
English one — the forms carry their language, so a text reads right on any portal.

The sandbox registers these filters and counts each call like any other filter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime, parse_pattern
from jinja2 import Undefined
from jinja2.runtime import Context
from jinja2.utils import pass_context

NAMED_FORMATS = ("short", "medium", "long", "full")
MAX_PATTERN = 40
LANGUAGES = ("ru", "en")


def check_format(fmt: str) -> None:
    """Raise ``ValueError`` unless ``fmt`` is a named format or a short CLDR pattern."""
    if fmt in NAMED_FORMATS:
        return
    if not fmt or len(fmt) > MAX_PATTERN:
        raise ValueError(f"unknown date format {fmt!r}")
    parse_pattern(fmt)


def _portal(context: Context) -> Mapping[str, Any]:
    portal = context.get("portal")
    return portal if isinstance(portal, Mapping) else {}


def _language(context: Context) -> str:
    language = str(_portal(context).get("language") or "en")[:2].lower()
    return language if language in LANGUAGES else "en"


def _timezone(context: Context) -> tzinfo | None:
    name = _portal(context).get("timezone")
    if not name:
        return None
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Europe"
        return None


def _parse(value: Any) -> date | datetime | None:
    if isinstance(value, datetime | date):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    # Bitrix24 writes date fields as midnight of the day, sometimes with an offset.
    return parsed.date() if len(text) == 10 else parsed


def _plain(text: str) -> str:
    """CLDR puts (narrow) no-break spaces in dates (``8 марта 2025 г.``, ``10:00 AM``): plain
    spaces keep an SMS in the GSM alphabet and texts comparable."""
    return str(text).replace("\u202f", " ").replace("\u00a0", " ")


def _dated(value: Any, format: str) -> date | datetime | str:  # noqa: A002
    """The parsed value, or the text to show when it is empty or not a date."""
    if value is None or isinstance(value, Undefined):
        return ""
    parsed = _parse(value)
    if parsed is None:
        return str(value)
    check_format(format)
    return parsed


@pass_context
def date_filter(context: Context, value: Any, format: str = "medium") -> str:  # noqa: A002
    """A date in the portal's language; text that is not a date is shown as it is."""
    parsed = _dated(value, format)
    if isinstance(parsed, str):
        return parsed
    day = parsed.date() if isinstance(parsed, datetime) else parsed
    return _plain(format_date(day, format=format, locale=_language(context)))


@pass_context
def datetime_filter(context: Context, value: Any, format: str = "medium") -> str:  # noqa: A002
    """A date and time in the portal's language and time zone (when the portal has one)."""
    parsed = _dated(value, format)
    if isinstance(parsed, str):
        return parsed
    if not isinstance(parsed, datetime):
        parsed = datetime(parsed.year, parsed.month, parsed.day)
    zone = _timezone(context) or parsed.tzinfo or UTC
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    # Babel would fall back to the server's local zone: always name one.
    return _plain(format_datetime(parsed, format=format, tzinfo=zone, locale=_language(context)))


def plural_form(number: Any, forms: tuple[str, ...]) -> str:
    """The form for ``number``: ``(one, other)`` English, ``(one, few, many)`` Russian."""
    if len(forms) not in (2, 3):
        raise ValueError("plural takes two forms (English) or three (Russian)")
    try:
        amount = abs(Decimal(str(number).strip().replace(",", ".") or "0"))
    except InvalidOperation:
        amount = Decimal(0)
    integral = amount == amount.to_integral_value()
    if len(forms) == 2:
        return forms[0] if amount == 1 else forms[1]
    if not integral:
        return forms[1]  # 1,5 товара: fractions take the "few" form
    n = int(amount)
    if n % 10 == 1 and n % 100 != 11:
        return forms[0]
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return forms[1]
    return forms[2]


def plural_filter(number: Any, *forms: Any) -> str:
    return plural_form(number, tuple(str(f) for f in forms))


FILTERS: dict[str, Callable[..., Any]] = {
    "date": date_filter,
    "datetime": datetime_filter,
    "plural": plural_filter,
}
