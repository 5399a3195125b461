"""Typed values of portal constants and scenario variables: string, integer, decimal, boolean,
date.

:func:`typed` reads a value (an admin's text, an expression's result, a stored form) as its
type's Python value, :func:`to_json` gives the form an enrollment's ``variables`` column keeps,
:func:`to_text` the form a constant's ``value`` column keeps. Empty (``None`` or ``""``) is a
value of every type. Numbers are bounded as expressions bound them; a decimal keeps 6 places.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Literal, get_args

from marketapp.scenarios import expressions as ex

ValueType = Literal["string", "integer", "decimal", "boolean", "date"]
VALUE_TYPES: Final[tuple[str, ...]] = get_args(ValueType)
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


def typed(kind: str, value: Any) -> Any:
    """``value`` as a ``kind`` value (``str``, ``int``, ``Decimal``, ``bool``, ``date``) or
    ``None`` when empty; :class:`expressions.ExpressionError` (position 1) when it is none."""
    if value is None or value == "":
        return None
    if kind == "string":
        text = ex.text_of(value)
        if len(text) > ex.MAX_TEXT:
            raise ex.ExpressionError("expr_text_too_long", 1, limit=ex.MAX_TEXT)
        return text
    if kind in ("integer", "decimal"):
        return _number(kind, value)
    if kind == "boolean":
        return _boolean(value)
    if kind == "date":
        return _date(value)
    raise ValueError(f"unknown value type {kind!r}")


def _number(kind: str, value: Any) -> int | Decimal:
    number = ex.as_number(value)
    rounded = number
    if int(number.as_tuple().exponent) < -ex.PLACES:  # 12.50 stays 12.50: the admin's scale
        rounded = number.quantize(Decimal(1).scaleb(-ex.PLACES), rounding=ROUND_HALF_UP)
    if kind == "decimal":
        return rounded
    if rounded != rounded.to_integral_value():
        raise ex.ExpressionError("expr_not_whole", 1, value=ex.text_of(value)[:40])
    return int(rounded)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = ex.text_of(value).strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise ex.ExpressionError("expr_not_boolean", 1, value=ex.text_of(value)[:40])


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = ex.text_of(value).strip()
    try:
        if len(text) > 32:  # no ISO date or date-time is longer
            raise ValueError(text)
        if len(text) > 10:  # a date-time: its date
            return datetime.fromisoformat(text).date()
        return date.fromisoformat(text)
    except ValueError:
        raise ex.ExpressionError("expr_not_date", 1, value=text[:40]) from None


def to_json(value: Any) -> Any:
    """A typed value as JSON keeps it: a decimal as its exact text (``"12.50"``), a date as ISO
    text, the rest as they are."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def to_text(value: Any) -> str:
    """A typed value as one line of text: ``12.50`` (its scale kept), ``true``, ``2026-03-08``,
    "" for empty."""
    if isinstance(value, Decimal):
        return format(value, "f")
    return ex.text_of(value)


def kind_in_expressions(kind: str) -> str:
    """What an expression sees a ``kind`` value as (:func:`expressions.kind_of`)."""
    return {"integer": "number", "decimal": "number", "boolean": "boolean", "string": "text"}.get(
        kind, "any"
    )
