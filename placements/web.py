"""What every page API shares: the verified session and its portal, JSON bodies, tenant lookups.

``@page_api()`` resolves the page session (``X-Session`` header or form field) and its portal
and passes both to the view; ``@page_api(admin=True)`` also requires a portal administrator. A
session ends when its portal is uninstalled (the install epoch changes) or removed. Records are
looked up with :func:`tenant_get`, which always filters by the portal: another portal's id is a
404, exactly like an id that does not exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from flask import g, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from marketapp.db import db_session
from marketapp.errors import AppError
from marketapp.models import Portal, PortalStatus
from marketapp.security import PortalSession, reject, session_from_request

P = ParamSpec("P")
M = TypeVar("M")
View = Callable[Concatenate[PortalSession, Portal, P], ResponseReturnValue]


def page_api(
    admin: bool = False,
) -> Callable[[View[P]], Callable[P, ResponseReturnValue]]:
    """Call the view as ``view(session, portal, **route_args)`` once the session is verified."""

    def decorate(view: View[P]) -> Callable[P, ResponseReturnValue]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            session = current_session(admin=admin)
            return view(session, session_portal(session), *args, **kwargs)

        return wrapper

    return decorate


def current_session(admin: bool = False) -> PortalSession:
    """The verified page session; refuses other portals' ids and non-admins where required."""
    session = session_from_request()
    claimed = request.args.get("member_id") or request.form.get("member_id")
    if claimed and claimed != session.member_id:
        raise reject("session used for another portal", member_id=claimed, status=403)
    session_portal(session)  # an uninstall ends every session minted before it
    if admin and not session.is_admin:
        raise AppError(_("Only a portal administrator can do this."), status=403, code="forbidden")
    g.language = session.language
    return session


def session_portal(session: PortalSession) -> Portal:
    """The session's portal, unless it was removed or uninstalled since the session was minted.

    (A primary-key get: the second one in a request comes from the session's identity map.)
    """
    portal = db_session().get(Portal, session.portal_id)
    if portal is None or portal.member_id != session.member_id:
        raise reject("session for a removed portal", member_id=session.member_id)
    if portal.status is PortalStatus.UNINSTALLED or portal.session_epoch != session.epoch:
        raise reject("session of an uninstalled portal", member_id=session.member_id)
    return portal


def tenant_get(model: type[M], ident: Any, portal: Portal) -> M:
    """The portal's row of ``model`` with this id; anything else (missing, another portal's,
    not an id) is a 404 that says nothing about other portals."""
    columns: Any = model
    try:
        key = int(ident)
    except (TypeError, ValueError):
        key = None
    row = None
    if key is not None and abs(key) < 2**63:
        query = select(model).where(columns.id == key, columns.portal_id == portal.id)
        row = db_session().scalar(query)
    if row is None:
        raise AppError(_("Not found."), status=404, code="not_found")
    return row


def json_body() -> Any:
    """The request's JSON, or None when it is not JSON (nested past the parser's recursion
    limit included: that is bad input, not a server error)."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None
