"""Opening a placement page: verify the POST Bitrix24 made from the user's browser."""

from __future__ import annotations

from sqlalchemy.orm import Session

from marketapp.bitrix.payloads import PlacementRequest
from marketapp.i18n import normalize
from marketapp.lifecycle import verify
from marketapp.lifecycle.install import find_portal, store_tokens
from marketapp.models import Portal, PortalStatus
from marketapp.security import PortalSession, reject, tokens_match


def open_page(session: Session, page: PlacementRequest) -> tuple[Portal, PortalSession]:
    """Check ``APPLICATION_TOKEN``, ``member_id``, domain and ``AUTH_ID``; mint a page session."""
    portal = find_portal(session, page.member_id)
    if portal is None or portal.status is PortalStatus.UNINSTALLED:
        raise reject("placement from an unknown portal", member_id=page.member_id)
    if not tokens_match(portal.application_token, page.application_token):
        raise reject("placement with a wrong APPLICATION_TOKEN", member_id=page.member_id)
    if page.domain.lower() != portal.domain.lower():
        raise reject("placement from another domain", member_id=page.member_id)
    try:
        user = verify.portal_user(portal.client_endpoint, page.auth_id)
    except verify.VerificationError as exc:
        raise reject(f"AUTH_ID not recognised: {exc}", member_id=page.member_id) from exc
    if user.is_admin and portal.status is PortalStatus.NEEDS_REAUTH:
        # An admin's fresh, verified token pair heals a portal whose refresh token died.
        store_tokens(portal, page.auth_id, page.refresh_id, page.auth_expires, user.user_id)
        session.commit()
    return portal, PortalSession(
        portal_id=portal.id,
        member_id=portal.member_id,
        user_id=user.user_id,
        is_admin=user.is_admin,
        language=normalize(page.lang),
        epoch=portal.session_epoch,
    )
