"""Portal constants: values an admin sets once and templates read as ``const.<code>``."""

from __future__ import annotations

import re

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from marketapp.models import Portal, PortalConstant

CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # a template attribute name
MAX_VALUE = 2_000
# Line breaks and tabs are fine in a signature; NUL and the rest are not (PostgreSQL refuses NUL).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class ConstantError(ValueError):
    pass


def list_constants(session: Session, portal: Portal) -> list[PortalConstant]:
    query = select(PortalConstant).where(PortalConstant.portal_id == portal.id)
    return list(session.scalars(query.order_by(PortalConstant.code)))


def constant_values(session: Session, portal: Portal) -> dict[str, str]:
    """``code → value``: the ``const`` variable of the template context."""
    return {c.code: c.value for c in list_constants(session, portal)}


def set_constant(
    session: Session, portal: Portal, code: str, value: str, label: str = ""
) -> PortalConstant:
    """Create or change a constant (flushed; the caller commits)."""
    if not CODE.match(code):
        raise ConstantError(
            _("A constant's code is lowercase Latin letters, digits and _, starting with a letter.")
        )
    if len(value) > MAX_VALUE or len(label) > 255:
        raise ConstantError(_("A constant's value is at most 2000 characters, its label 255."))
    if _CONTROL.search(value) or _CONTROL.search(label):
        raise ConstantError(_("A constant must not contain control characters."))
    row = _find(session, portal, code)
    if row is None:
        row = PortalConstant(portal_id=portal.id, code=code)
        session.add(row)
    row.value, row.label = value, label
    session.flush()
    return row


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
