"""Portal constants: values an admin sets once and templates read as ``const.<code>``.

Each has a type (``string``, ``integer``, ``decimal``, ``boolean``, ``date``: see
:mod:`marketapp.scenarios.typed`); a value is checked against it when set and kept as its
canonical text (``1500.50``, ``true``, ``2026-03-08``). Templates, conditions and expressions
read it typed: a decimal constant compares and computes as a number.
"""

from __future__ import annotations

import re
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from marketapp.models import Portal, PortalConstant
from marketapp.scenarios import typed
from marketapp.scenarios.expressions import ExpressionError

CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")  # a template attribute name
MAX_VALUE = 2_000
# Line breaks and tabs are fine in a signature; NUL and the rest are not (PostgreSQL refuses NUL).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class ConstantError(ValueError):
    pass


def list_constants(session: Session, portal: Portal) -> list[PortalConstant]:
    query = select(PortalConstant).where(PortalConstant.portal_id == portal.id)
    return list(session.scalars(query.order_by(PortalConstant.code)))


def constant_values(session: Session, portal: Portal) -> dict[str, Any]:
    """``code → typed value`` (``str``, ``int``, ``Decimal``, ``bool``, ``date``; ``None`` for
    an empty one that is not text): the ``const`` of templates, conditions and expressions."""
    return {c.code: typed_value(c) for c in list_constants(session, portal)}


def typed_value(row: PortalConstant) -> Any:
    if row.type == "string":
        return row.value
    try:
        return typed.typed(row.type, row.value)
    except (ExpressionError, ValueError):  # a row edited by hand: its text, not a crash
        return row.value


def set_constant(
    session: Session,
    portal: Portal,
    code: str,
    value: str,
    label: str = "",
    kind: str | None = None,
) -> PortalConstant:
    """Create or change a constant (flushed; the caller commits). ``kind`` is its type; ``None``
    keeps the type it has (``string`` for a new one). The value must be one of that type."""
    if not CODE.match(code):
        raise ConstantError(
            _("A constant's code is lowercase Latin letters, digits and _, starting with a letter.")
        )
    if len(value) > MAX_VALUE or len(label) > 255:
        raise ConstantError(_("A constant's value is at most 2000 characters, its label 255."))
    if _CONTROL.search(value) or _CONTROL.search(label):
        raise ConstantError(_("A constant must not contain control characters."))
    row = _find(session, portal, code)
    kind = kind or (row.type if row is not None else "string")
    text = canonical_value(kind, value)
    if row is None:
        row = PortalConstant(portal_id=portal.id, code=code)
        session.add(row)
    row.type, row.value, row.label = kind, text, label
    session.flush()
    return row


def canonical_value(kind: str, value: str) -> str:
    """``value`` as a ``kind`` constant keeps it; :class:`ConstantError` when it is none."""
    if kind not in typed.VALUE_TYPES:
        raise ConstantError(
            _("A constant's type is one of: %(types)s.", types=", ".join(typed.VALUE_TYPES))
        )
    if kind == "string":
        return value  # text as the admin wrote it, spaces included
    try:
        return typed.to_text(typed.typed(kind, value))
    except ExpressionError as exc:
        raise ConstantError(_bad_value(kind, value, exc)) from None


def _bad_value(kind: str, value: str, exc: ExpressionError) -> str:
    shown = value if len(value) <= 40 else value[:40] + "…"
    text: str
    if exc.code == "expr_out_of_range":
        text = _("%(value)s is out of range: at most 10^15 in size.", value=shown)
    elif kind == "integer":
        text = _("An integer constant takes a whole number such as 42, not %(value)s.", value=shown)
    elif kind == "decimal":
        text = _(
            "A decimal constant takes a number such as 1500 or 12.5 (a dot before the decimals), "
            "not %(value)s.",
            value=shown,
        )
    elif kind == "boolean":
        text = _(
            "A boolean constant takes true or false (yes/no, 1/0), not %(value)s.", value=shown
        )
    else:
        text = _(
            "A date constant takes a date as YYYY-MM-DD, such as 2026-03-08, not %(value)s.",
            value=shown,
        )
    return text


def delete_constant(session: Session, portal: Portal, code: str) -> bool:
    row = _find(session, portal, code)
    if row is not None:
        session.delete(row)
        session.flush()
    return row is not None


def _find(session: Session, portal: Portal, code: str) -> PortalConstant | None:
    query = select(PortalConstant).where(
        PortalConstant.portal_id == portal.id, PortalConstant.code == code
    )
    return session.scalar(query)
